package kill

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/loopsock"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// Privileged tests: real sockets in a namespace of the test's own
// (testnet), killed by Run with that namespace as its only target. Run
// opens its netlink sockets inside the target and runs the sockfile
// program on a thread in it: nothing here reaches the namespace the test
// binary runs in.

// lab is a test namespace with listeners and connections from chosen
// addresses.
type lab struct {
	t  *testing.T
	ns *testnet.NS
	h  *netns.NS // a handle of the namespace, for Run's targets
}

func newLab(t *testing.T) *lab {
	t.Helper()
	ns := testnet.New(t)
	// IPv6 peers, on lo like 127.0.0.0/8 (no duplicate detection there).
	for _, a := range []string{"fd00::1/128", "fd00::2/128", "fd00:1::3/128"} {
		ns.MustRun("ip", "-6", "addr", "add", a, "dev", "lo", "nodad")
	}
	h, err := netns.FromPath(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &lab{t: t, ns: ns, h: h}
}

// listen opens a listener on addr in the namespace.
func (l *lab) listen(addr string) int {
	l.t.Helper()
	var fd int
	l.ns.MustDo(func() error {
		var err error
		fd, _, err = loopsock.Listen(netip.MustParseAddrPort(addr), loopsock.Options{})
		return err
	})
	l.t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// conn connects from address from to the listener ln, and accepts it
// unless pending. It returns the server end's cookie (the socket whose
// peer is from) and its fd (-1 when pending).
func (l *lab) conn(ln int, from string, pending bool) (uint64, int) {
	l.t.Helper()
	var cookie uint64
	server := -1
	l.ns.MustDo(func() error {
		to, err := loopsock.Local(ln)
		if err != nil {
			return err
		}
		if to.Addr().IsUnspecified() { // a dual-stack listener: go by IPv4
			to = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), to.Port())
		}
		src := netip.MustParseAddr(from)
		c, err := loopsock.Socket(map[bool]int{true: unix.AF_INET, false: unix.AF_INET6}[to.Addr().Is4()], loopsock.Options{})
		if err != nil {
			return err
		}
		l.t.Cleanup(func() { _ = loopsock.Abort(c) })
		if err := unix.Bind(c, loopsock.Sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
			return err
		}
		if err := unix.Connect(c, loopsock.Sockaddr(to)); err != nil {
			return err
		}
		local, err := loopsock.Local(c)
		if err != nil {
			return err
		}
		if !pending {
			if server, _, err = unix.Accept4(ln, unix.SOCK_CLOEXEC); err != nil {
				return err
			}
			s := server
			l.t.Cleanup(func() { _ = loopsock.Abort(s) })
			cookie, err = loopsock.Cookie(server)
			return err
		}
		// Not accepted: find the server end by its peer, the client.
		for _, d := range l.ns.MustDump(l.t) {
			if d.Remote.Port() == local.Port() && d.Remote.Addr().Unmap() == local.Addr().Unmap() {
				cookie = d.Cookie
			}
		}
		return nil
	})
	if cookie == 0 {
		l.t.Fatalf("no server end for a connection from %s", from)
	}
	return cookie, server
}

func (l *lab) targets() []Target { return []Target{{NS: l.h, Name: l.ns.Name}} }

// cookies of the items with outcome o.
func cookies(rep *Report, o Outcome) map[uint64]bool {
	out := map[uint64]bool{}
	for _, it := range rep.Items {
		if it.Outcome == o {
			out[it.Conn.Cookie] = true
		}
	}
	return out
}

func set(cs ...uint64) map[uint64]bool {
	out := map[uint64]bool{}
	for _, c := range cs {
		out[c] = true
	}
	return out
}

func keys(m map[uint64]bool) []uint64 { return slices.Sorted(maps.Keys(m)) }

// TestKernelFilter: the kernel's filter (the dump's bytecode) and Match
// agree on real sockets: IPv4, IPv6, IPv4-mapped, ports.
func TestKernelFilter(t *testing.T) {
	l := newLab(t)
	ln4 := l.listen("127.0.0.1:8080")
	ln6 := l.listen("[::1]:8443") // the clients' peer is outside the prefixes below
	dual := l.listen("[::]:9000")
	a, _ := l.conn(ln4, "127.0.0.2", false)
	b, _ := l.conn(ln4, "127.0.0.3", false)
	c, _ := l.conn(ln6, "fd00::2", false)
	d, _ := l.conn(ln6, "fd00:1::3", false)
	e, _ := l.conn(dual, "127.0.0.2", false) // ::ffff:127.0.0.2 on an IPv6 socket
	peers := func(s ...string) []netip.Prefix {
		p, err := ParsePeers(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		f    Filter
		want map[uint64]bool
	}{
		{Filter{Peers: peers("127.0.0.2")}, set(a, e)},
		{Filter{Peers: peers("fd00::/16")}, set(c, d)},
		{Filter{Peers: peers("fd00::/32")}, set(c)},
		{Filter{Peers: peers("127.0.0.0/8"), LocalPorts: []uint16{8080}}, set(a, b)},
		{Filter{Peers: peers("fd00::2", "127.0.0.3")}, set(b, c)},
		{Filter{Peers: peers("::ffff:127.0.0.2")}, set(a, e)},
		{Filter{LocalPorts: []uint16{9000, 8443}}, set(c, d, e)},
	} {
		dm, err := openDumper(l.h)
		if err != nil {
			t.Fatal(err)
		}
		prog, _ := tt.f.program()
		got := map[uint64]bool{}
		err = dm.dump(tt.f.states(), prog, l.h.Inode(), func(s *Socket) {
			if !tt.f.Match(&s.Conn) {
				t.Errorf("%s: the kernel let through %s", &tt.f, &s.Conn)
			}
			got[s.Cookie] = true
		})
		dm.close()
		if err != nil {
			t.Fatalf("%s: %v", &tt.f, err)
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("%s: dumped %v, want %v", &tt.f, keys(got), keys(tt.want))
		}
	}
}

// TestRunOwners: a kill finds each socket's owner (this process), refuses
// a socket whose open file no process holds (passed over a unix socket,
// still in flight) unless forced, and destroys a connection no process
// has accepted yet (no owner possible) without asking. With the primary
// sockfile program and owners iterator, and with their fallbacks for
// kernels without bpf_iter_num (forced here: bpf.OwnersEnv).
func TestRunOwners(t *testing.T) {
	primary, err := bpf.ChooseOwners()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		env    string
		method bpf.OwnersMethod
	}{
		{"iter_num", bpf.OwnersIterNum},
		{"bpf_loop", bpf.OwnersLoop},
	} {
		t.Run(m.env, func(t *testing.T) {
			if m.method == bpf.OwnersIterNum && primary != m.method {
				t.Skip("kernel without the bpf_iter_num_new (Linux 6.4) or bpf_rdonly_cast (6.2) kfuncs")
			}
			t.Setenv(bpf.OwnersEnv, m.env)
			pin := runOwners(t)
			if _, err := os.Stat(filepath.Join(pin, bpf.KillPinDir, m.method.SockfilePin())); err != nil {
				t.Errorf("the kill did not use the %s sockfile program: %v", m.env, err)
			}
		})
	}
}

