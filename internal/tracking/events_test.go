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
// after the timer, or of a namespace outside the service's scope, sends
// nothing; one of the scope's other namespace does. After Fired the next
// socket due at all is sent.
func TestEventsOnlyBeforeTimer(t *testing.T) {
	ns, second, other := testnet.New(t), testnet.New(t), testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0) // watches every namespace
	const cw = 10 * time.Second
	ev, err := tr.Events(Wakes{NetNS: []uint32{ns.Inode(), second.Inode()}, After: map[conn.State]time.Duration{
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
	awaitEvent(t, read, srv.Cookie)
	// The scope's second namespace: its socket due before the timer is
	// the service's too.
	ev.Fired()
	srv, _ = second.CloseWait(t, "tcp4")
	awaitEvent(t, read, srv.Cookie)
}

// awaitEvent reads events until one names cookie (the client's FIN_WAIT1
// may come first, then the CLOSE_WAIT, due earlier).
func awaitEvent(t *testing.T, read func() Event, cookie uint64) {
	t.Helper()
	for i := 0; ; i++ {
		if e := read(); e.Cookie == cookie {
			return
		}
		if i == 2 {
			t.Fatalf("no event for socket %d", cookie)
		}
	}
}

// TestEventsEveryWatched: a service whose scope is every namespace (no
// list, or more namespaces than the tracker tells apart) hears of a
// socket of any watched namespace. The tracker watches a and b only: one
// watching the whole machine hears of other tests' sockets too, and one
// due earlier rightly holds ours back (the sweep at its timer finds ours).
func TestEventsEveryWatched(t *testing.T) {
	a, b := testnet.New(t), testnet.New(t)
	tr, err := Open(Options{PinDir: testnet.PinDir(t), Watch: []uint32{a.Inode(), b.Inode()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	many := make([]uint32, ScopeMax+1)
	for i := range many {
		many[i] = uint32(i + 1) // none of them a, b
	}
	for name, scope := range map[string][]uint32{"no list": nil, "too many": many} {
		ev, err := tr.Events(Wakes{NetNS: scope, After: map[conn.State]time.Duration{conn.CloseWait: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		read := func() Event {
			t.Helper()
			ev.rd.SetDeadline(time.Now().Add(testnet.Timeout))
			e, err := ev.Read()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return e
		}
		for _, ns := range []*testnet.NS{a, b} {
			ev.Fired()
			srv, _ := ns.CloseWait(t, "tcp4")
			awaitEvent(t, read, srv.Cookie)
		}
		ev.Close()
	}
}

// TestSetWakes: a reload's new wakes reach the tracker: a CLOSE_WAIT due
// after the timer under the old ones is announced under the new.
func TestSetWakes(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	ev, err := tr.Events(Wakes{NetNS: []uint32{ns.Inode()}, After: map[conn.State]time.Duration{conn.CloseWait: 2 * time.Hour}})
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
	ev.Fired()
	ev.Arm(conn.Now() + uint64(time.Hour))
	base := sent()
	ns.CloseWait(t, "tcp4")
	if n := sent() - base; n != 0 {
		t.Fatalf("%d events for a socket due after the timer, want none", n)
	}
	if err := ev.SetWakes(Wakes{NetNS: []uint32{ns.Inode()}, After: map[conn.State]time.Duration{conn.CloseWait: time.Second}}); err != nil {
		t.Fatal(err)
	}
	ns.CloseWait(t, "tcp4")
	if n := sent() - base; n != 1 {
		t.Fatalf("%d events for a socket due before the timer under the new wakes, want 1", n)
	}
	if err := ev.SetWakes(Wakes{After: map[conn.State]time.Duration{conn.State(99): time.Second}}); err == nil {
		t.Error("SetWakes took a state that does not exist")
	}
}
