package destroy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// The kfunc fallback runs only where SOCK_DESTROY answers EOPNOTSUPP (a
// kernel built without CONFIG_INET_DIAG_DESTROY). These tests force that
// branch (noDiagDestroy: SOCK_DESTROY requests are answered EOPNOTSUPP
// without being sent) and check what the walk really does.

// kfuncSince is the first kernel with the bpf_sock_destroy() kfunc.
var kfuncSince = [2]int{6, 5}

// kernelRelease is the running kernel's major and minor version.
func kernelRelease(t testing.TB) (release string, major, minor int) {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release = unix.ByteSliceToString(u.Release[:])
	f := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		t.Fatalf("kernel release %q: no version", release)
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("kernel release %q: %v", release, err)
	}
	return release, major, minor
}

// requireKfunc skips the test only on a kernel older than the kfunc, and
// says why; on any newer kernel the test runs, and a failure to load the
// walk fails it.
func requireKfunc(t testing.TB) {
	t.Helper()
	release, major, minor := kernelRelease(t)
	if major < kfuncSince[0] || major == kfuncSince[0] && minor < kfuncSince[1] {
		t.Skipf("kernel %s: bpf_sock_destroy() needs Linux >= %d.%d", release, kfuncSince[0], kfuncSince[1])
	}
}

// fallbackDestroyer makes, inside ns, a Destroyer that behaves as on a
// kernel without CONFIG_INET_DIAG_DESTROY, with its walk loaded: the test
// fails when the walk cannot load on a kernel that has the kfunc.
func fallbackDestroyer(t *testing.T, ns *testnet.NS) *Destroyer {
	t.Helper()
	requireKfunc(t)
	var d *Destroyer
	ns.MustDo(func() (err error) { d, err = openDestroyer(t); return err })
	d.mu.Lock()
	d.noDiagDestroy = true
	loaded, err := d.loadIter(), d.iterErr
	d.mu.Unlock()
	if !loaded {
		release, _, _ := kernelRelease(t)
		t.Fatalf("kernel %s has bpf_sock_destroy(), yet the destroy iterator did not load: %v", release, err)
	}
	return d
}

