package tracking

import (
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// TestEventsOnlyBeforeTimer: with a service listening, the tracker sends a
// socket only when it is due before the armed timer, with the deadline it
// computed from the entry, and lowers the timer to it; a socket due at or
// after the timer, or of another namespace, sends nothing. After Fired the
// next socket due at all is sent.
func TestEventsOnlyBeforeTimer(t *testing.T) {
	ns, other := testnet.New(t), testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0) // watches every namespace
	const cw = 10 * time.Second
	ev, err := tr.Events(Wakes{NetNS: ns.Inode(), After: map[conn.State]time.Duration{
		conn.CloseWait: cw, conn.FinWait1: time.Hour, conn.FinWait2: 2 * time.Hour, conn.TimeWait: 2 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	sent := func() uint64 {
		t.Helper()
		c, err := tr.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return c.EventsSent
	}
	read := func() Event {
		t.Helper()
		ev.rd.SetDeadline(time.Now().Add(testnet.Timeout))
		e, err := ev.Read()
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	// Armed at 0 when opened: the service's first sweep is due now.
	base := sent()
	ns.CloseWait(t, "tcp4")
	if n := sent() - base; n != 0 {
		t.Fatalf("%d events before the service's first sweep, want none", n)
	}

	// The timer an hour away: the CLOSE_WAIT is due before it, the
	// client's FIN_WAIT1 and FIN_WAIT2 after it.
	ev.Fired()
	ev.Arm(conn.Now() + uint64(time.Hour))
	srv, _ := ns.CloseWait(t, "tcp4")
	if n := sent() - base; n != 1 {
		t.Fatalf("%d events for one socket due before the timer, want 1", n)
	}
	e := read()
	c, ok := entry(t, tr, ns, srv.Cookie)
	if !ok {
		t.Fatalf("%s not tracked", srv)
	}
	if e.Cookie != srv.Cookie || e.Due != c.Entered+uint64(cw) {
		t.Errorf("event %+v, want cookie %d due at entry + %v = %d", e, srv.Cookie, cw, c.Entered+uint64(cw))
	}
	if a := ev.armed.Load(); a != e.Due {
		t.Errorf("timer at %d, want lowered to the CLOSE_WAIT's deadline %d", a, e.Due)
	}

	// Due after the lowered timer: nothing.
	base = sent()
	ns.CloseWait(t, "tcp6")
	ns.TimeWait(t, "tcp4")
	if n := sent() - base; n != 0 {
		t.Errorf("%d events for sockets due after the timer, want none", n)
	}
	// Another namespace's sockets, due before the timer: nothing.
	ev.Fired()
	other.CloseWait(t, "tcp4")
	if n := sent() - base; n != 0 {
		t.Errorf("%d events for another namespace's sockets, want none", n)
	}
	if a := ev.armed.Load(); a != notArmed {
		t.Errorf("another namespace's sockets moved the timer to %d", a)
	}
	// The timer fired: the next socket due at all is sent (the client's
	// FIN_WAIT1 may come first, then the CLOSE_WAIT, due earlier).
	srv, _ = ns.CloseWait(t, "tcp6")
	for i := 0; ; i++ {
		if e := read(); e.Cookie == srv.Cookie {
			break
		}
		if i == 2 {
			t.Fatalf("after Fired: no event for the new CLOSE_WAIT %s", srv)
		}
	}
}
