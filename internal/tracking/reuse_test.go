package tracking

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// mapEntry is what the map holds for cookie, as the tracker left it: no
// walk first (see entry for the reconciled view).
func mapEntry(t *testing.T, tr *Tracker, ns *testnet.NS, cookie uint64) (conn.Conn, bool) {
	t.Helper()
	cs, err := tr.Conns(ns.Inode())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Cookie == cookie {
			return c, true
		}
	}
	return conn.Conn{}, false
}

// TestDisconnectIsNotTimeWait: connect(AF_UNSPEC) on a half-closed
// FIN_WAIT2 socket (tcp_disconnect()) shows FIN_WAIT2 -> CLOSE with no
// error while its process holds it, which is also what a socket entering
// TIME_WAIT shows. It is not a TIME_WAIT socket: the peer's FIN never came
// (no RCV_SHUTDOWN), the socket is back in CLOSE and may connect again
// under the same cookie. The tracker must not keep an entry for it.
func TestDisconnectIsNotTimeWait(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	for _, fam := range testnet.Families {
		cli, _ := ns.FinWait2(t, fam)
		if c, ok := mapEntry(t, tr, ns, cli.Cookie); !ok || c.State != conn.FinWait2 {
			t.Fatalf("%s: half-closed client: %+v (tracked %v), want FIN_WAIT2", fam, c, ok)
		}
		cli.Disconnect()
		ns.Await(t, cli.Gone()) // in CLOSE: unhashed, no dump shows it
		if c, ok := mapEntry(t, tr, ns, cli.Cookie); ok {
			t.Errorf("%s: disconnected socket still tracked: %+v", fam, c)
		}
		l := ns.Listen(t, fam)
		cli.Connect(l.Local)
		ns.Await(t, cli.In(conn.Established))
		if c, ok := mapEntry(t, tr, ns, cli.Cookie); ok {
			t.Errorf("%s: reconnected socket tracked: %+v", fam, c)
		}
	}
}

// TestReusedSocketLeavesTheMap: a socket whose connection went to TIME_WAIT
// while its process kept the file is a full socket in CLOSE, and a timewait
// socket under the same cookie. When the full socket is used again
// (connect(AF_UNSPEC), then connect or listen: CLOSE -> SYN_SENT / LISTEN),
// the cookie names a live socket too: the tracker drops the entry. The timewait socket is still
// there, on its old tuple; the next walk gives it back its exact entry.
func TestReusedSocketLeavesTheMap(t *testing.T) {
	for _, reuse := range []string{"connect", "listen"} {
		t.Run(reuse, func(t *testing.T) {
			ns := testnet.New(t)
			tr := open(t, testnet.PinDir(t), 0)
			cli, srv := ns.FinWait2(t, "tcp4")
			old := cli.String()
			oldLocal, oldRemote := cli.Local, cli.Remote
			srv.Close() // its FIN: the client's connection goes to TIME_WAIT
			ns.Await(t, cli.InTimewait(conn.TimeWait))
			tw, ok := mapEntry(t, tr, ns, cli.Cookie)
			if !ok || tw.State != conn.TimeWait || !tw.Timewait {
				t.Fatalf("%s after the peer's FIN: %+v (tracked %v), want TIME_WAIT", old, tw, ok)
			}
			// The file still says connected (EISCONN, EINVAL for listen)
			// until connect(AF_UNSPEC): on a socket in CLOSE already it
			// makes no transition, so the tracker sees nothing of it.
			cli.Disconnect()
			if c, ok := mapEntry(t, tr, ns, cli.Cookie); !ok || c != tw {
				t.Fatalf("after a disconnect in CLOSE: %+v (tracked %v), want %+v unchanged", c, ok, tw)
			}
			switch reuse {
			case "connect":
				l := ns.Listen(t, "tcp4")
				cli.Connect(l.Local)
				ns.Await(t, cli.In(conn.Established))
			case "listen":
				cli.Listen()
				ns.Await(t, cli.In(conn.Listen))
			}
			if c, ok := mapEntry(t, tr, ns, cli.Cookie); ok {
				t.Fatalf("socket in use again (%s), entry kept: %+v", reuse, c)
			}
			c, ok := entry(t, tr, ns, cli.Cookie) // a walk
			if !ok || c.State != conn.TimeWait || !c.Timewait || c.Local != oldLocal || c.Remote != oldRemote {
				t.Fatalf("after a walk: %+v (tracked %v), want the TIME_WAIT socket %s", c, ok, old)
			}
			if kernel.HZ() != 0 && (!c.Exact || c.Entered > tw.Entered+uint64(20e6) || c.Entered+uint64(20e6) < tw.Entered) {
				t.Errorf("after a walk: entered %d exact %v, want within 20ms of %d", c.Entered, c.Exact, tw.Entered)
			}
		})
	}
}

// TestReconcileCorrectsState: an entry whose socket the kernel has in
// another closing state (the kernel skipped the tracker for a transition:
// recursion_misses) gets the kernel's state from the next walk, with its
// age counted from the walk: a lower bound, never older than it is.
func TestReconcileCorrectsState(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	srv, _ := ns.CloseWait(t, "tcp4")
	var v bpf.TrackerHckConn
	if err := tr.objs.HckConns.Lookup(srv.Cookie, &v); err != nil {
		t.Fatal(err)
	}
	v.State, v.EnteredNs = uint8(conn.FinWait1), 1 // as if CLOSE_WAIT had been missed, long ago
	if err := tr.objs.HckConns.Update(srv.Cookie, &v, ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}
	before := conn.Now()
	c, ok := entry(t, tr, ns, srv.Cookie)
	if !ok || c.State != conn.CloseWait || c.Exact || c.Entered < before || c.Timewait {
		t.Fatalf("after a walk: %+v (tracked %v), want CLOSE_WAIT, a lower bound from %d", c, ok, before)
	}
}