// killMapLen counts the entries left in the walk's kill map.
func killMapLen(t *testing.T, d *Destroyer) int {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var key uint64
	var n int
	var v bpf.DestroyHckKill
	it := d.iter.objs.HckKills.Iterate()
	for it.Next(&key, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIterExact: where netlink refuses, the walk destroys exactly the
// full sockets asked for, by cookie; a vanished socket is found gone by the
// lookup before anything is asked; timewait sockets, which the kfunc cannot
// destroy, fail with netlink's EOPNOTSUPP, whether the caller knew them as
// timewait or not. Destroy is called from the test's own thread: the walk
// covers the Destroyer's namespace, not the caller's.
func TestIterExact(t *testing.T) {
	ns := testnet.New(t)
	d := fallbackDestroyer(t, ns)
	var pairs []*pair
	var vanished, tw, stale *conn.Conn
	ns.MustDo(func() error {
		for _, ip := range []netip.Addr{lo4, lo6} {
			ln, err := listen(t, ip)
			if err != nil {
				return err
			}
			for range 3 {
				p, err := closeWait(t, ln, ln.addr)
				if err != nil {
					return err
				}
				pairs = append(pairs, p)
			}
		}
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		// Vanished: closed by its owner, reset by abort, before the sweep.
		p, err := closeWait(t, ln, ln.addr)
		if err != nil {
			return err
		}
		vanished = p.conn
		if err := unix.SetsockoptLinger(p.server, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
			return err
		}
		closeFD(&p.server)
		if tw, err = timeWait(t, ln); err != nil {
			return err
		}
		// Stale: a full socket when the tracker saw it, timewait by now.
		// The walk sees it and cannot destroy it.
		if stale, err = timeWait(t, ln); err != nil {
			return err
		}
		stale.Timewait = false
		return nil
	})
	// Destroy the first two of each family; the third stays.
	kill := []*conn.Conn{pairs[0].conn, pairs[1].conn, pairs[3].conn, pairs[4].conn, vanished, tw, stale}
	type want struct {
		o     Outcome
		via   Path
		errno unix.Errno
	}
	check := func(res []Result, wants []want) {
		t.Helper()
		for i, r := range res {
			w := wants[i]
			if r.Outcome != w.o || r.Via != w.via || w.errno != 0 && !errors.Is(r.Err, w.errno) {
				t.Errorf("%s: %v via %v (%v), want %v via %v (%v)", kill[i], r.Outcome, r.Via, r.Err, w.o, w.via, w.errno)
			}
		}
	}
	refused := want{Failed, Netlink, unix.EOPNOTSUPP}
	check(d.Destroy(kill), []want{{Destroyed, Kfunc, 0}, {Destroyed, Kfunc, 0}, {Destroyed, Kfunc, 0}, {Destroyed, Kfunc, 0},
		{Gone, Netlink, 0}, refused, refused})
	for i, p := range pairs {
		switch i {
		case 2, 5:
			if got := tcpState(p.server); got != conn.CloseWait {
				t.Errorf("%s not asked for, in %s", p.conn, got)
			}
			if err := send(p.server); err != nil {
				t.Errorf("%s not asked for, hurt: %v", p.conn, err)
			}
		default:
			if got := tcpState(p.server); got != conn.Close {
				t.Errorf("%s in %s after destroy", p.conn, got)
			}
			if err := send(p.server); !errors.Is(err, unix.ECONNABORTED) {
				t.Errorf("%s: owner write %v, want ECONNABORTED", p.conn, err)
			}
			if _, err := unix.Read(p.client, make([]byte, 1)); !errors.Is(err, unix.ECONNRESET) {
				t.Errorf("%s: peer read %v, want ECONNRESET", p.conn, err)
			}
		}
	}
	var socks []diagSock
	ns.MustDo(func() (err error) { socks, err = dumpTCP(); return err })
	for _, c := range []*conn.Conn{tw, stale} {
		if s := find(socks, c.Local, c.Remote); s == nil || s.cookie != c.Cookie {
			t.Errorf("timewait socket %s not there, yet not destroyed", c)
		}
	}
	if n := killMapLen(t, d); n != 0 {
		t.Errorf("%d entries left in the kill map", n)
	}
	// A second call finds the destroyed ones gone.
	check(d.Destroy(kill), []want{{Gone, Netlink, 0}, {Gone, Netlink, 0}, {Gone, Netlink, 0}, {Gone, Netlink, 0},
		{Gone, Netlink, 0}, refused, refused})
}

// TestIterTupleReused: the walk meets a socket on the 4-tuple of the
// one asked for, with another cookie, and leaves it alone.
func TestIterTupleReused(t *testing.T) {
	ns := testnet.New(t)
	d := fallbackDestroyer(t, ns)
	var old, cur *pair
	ns.MustDo(func() error {
		var err error
		old, cur, err = reusedTuple(t, netip.AddrPortFrom(lo4, 40405))
		return err
	})
	checkReused(t, old, cur)
	d.mu.Lock()
	r := d.walk([]*conn.Conn{old.conn}, []int{0})[0]
	d.mu.Unlock()
	if r != (iterResult{}) {
		t.Errorf("walk for the replaced connection: %+v, want nothing done", r)
	}
	if got := tcpState(cur.server); got != conn.Established {
		t.Errorf("new connection in %s, want ESTABLISHED", got)
	}
	if err := roundTripData(cur); err != nil {
		t.Errorf("new connection hurt: %v", err)
	}
}

// TestIterOtherNamespace: called from a thread of another namespace,
// the walk still covers the Destroyer's namespace (its iterator is opened
// there) and destroys the socket.
func TestIterOtherNamespace(t *testing.T) {
	ns, other := testnet.New(t), testnet.New(t)
	d := fallbackDestroyer(t, ns)
	var p *pair
	ns.MustDo(func() error {
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		p, err = closeWait(t, ln, ln.addr)
		return err
	})
	var r Result
	other.MustDo(func() error { r = d.DestroyOne(p.conn); return nil })
	if r.Outcome != Destroyed || r.Via != Kfunc {
		t.Errorf("destroy from another namespace: %v via %v (%v), want destroyed via kfunc", r.Outcome, r.Via, r.Err)
	}
	if got := tcpState(p.server); got != conn.Close {
		t.Errorf("socket in %s after destroy", got)
	}
}

// TestIterMany destroys more sockets than the kill map holds at once,
// the netlink part split over several sockets.
func TestIterMany(t *testing.T) {
	ns := testnet.New(t)
	d := fallbackDestroyer(t, ns)
	d.mu.Lock()
	d.iter.cap = 100 // chunks of 100: three walks for 250 sockets
	d.workers, d.perWorker = 2, 50
	d.mu.Unlock()
	var conns []*conn.Conn
	var pairs []*pair
	ns.MustDo(func() error {
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		for range 250 {
			p, err := closeWait(t, ln, ln.addr)
			if err != nil {
				return err
			}
			pairs, conns = append(pairs, p), append(conns, p.conn)
		}
		return nil
	})
	start := time.Now()
	res := d.Destroy(conns)
	t.Logf("%d sockets in %v", len(conns), time.Since(start))
	for i, r := range res {
		if r.Outcome != Destroyed || r.Via != Kfunc {
			t.Errorf("%s: %v via %v (%v)", conns[i], r.Outcome, r.Via, r.Err)
		}
		if got := tcpState(pairs[i].server); got != conn.Close {
			t.Errorf("%s in %s after destroy", conns[i], got)
		}
	}
}

// timeWait makes a TIME_WAIT socket (the client end, closed first) and
// returns it as the tracker would: its cookie, Timewait set.
func timeWait(t testing.TB, ln *listener) (*conn.Conn, error) {
	p, err := dial(t, ln, ln.addr, netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	client, err := connOf(p.client, conn.Established)
	if err != nil {
		return nil, err
	}
	closeFD(&p.client)
	if err := waitState(p.server, conn.CloseWait); err != nil {
		return nil, err
	}
	closeFD(&p.server)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		socks, err := dumpTCP()
		if err != nil {
			return nil, err
		}
		if s := find(socks, client.Local, client.Remote); s != nil && s.state == conn.TimeWait {
			return &conn.Conn{Cookie: s.cookie, State: s.state, Local: s.local, Remote: s.remote, Timewait: true}, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no TIME_WAIT socket for %s -> %s", client.Local, client.Remote)
		}
	}
}

// TestIterStateChecked: the walk destroys a socket only in the state it
// was asked for. It holds the socket's lock, so this check, unlike the
// lookup before a netlink request, cannot race the socket. A live
// connection described as CLOSE_WAIT is found ESTABLISHED and left alone.
func TestIterStateChecked(t *testing.T) {
	ns := testnet.New(t)
	d := fallbackDestroyer(t, ns)
	var p *pair
	ns.MustDo(func() error {
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		p, err = dial(t, ln, ln.addr, netip.AddrPort{})
		return err
	})
	walk := func(c *conn.Conn) iterResult {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.walk([]*conn.Conn{c}, []int{0})[0]
	}
	wrong := *p.conn
	wrong.State = conn.CloseWait
	if r := walk(&wrong); r.destroyed || !r.changed || r.state != conn.Established {
		t.Errorf("walk for an ESTABLISHED socket named CLOSE_WAIT: %+v, want changed (ESTABLISHED)", r)
	}
	if err := roundTripData(p); err != nil {
		t.Fatalf("the connection did not live on: %v", err)
	}
	if r := walk(p.conn); !r.destroyed {
		t.Errorf("walk for it as it is: %+v, want destroyed", r)
	}
	if err := send(p.server); !errors.Is(err, unix.ECONNABORTED) {
		t.Errorf("owner write after the walk: %v, want ECONNABORTED", err)
	}
}

// TestIterRetriesRefused: a full socket netlink refused with EOPNOTSUPP is
// destroyed by the walk, with a Destroyer as New makes it: Destroy reports
// it destroyed by the kfunc, and its owner sees it aborted.
func TestIterRetriesRefused(t *testing.T) {
	ns := testnet.New(t)
	d := fallbackDestroyer(t, ns)
	var p *pair
	ns.MustDo(func() error {
		ln, err := listen(t, lo6)
		if err != nil {
			return err
		}
		p, err = closeWait(t, ln, ln.addr)
		return err
	})
	if r := d.DestroyOne(p.conn); r.Outcome != Destroyed || r.Via != Kfunc || r.State != conn.CloseWait {
		t.Fatalf("destroy after EOPNOTSUPP: %v via %v (kernel %s) %v, want destroyed via kfunc", r.Outcome, r.Via, r.State, r.Err)
	}
	if got := tcpState(p.server); got != conn.Close {
		t.Errorf("socket in %s after the walk", got)
	}
	if err := send(p.server); !errors.Is(err, unix.ECONNABORTED) {
		t.Errorf("owner write after the walk: %v, want ECONNABORTED", err)
	}
	if d.IterErr() != nil {
		t.Errorf("IterErr: %v", d.IterErr())
	}
}
