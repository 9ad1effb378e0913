package sweep_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// disconnect is connect(fd, {AF_UNSPEC}): tcp_disconnect(). The socket
// keeps its file, its cookie and its bound port, and may connect again.
func (s *rawSock) disconnect(t *testing.T) {
	t.Helper()
	sa := unix.RawSockaddrAny{}
	sa.Addr.Family = unix.AF_UNSPEC
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(s.fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		t.Fatalf("connect(AF_UNSPEC) %s: %v", s, errno)
	}
}

// TestReconnectedSocketLivesOn is the wrong kill an adversarial try found:
// a client half-closes (FIN_WAIT2), disconnects with connect(AF_UNSPEC)
// while it still holds the socket, and connects again from the same bound
// address to the same server. The tracepoint shows FIN_WAIT2 -> CLOSE with
// no error and a process holding the socket — what a socket entering
// TIME_WAIT shows — and then nothing the tracker tracks (CLOSE -> SYN_SENT
// -> ESTABLISHED). The socket keeps its cookie and, here, its 4-tuple: a
// SOCK_DESTROY for "the TIME_WAIT socket" finds the live connection.
//
// The sweeps are the service's deadline sweeps (no walk of the namespace),
// the case where only the map speaks for the socket.
func TestReconnectedSocketLivesOn(t *testing.T) {
	binds := map[string]netip.AddrPort{
		"tcp4": netip.MustParseAddrPort("127.0.0.5:45000"),
		"tcp6": netip.MustParseAddrPort("[::1]:45000"),
	}
	for _, fam := range []string{"tcp4", "tcp6"} {
		t.Run(fam, func(t *testing.T) {
			tr := openTracker(t)
			e := newEnv(t)
			bind := binds[fam]
			pol := thresholds(time.Millisecond, conn.ClosingStates...)
			// A first full sweep: the namespace is walked and seeded, so
			// later sweeps trust the map (as the service's do).
			e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())

			l := newRaw(t, e.ns, netip.AddrPortFrom(bind.Addr(), 0))
			l.listen(t)
			c, s := pairOn(t, e.ns, l, bind)
			c.closeWrite(t)
			e.ns.Await(t, c.in(conn.FinWait2), s.in(conn.CloseWait))
			c.disconnect(t)
			e.ns.Await(t, s.gone())
			c.dial(t, l.local) // same socket, same bound port, same server
			s2 := l.accept(t)
			if c.local != bind || c.remote != l.local {
				t.Fatalf("reconnected as %s, want %s -> %s", c, bind, l.local)
			}
			e.ns.Await(t, c.in(conn.Established), s2.in(conn.Established))

			if ent, ok := e.entry(t, tr, c.cookie); ok {
				t.Errorf("tracker keeps an entry for the reconnected socket: %+v", ent)
			}
			time.Sleep(5 * time.Millisecond)
			rep := e.run(t, tr, sweep.Options{Policy: &pol, WalkOnDemand: true}, conn.Now())
			if it, ok := item(&rep, c.cookie); ok {
				t.Errorf("the reconnected socket was a hung candidate: %s (%v)", it.Outcome, it.Err)
			}
			e.ns.Await(t, c.in(conn.Established), s2.in(conn.Established))
			exchange(t, c, s2)
			exchange(t, s2, c)

			// Had the tracker missed what tells these sockets apart (the
			// kernel may skip it: recursion_misses), the map would say
			// what the old tracker said: the reconnected client in
			// TIME_WAIT, and here the new server end still in CLOSE_WAIT.
			// The destroyer asks the kernel first: both are ESTABLISHED,
			// not the sockets judged hung, and live on.
			long := uint64(1) // entered at boot: hung under any threshold
			wrong := []conn.Conn{
				{Cookie: c.cookie, State: conn.TimeWait, Timewait: true, Local: c.local, Remote: c.remote,
					NetNS: e.inode, Entered: long, Exact: true},
				{Cookie: s2.cookie, State: conn.CloseWait, Local: s2.local, Remote: s2.remote,
					NetNS: e.inode, Entered: long, Exact: true},
			}
			for _, dry := range []bool{true, false} {
				src := staleSource{Tracker: tr, stale: wrong}
				rep = e.sweep(t, src, dry, sweep.Options{Policy: &pol, WalkOnDemand: true}, conn.Now())
				for _, w := range wrong {
					it := mustItem(t, &rep, w.Cookie)
					if it.Outcome != sweep.Changed || it.KernelState != conn.Established {
						t.Errorf("dry run %v: %s believed %s: %s (kernel %s) %v, want changed (ESTABLISHED)",
							dry, w.Local, w.State, it.Outcome, it.KernelState, it.Err)
					}
				}
				if rep.Destroyed != 0 || rep.Planned != 0 || rep.Changed != 2 {
					t.Errorf("dry run %v: want 2 changed, nothing destroyed or planned; %s", dry, describe(&rep))
				}
			}
			e.ns.Await(t, c.in(conn.Established), s2.in(conn.Established))
			exchange(t, c, s2)
			exchange(t, s2, c)
		})
	}
}

// gone holds when the kernel no longer has the socket.
func (s *rawSock) gone() testnet.Cond {
	return func(socks []testnet.DiagSock) error {
		if d, ok := testnet.Lookup(socks, s.cookie); ok {
			return fmt.Errorf("%s: want gone, kernel has %s", s, d)
		}
		return nil
	}
}
