package testnet

import (
	"fmt"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// want is what the dump must show for one socket a builder returned.
type want struct {
	name     string
	s        *Sock
	state    conn.State
	timewait bool // a timewait socket rather than a full one
	nofile   bool // no file holds it: orphan, timewait or request socket
	closed   bool // the Sock's FD is closed (or never was)
}

// expect checks a dump against the wants: each socket, by its cookie,
// exactly once, in the state and shape wanted.
func expect(t *testing.T, socks []DiagSock, wants ...want) {
	t.Helper()
	for _, w := range wants {
		var found []DiagSock
		for _, d := range socks {
			if d.Cookie == w.s.Cookie {
				found = append(found, d)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s %s: %d sockets with its cookie in the dump, want 1: %v", w.name, w.s, len(found), found)
			continue
		}
		d := found[0]
		if d.State != w.state {
			t.Errorf("%s %s: state %s, want %s", w.name, w.s, d.State, w.state)
		}
		if d.Local != w.s.Local || d.Remote != w.s.Remote {
			t.Errorf("%s: dump has %s -> %s, socket is %s -> %s", w.name, d.Local, d.Remote, w.s.Local, w.s.Remote)
		}
		if d.Timewait() != w.timewait {
			t.Errorf("%s %s: timewait %v, want %v (%s)", w.name, w.s, d.Timewait(), w.timewait, d)
		}
		if (d.Inode == 0) != w.nofile {
			t.Errorf("%s %s: inode %d, want a file: %v", w.name, w.s, d.Inode, !w.nofile)
		}
		if w.closed != (w.s.FD < 0) {
			t.Errorf("%s %s: fd %d, want closed: %v", w.name, w.s, w.s.FD, w.closed)
		}
		t.Logf("%-9s %s (timer %d, expires %v, retrans %d)", w.name, d, d.Timer, d.Expires, d.Retrans)
	}
}

// builder builds one state and returns what the dump must show.
type builder func(t *testing.T, ns *NS, fam string) []want

var builders = []struct {
	name  string
	build builder
}{
	{"Listen", func(t *testing.T, ns *NS, fam string) []want {
		l := ns.Listen(t, fam)
		return []want{{name: "listener", s: l, state: conn.Listen}}
	}},
	{"Established", func(t *testing.T, ns *NS, fam string) []want {
		c, s := ns.Established(t, fam)
		return []want{
			{name: "client", s: c, state: conn.Established},
			{name: "server", s: s, state: conn.Established},
		}
	}},
	{"CloseWait", func(t *testing.T, ns *NS, fam string) []want {
		s, c := ns.CloseWait(t, fam)
		return []want{
			{name: "server", s: s, state: conn.CloseWait},
			{name: "client", s: c, state: conn.FinWait2},
		}
	}},
	{"FinWait2", func(t *testing.T, ns *NS, fam string) []want {
		c, s := ns.FinWait2(t, fam)
		return []want{
			{name: "client", s: c, state: conn.FinWait2},
			{name: "server", s: s, state: conn.CloseWait},
		}
	}},
	{"FinWait2Orphan", func(t *testing.T, ns *NS, fam string) []want {
		c, s := ns.FinWait2Orphan(t, fam)
		return []want{
			{name: "client", s: c, state: conn.FinWait2, timewait: true, nofile: true, closed: true},
			{name: "server", s: s, state: conn.CloseWait},
		}
	}},
	{"FinWait1", func(t *testing.T, ns *NS, fam string) []want {
		c, s := ns.FinWait1(t, fam)
		return []want{
			{name: "client", s: c, state: conn.FinWait1},
			{name: "server", s: s, state: conn.CloseWait},
		}
	}},
	{"LastAck", func(t *testing.T, ns *NS, fam string) []want {
		s, c := ns.LastAck(t, fam)
		return []want{
			{name: "server", s: s, state: conn.LastAck},
			// The client's file still holds the full socket (now CLOSE,
			// unlisted); its cookie names the timewait socket.
			{name: "client", s: c, state: conn.TimeWait, timewait: true, nofile: true},
		}
	}},
	{"LastAckOrphan", func(t *testing.T, ns *NS, fam string) []want {
		s, c := ns.LastAckOrphan(t, fam)
		return []want{
			{name: "server", s: s, state: conn.LastAck, nofile: true, closed: true},
			{name: "client", s: c, state: conn.TimeWait, timewait: true, nofile: true},
		}
	}},
	{"Closing", func(t *testing.T, ns *NS, fam string) []want {
		a, b := ns.Closing(t, fam)
		return []want{
			{name: "a", s: a, state: conn.Closing},
			{name: "b", s: b, state: conn.FinWait1},
		}
	}},
	{"SynSent", func(t *testing.T, ns *NS, fam string) []want {
		c := ns.SynSent(t, fam)
		return []want{{name: "client", s: c, state: conn.SynSent}}
	}},
	{"SynRecv", func(t *testing.T, ns *NS, fam string) []want {
		req, c, l := ns.SynRecv(t, fam)
		return []want{
			{name: "request", s: req, state: conn.SynRecv, nofile: true, closed: true},
			{name: "client", s: c, state: conn.Established},
			{name: "listener", s: l, state: conn.Listen},
		}
	}},
	{"TimeWait", func(t *testing.T, ns *NS, fam string) []want {
		tw := ns.TimeWait(t, fam)
		return []want{{name: "client", s: tw, state: conn.TimeWait, timewait: true, nofile: true, closed: true}}
	}},
}

// TestStates builds every state in both families, one after the other in
// one namespace, and checks the dump.
func TestStates(t *testing.T) {
	ns := New(t)
	for _, b := range builders {
		for _, fam := range Families {
			t.Run(b.name+"/"+fam, func(t *testing.T) {
				start := time.Now()
				wants := b.build(t, ns, fam)
				took := time.Since(start)
				expect(t, ns.MustDump(t), wants...)
				t.Logf("built in %v", took.Round(time.Millisecond))
			})
		}
	}
	// Every subtest's sockets were aborted and its filters removed: what
	// is left are timewait sockets, which nothing can abort from userspace
	// but SOCK_DESTROY.
	ns.Await(t, func(socks []DiagSock) error {
		for _, d := range socks {
			if !d.Timewait() {
				return fmt.Errorf("left behind: %s", d)
			}
		}
		return nil
	})
}

// TestSideBySide builds every state in both families in one namespace and
// checks them all at the end: the ports and filters of one builder must not
// disturb another's sockets.
func TestSideBySide(t *testing.T) {
	ns := New(t)
	var all []want
	for _, b := range builders {
		for _, fam := range Families {
			all = append(all, b.build(t, ns, fam)...)
		}
	}
	expect(t, ns.MustDump(t), all...)
}
