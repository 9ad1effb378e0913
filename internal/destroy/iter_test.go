package destroy

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// iterDestroyer makes, inside ns, a Destroyer that walks for any number of
// sockets, and skips the test when the kernel cannot load the walk.
func iterDestroyer(t *testing.T, ns *testnet.NS) *Destroyer {
	t.Helper()
	var d *Destroyer
	loaded := false
	ns.MustDo(func() error {
		var err error
		if d, err = NewWithOptions(Options{IterMin: 1}); err != nil {
			return err
		}
		t.Cleanup(func() { d.Close() })
		loaded = d.loadIter()
		return nil
	})
	// Skip here: t.Skip must run on the test's goroutine, not in ns.Do.
	if !loaded {
		t.Skipf("kfunc iterator unavailable (needs Linux >= 6.5): %v", d.IterErr())
	}
	return d
}

// destroyIn runs d.Destroy on a thread of ns: the walk covers the
// namespace of the thread that runs it.
func destroyIn(t *testing.T, ns *testnet.NS, d *Destroyer, conns []*conn.Conn) []Result {
	t.Helper()
	var res []Result
	ns.MustDo(func() error { res = d.Destroy(conns); return nil })
	return res
}

// TestIterExact: the walk destroys exactly the sockets asked for, by
// cookie; a vanished socket is reported gone and a timewait socket is
// destroyed by netlink, all in one call.
func TestIterExact(t *testing.T) {
	ns := testnet.New(t)
	d := iterDestroyer(t, ns)
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
		// The walk sees it, cannot destroy it, and leaves it to netlink.
		if stale, err = timeWait(t, ln); err != nil {
			return err
		}
		stale.Timewait = false
		return nil
	})
	// Destroy the first two of each family; the third stays.
	kill := []*conn.Conn{pairs[0].conn, pairs[1].conn, pairs[3].conn, pairs[4].conn, vanished, tw, stale}
	res := destroyIn(t, ns, d, kill)
	want := []struct {
		o   Outcome
		via Path
	}{{Destroyed, Kfunc}, {Destroyed, Kfunc}, {Destroyed, Kfunc}, {Destroyed, Kfunc}, {Gone, Netlink}, {Destroyed, Netlink}, {Destroyed, Netlink}}
	for i, r := range res {
		if r.Outcome != want[i].o || r.Via != want[i].via {
			t.Errorf("%s: %v via %v (%v), want %v via %v", kill[i], r.Outcome, r.Via, r.Err, want[i].o, want[i].via)
		}
	}
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
		if s := find(socks, c.Local, c.Remote); s != nil {
			t.Errorf("timewait socket still there: %+v", *s)
		}
	}
	// The kill map is empty again: a second call finds them all gone.
	for i, r := range destroyIn(t, ns, d, kill) {
		if r.Outcome != Gone {
			t.Errorf("second destroy of %s: %v %v, want gone", kill[i], r.Outcome, r.Err)
		}
	}
}

// TestIterTupleReused: the walk meets a socket on the 4-tuple of the one
// asked for, with another cookie, and leaves it alone.
func TestIterTupleReused(t *testing.T) {
	ns := testnet.New(t)
	d := iterDestroyer(t, ns)
	var old, cur *pair
	ns.MustDo(func() error {
		var err error
		old, cur, err = reusedTuple(t, netip.AddrPortFrom(lo4, 40405))
		return err
	})
	checkReused(t, old, cur)
	if r := destroyIn(t, ns, d, []*conn.Conn{old.conn})[0]; r.Outcome != Gone {
		t.Errorf("destroy of the replaced connection: %v via %v (%v), want gone", r.Outcome, r.Via, r.Err)
	}
	if got := tcpState(cur.server); got != conn.Established {
		t.Errorf("new connection in %s, want ESTABLISHED", got)
	}
	if err := roundTripData(cur); err != nil {
		t.Errorf("new connection hurt: %v", err)
	}
}

