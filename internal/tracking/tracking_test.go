package tracking

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

func open(t *testing.T, pinDir string, size uint32) *Tracker {
	t.Helper()
	tr, err := Open(Options{PinDir: pinDir, MapSize: size, WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// entry returns the tracker's entry for cookie, reconciling in ns first.
func entry(t *testing.T, tr *Tracker, ns *testnet.NS, cookie uint64) (conn.Conn, bool) {
	t.Helper()
	ns.MustDo(func() error { _, err := tr.Reconcile(nil); return err })
	return mapEntry(t, tr, ns, cookie)
}

func TestTracksClosingStatesWithExactTimes(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	for _, fam := range testnet.Families {
		before := conn.Now()
		srv, cli := ns.CloseWait(t, fam)
		after := conn.Now()
		for _, s := range []struct {
			sock  *testnet.Sock
			state conn.State
		}{{srv, conn.CloseWait}, {cli, conn.FinWait2}} {
			c, ok := entry(t, tr, ns, s.sock.Cookie)
			if !ok {
				t.Fatalf("%s %s: not tracked", fam, s.state)
			}
			if c.State != s.state || !c.Exact || c.Local != s.sock.Local || c.Remote != s.sock.Remote || c.NetNS != ns.Inode() {
				t.Errorf("%s: tracked %+v, want %s %s -> %s exact in netns %d", fam, c, s.state, s.sock.Local, s.sock.Remote, ns.Inode())
			}
			if c.Entered < before || c.Entered > after {
				t.Errorf("%s %s: entered at %d, outside the build window [%d, %d]", fam, s.state, c.Entered, before, after)
			}
		}
	}
}

// A TIME_WAIT socket fires no event; its entry time comes from the kernel's
// timewait timer, to a jiffy.
func TestTimeWaitAgeFromKernelTimer(t *testing.T) {
	if kernel.HZ() == 0 {
		t.Skip("kernel config (CONFIG_HZ) unreadable: TIME_WAIT ages are lower bounds here")
	}
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	for _, fam := range testnet.Families {
		before := conn.Now()
		tw := ns.TimeWait(t, fam)
		after := conn.Now()
		time.Sleep(300 * time.Millisecond) // an age worth measuring
		c, ok := entry(t, tr, ns, tw.Cookie)
		if !ok {
			t.Fatalf("%s: TIME_WAIT %s not tracked", fam, tw)
		}
		if c.State != conn.TimeWait || !c.Timewait || !c.Exact {
			t.Fatalf("%s: tracked %+v, want exact TIME_WAIT timewait", fam, c)
		}
		slack := uint64(20 * time.Millisecond)
		if c.Entered+slack < before || c.Entered > after+slack {
			t.Errorf("%s: TIME_WAIT entered %v after the builder started; it ran %v: more than 20ms off",
				fam, time.Duration(int64(c.Entered-before)), time.Duration(after-before))
		}
		if c.Local != tw.Local || c.Remote != tw.Remote {
			t.Errorf("%s: tuple %s -> %s, want %s -> %s", fam, c.Local, c.Remote, tw.Local, tw.Remote)
		}
	}
}

// A FIN_WAIT2 orphan becomes a timewait socket: same cookie, same state,
// same entry time.
func TestFinWait2OrphanKeepsEntry(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	cli, _ := ns.FinWait2(t, "tcp4")
	c1, ok := entry(t, tr, ns, cli.Cookie)
	if !ok || c1.Timewait {
		t.Fatalf("half-closed FIN_WAIT2: %+v tracked=%v", c1, ok)
	}
	cli.Close()
	ns.Await(t, cli.InTimewait(conn.FinWait2))
	c2, ok := entry(t, tr, ns, cli.Cookie)
	if !ok || c2.State != conn.FinWait2 || !c2.Timewait || c2.Entered != c1.Entered || !c2.Exact {
		t.Fatalf("after close: %+v (tracked=%v), want FIN_WAIT2 timewait entered at %d", c2, ok, c1.Entered)
	}
}

// Sockets older than the tracker are seeded, their age a lower bound from
// first sight.
func TestSeedsSocketsOlderThanTracker(t *testing.T) {
	ns := testnet.New(t)
	srv, _ := ns.CloseWait(t, "tcp6")
	fw1, _ := ns.FinWait1(t, "tcp4")
	time.Sleep(50 * time.Millisecond)
	seen := conn.Now()
	tr := open(t, testnet.PinDir(t), 0)
	if !tr.Attached {
		t.Fatal("a fresh pin dir must attach a new tracker")
	}
	for _, s := range []*testnet.Sock{srv, fw1} {
		c, ok := entry(t, tr, ns, s.Cookie)
		if !ok {
			t.Fatalf("%s not seeded", s)
		}
		if c.Exact || c.Entered < seen {
			t.Errorf("%s: seeded %+v, want a lower bound counted from %d (first sight)", s, c, seen)
		}
	}
}

// Stopping and reopening keeps every timestamp: maps and link stay pinned.
func TestReopenKeepsTimestamps(t *testing.T) {
	ns := testnet.New(t)
	pin := testnet.PinDir(t)
	tr1, err := Open(Options{PinDir: pin, WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ns.CloseWait(t, "tcp4")
	c1, ok := entry(t, tr1, ns, srv.Cookie)
	if !ok {
		t.Fatal("not tracked")
	}
	tr1.Close()
	// Transitions while no process holds the tracker are still recorded.
	fw1, _ := ns.FinWait1(t, "tcp4")

	tr2 := open(t, pin, 0)
	if tr2.Attached {
		t.Fatal("reopen attached a second tracker instead of reusing the pinned one")
	}
	c2, ok := entry(t, tr2, ns, srv.Cookie)
	if !ok || c2.Entered != c1.Entered || !c2.Exact {
		t.Fatalf("after reopen: %+v (tracked=%v), want entered %d exact", c2, ok, c1.Entered)
	}
	if c3, ok := entry(t, tr2, ns, fw1.Cookie); !ok || !c3.Exact {
		t.Fatalf("FIN_WAIT1 made while no process held the tracker: %+v tracked=%v, want exact", c3, ok)
	}
}

func TestUnloadLeavesNothing(t *testing.T) {
	pin := testnet.PinDir(t)
	tr, err := Open(Options{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	info, err := tr.link.Info()
	if err != nil {
		t.Fatal(err)
	}
	id := info.ID
	tr.Close()
	if err := Unload(pin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin dir still there: %v", err)
	}
	if l, err := link.NewFromID(id); err == nil {
		l.Close()
		t.Fatalf("link %d still attached after unload", id)
	}
	if Pinned(pin) {
		t.Fatal("Pinned reports a tracker after unload")
	}
}

// A full map counts what it could not track and keeps going.
func TestOverflowIsCounted(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 4)
	before, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		ns.CloseWait(t, "tcp4") // two closing sockets each
	}
	ns.MustDo(func() error { _, err := tr.Reconcile(nil); return err })
	after, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := tr.Conns(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) > 4 {
		t.Fatalf("map holds %d entries, max 4", len(cs))
	}
	if after.Overflow-before.Overflow < 8 {
		t.Fatalf("overflow counted %d, want ≥ 8 (12 sockets, room for 4)", after.Overflow-before.Overflow)
	}
}

// A deleted namespace takes its timewait sockets without an event: a
// reconcile from anywhere prunes their entries.
func TestPrunesDeletedNamespaces(t *testing.T) {
	gone := testnet.New(t)
	here := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	tw := gone.TimeWait(t, "tcp4")
	if _, ok := entry(t, tr, gone, tw.Cookie); !ok {
		t.Fatal("TIME_WAIT not tracked")
	}
	goneNS := gone.Inode()
	if out, err := exec.Command("ip", "netns", "del", gone.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr.live = nil // no cached list of live namespaces
		here.MustDo(func() error { _, err := tr.Reconcile(nil); return err })
		cs, err := tr.Conns(goneNS)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries of deleted namespace %d still tracked", len(cs), goneNS)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A tracker records only the namespaces it watches: a host's tracker does
// not fill up with sockets of namespaces nobody sweeps.
func TestWatchesOnlyItsNamespaces(t *testing.T) {
	watched, other := testnet.New(t), testnet.New(t)
	pin := testnet.PinDir(t)
	tr, err := Open(Options{PinDir: pin, Watch: []uint32{watched.Inode()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	in, _ := watched.CloseWait(t, "tcp4")
	out, _ := other.CloseWait(t, "tcp4")
	if cs, _ := tr.Conns(watched.Inode()); len(cs) != 2 {
		t.Fatalf("watched namespace: %d entries, want CLOSE_WAIT and FIN_WAIT2", len(cs))
	}
	if cs, _ := tr.Conns(other.Inode()); len(cs) != 0 {
		t.Fatalf("unwatched namespace: %d entries, want none", len(cs))
	}
	// A second user of the pin dir adds its namespace; the first stays.
	tr2, err := Open(Options{PinDir: pin, Watch: []uint32{other.Inode()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr2.Close() })
	if _, ok := entry(t, tr2, other, out.Cookie); !ok {
		t.Fatal("the newly watched namespace's CLOSE_WAIT was not seeded")
	}
	fw1, _ := other.FinWait1(t, "tcp6")
	if c, ok := entry(t, tr2, other, fw1.Cookie); !ok || !c.Exact {
		t.Fatalf("FIN_WAIT1 in the newly watched namespace: %+v tracked=%v, want exact", c, ok)
	}
	if _, ok := entry(t, tr, watched, in.Cookie); !ok {
		t.Fatal("the first namespace is no longer tracked")
	}
}

// TestLoadErrorNamesObject: a pinned map that does not match this build
// fails the load of the object that uses it, and the error says which
// (not "load tracker" for every object).
func TestLoadErrorNamesObject(t *testing.T) {
	testnet.RequireRoot(t)
	pin := testnet.PinDir(t)
	tr := open(t, pin, 0)
	t.Cleanup(func() { _ = Unload(pin) })
	// hck_want with the wrong key size, pinned where the owners iterator
	// looks for its map.
	m, err := ebpf.NewMapWithOptions(&ebpf.MapSpec{Name: "hck_want", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 4,
		Pinning: ebpf.PinByName}, ebpf.MapOptions{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	_, err = tr.Owners([]*conn.Conn{{Cookie: 1, File: 0xff00, State: conn.CloseWait}})
	if err == nil || !strings.HasPrefix(err.Error(), "load owners iterator map hck_want: the maps pinned in "+pin) ||
		strings.Contains(err.Error(), "tracker") || strings.Contains(err.Error(), "--map-size 0") {
		t.Errorf("owners over a foreign hck_want: %v; want an error naming the owners iterator's map", err)
	}
}

// TestReconcileEveryNamespace: one reconcile walks each namespace it is
// given from inside it (an iterator walks the namespace it was created
// in): sockets older than the tracker are seeded in each, each namespace
// counts as seeded, an entry whose socket died without an event is
// removed in each; a namespace that is gone is no error.
func TestReconcileEveryNamespace(t *testing.T) {
	a, b := testnet.New(t), testnet.New(t)
	// Older than the tracker: only a walk inside each namespace finds them.
	aSrv, _ := a.CloseWait(t, "tcp4")
	bSrv, _ := b.CloseWait(t, "tcp6")
	sc, err := scope.Resolve([]string{a.Path(), b.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	tr, err := Open(Options{PinDir: testnet.PinDir(t), Watch: []uint32{a.Inode(), b.Inode()}, Enter: sc.Do})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	if tr.Seeded(a.Inode()) || tr.Seeded(b.Inode()) {
		t.Fatal("seeded before any walk")
	}
	const gone = 1 // no namespace has inode 1
	st, err := tr.Reconcile([]uint32{a.Inode(), b.Inode(), gone})
	if err != nil {
		t.Fatal(err)
	}
	if st.Seen != 4 || st.Seeded != 4 {
		t.Errorf("walk %+v: want 4 closing sockets seen and seeded, two per namespace", st)
	}
	for _, s := range []struct {
		ns   *testnet.NS
		sock *testnet.Sock
	}{{a, aSrv}, {b, bSrv}} {
		c, ok := mapEntry(t, tr, s.ns, s.sock.Cookie)
		if !ok || c.NetNS != s.ns.Inode() || c.State != conn.CloseWait {
			t.Errorf("%s: entry %+v (%v), want CLOSE_WAIT in %d", s.sock, c, ok, s.ns.Inode())
		}
		if !tr.Seeded(s.ns.Inode()) {
			t.Errorf("namespace %s not seeded after its walk", s.ns.Name)
		}
	}
	// Both sockets die; the walk of both namespaces drops their entries.
	aSrv.Abort()
	bSrv.Abort()
	a.Await(t, aSrv.Gone())
	b.Await(t, bSrv.Gone())
	for _, cookie := range []uint64{aSrv.Cookie, bSrv.Cookie} {
		_ = tr.objs.HckConns.Put(cookie, bpf.TrackerHckConn{State: uint8(conn.CloseWait), Netns: map[uint64]uint32{aSrv.Cookie: a.Inode(), bSrv.Cookie: b.Inode()}[cookie]})
	}
	if st, err = tr.Reconcile([]uint32{a.Inode(), b.Inode()}); err != nil || st.Removed < 2 {
		t.Errorf("walk %+v (%v): want the two dead sockets' entries removed", st, err)
	}
}