func runOwners(t *testing.T) (pin string) {
	l := newLab(t)
	pin = testnet.PinDir(t)
	if err := os.MkdirAll(pin, 0o700); err != nil {
		t.Fatal(err)
	}
	ln := l.listen("127.0.0.1:8080")
	held, _ := l.conn(ln, "127.0.0.2", false)
	inFlight, fd := l.conn(ln, "127.0.0.2", false)
	other, _ := l.conn(ln, "127.0.0.3", false)
	// On a listener of its own: an accept on ln would take it.
	pending, _ := l.conn(l.listen("127.0.0.1:8081"), "127.0.0.2", true)
	// IPv4 on an IPv6 socket (::ffff:127.0.0.2): found by its IPv4 tuple.
	mapped, _ := l.conn(l.listen("[::]:9000"), "127.0.0.2", false)
	// The in-flight socket: sent over a unix socket pair, closed here.
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pair[0]); unix.Close(pair[1]) })
	if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd) // the test's cleanup aborting it again only fails

	opts := Options{Filter: Filter{Peers: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}, PinDir: pin, DryRun: true}
	rep, err := Run(l.targets(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OwnerErr != nil || len(rep.NSErrors) > 0 {
		t.Fatalf("owners: %v, namespaces: %v", rep.OwnerErr, rep.NSErrors)
	}
	if got := cookies(&rep, Planned); !maps.Equal(got, set(held, pending, mapped)) {
		t.Errorf("dry run plans %v, want the held %d, the pending %d and the mapped %d", keys(got), held, pending, mapped)
	}
	if got := cookies(&rep, Refused); !maps.Equal(got, set(inFlight)) {
		t.Errorf("dry run refuses %v, want the in-flight %d", keys(got), inFlight)
	}
	for _, it := range rep.Items {
		switch it.Conn.Cookie {
		case held, mapped:
			if it.Conn.Owner == nil || it.Conn.Owner.PID != os.Getpid() {
				t.Errorf("held socket's owner %+v, want pid %d", it.Conn.Owner, os.Getpid())
			}
		case inFlight:
			if it.Refusal != RefusedUnknownOwner || it.Conn.Owner != nil {
				t.Errorf("in-flight socket: refusal %s, owner %+v", it.Refusal, it.Conn.Owner)
			}
		case pending:
			if it.Conn.Owner != nil {
				t.Errorf("pending socket's owner %+v, want none", it.Conn.Owner)
			}
		}
	}
	for _, c := range []uint64{held, inFlight, pending, other, mapped} {
		if d, ok, _ := l.ns.Find(c); !ok || d.State != conn.Established {
			t.Fatalf("dry run: socket %d is %v (alive %v)", c, d.State, ok)
		}
	}

	opts.DryRun = false
	if rep, err = Run(l.targets(), opts); err != nil {
		t.Fatal(err)
	}
	if got := cookies(&rep, Destroyed); !maps.Equal(got, set(held, pending, mapped)) {
		t.Errorf("live destroys %v, want %v", keys(got), keys(set(held, pending, mapped)))
	}
	if d, ok, _ := l.ns.Find(inFlight); !ok || d.State != conn.Established {
		t.Errorf("refused socket %d: %v (alive %v)", inFlight, d.State, ok)
	}
	for _, c := range []uint64{held, pending, mapped} {
		if d, ok, _ := l.ns.Find(c); ok && d.State != conn.Close {
			t.Errorf("destroyed socket %d still %s", c, d.State)
		}
	}

	opts.Force = true
	if rep, err = Run(l.targets(), opts); err != nil {
		t.Fatal(err)
	}
	if got := cookies(&rep, Destroyed); !maps.Equal(got, set(inFlight)) {
		t.Errorf("forced: destroyed %v, want the in-flight %d", keys(got), inFlight)
	}
	for _, it := range rep.Items {
		if it.Conn.Cookie == inFlight && (!it.Forced || it.Refusal != RefusedUnknownOwner) {
			t.Errorf("forced item: %+v", it)
		}
	}
	if d, ok, _ := l.ns.Find(other); !ok || d.State != conn.Established {
		t.Errorf("the other peer's socket %d: %v (alive %v)", other, d.State, ok)
	}
	return pin
}