// TestIterOtherNamespace: called from a thread of another namespace, the
// walk covers that namespace and finds nothing (the kill map names the
// Destroyer's); netlink, bound to the Destroyer's namespace, does the job.
func TestIterOtherNamespace(t *testing.T) {
	ns, other := testnet.New(t), testnet.New(t)
	d := iterDestroyer(t, ns)
	var p *pair
	ns.MustDo(func() error {
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		p, err = closeWait(t, ln, ln.addr)
		return err
	})
	if r := destroyIn(t, other, d, []*conn.Conn{p.conn})[0]; r.Outcome != Destroyed || r.Via != Netlink {
		t.Errorf("destroy from another namespace: %v via %v (%v), want destroyed via netlink", r.Outcome, r.Via, r.Err)
	}
	if got := tcpState(p.server); got != conn.Close {
		t.Errorf("socket in %s after destroy", got)
	}
}

// TestIterMany destroys more sockets than the kill map holds at once.
func TestIterMany(t *testing.T) {
	ns := testnet.New(t)
	d := iterDestroyer(t, ns)
	d.mu.Lock()
	d.iter.cap = 100 // chunks of 100: three walks for 250 sockets
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
	res := destroyIn(t, ns, d, conns)
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

// TestIterRetriesRefused: full sockets netlink refused with EOPNOTSUPP (a
// kernel without CONFIG_INET_DIAG_DESTROY; this one has it, so the refusal
// is simulated) are destroyed by the walk, with the default options.
func TestIterRetriesRefused(t *testing.T) {
	ns := testnet.New(t)
	var d *Destroyer
	var p *pair
	ns.MustDo(func() error {
		var err error
		if d, err = New(); err != nil {
			return err
		}
		t.Cleanup(func() { d.Close() })
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		p, err = closeWait(t, ln, ln.addr)
		return err
	})
	var r Result
	loaded := false
	ns.MustDo(func() error {
		if loaded = d.loadIter(); !loaded {
			return nil
		}
		r = Result{Outcome: Failed, Err: unix.EOPNOTSUPP}
		if d.walk([]*conn.Conn{p.conn, p.conn}, []int{0, 1})[0].destroyed {
			r = Result{Outcome: Destroyed, Via: Kfunc}
		}
		return nil
	})
	if !loaded {
		t.Skipf("kfunc iterator unavailable (needs Linux >= 6.5): %v", d.IterErr())
	}
	if r.Outcome != Destroyed {
		t.Fatalf("walk after EOPNOTSUPP: %v %v", r.Outcome, r.Err)
	}
	if got := tcpState(p.server); got != conn.Close {
		t.Errorf("socket in %s after the walk", got)
	}
}

// TestIterStateChecked: the walk destroys a socket only in the state it was
// asked for. It holds the socket's lock, so this check, unlike the lookup
// before a netlink request, cannot race the socket. A live connection
// described as CLOSE_WAIT is found ESTABLISHED and left alone.
func TestIterStateChecked(t *testing.T) {
	ns := testnet.New(t)
	d := iterDestroyer(t, ns)
	var p *pair
	ns.MustDo(func() error {
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		p, err = dial(t, ln, ln.addr, netip.AddrPort{})
		return err
	})
	wrong := *p.conn
	wrong.State = conn.CloseWait
	var r iterResult
	ns.MustDo(func() error { r = d.walk([]*conn.Conn{&wrong}, []int{0})[0]; return nil })
	if r.destroyed || !r.changed || r.state != conn.Established {
		t.Errorf("walk for an ESTABLISHED socket named CLOSE_WAIT: %+v, want changed (ESTABLISHED)", r)
	}
	if err := roundTripData(p); err != nil {
		t.Fatalf("the connection did not live on: %v", err)
	}
	ns.MustDo(func() error { r = d.walk([]*conn.Conn{p.conn}, []int{0})[0]; return nil })
	if !r.destroyed {
		t.Errorf("walk for it as it is: %+v, want destroyed", r)
	}
}
