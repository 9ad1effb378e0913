package tracking

import (
	"encoding/binary"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sockdiag"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// reconcile walks ns with tr and returns what the walk changed.
func reconcile(t *testing.T, tr *Tracker, ns *testnet.NS) sweep.WalkStats {
	t.Helper()
	var st sweep.WalkStats
	ns.MustDo(func() (err error) { st, err = tr.Reconcile(nil); return err })
	return st
}

func mustEntry(t *testing.T, tr *Tracker, ns *testnet.NS, cookie uint64) conn.Conn {
	t.Helper()
	c, ok := mapEntry(t, tr, ns, cookie)
	if !ok {
		t.Fatalf("socket %d not tracked", cookie)
	}
	return c
}

// The backstop's walk of a namespace whose map is right is a sock_diag
// dump, not the iterator (which takes a reference on every socket), and it
// leaves the map as the iterator would: a walk with the iterator after it
// changes nothing.
func TestWalkIsDumpWhenMapAgrees(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	ns.CloseWait(t, "tcp4")      // CLOSE_WAIT and FIN_WAIT2, both held
	ns.TimeWait(t, "tcp6")       // TIME_WAIT
	ns.FinWait2Orphan(t, "tcp4") // a FIN_WAIT2 timewait socket and a CLOSE_WAIT
	ns.Established(t, "tcp4")    // not closing: never seen
	reconcile(t, tr, ns)         // whatever the first needs
	st := reconcile(t, tr, ns)
	if st.Iterated != 0 || st.Seen != 5 {
		t.Fatalf("walk of an agreeing map: %+v, want 5 seen, no iterator", st)
	}
	if st.Seeded+st.Updated+st.Removed != 0 {
		t.Fatalf("walk of an agreeing map changed it: %+v", st)
	}
	tr.iterateOnly = true
	st = reconcile(t, tr, ns)
	if st.Iterated != 1 || st.Seen != 5 || st.Seeded+st.Updated+st.Removed+st.Overflow != 0 {
		t.Fatalf("the iterator after the dump: %+v, want 5 seen, nothing changed", st)
	}
}

// A timewait socket gone (here destroyed; usually expired) leaves no event:
// the dump's walk drops its entry.
func TestDumpWalkDropsGoneTimewait(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	tw := ns.TimeWait(t, "tcp4")
	reconcile(t, tr, ns)
	mustEntry(t, tr, ns, tw.Cookie)
	ns.MustRun("ss", "-K", "-tan", "state", "time-wait")
	ns.Await(t, tw.Gone())
	st := reconcile(t, tr, ns)
	if st.Removed != 1 || st.Iterated != 0 {
		t.Fatalf("walk after the TIME_WAIT socket went: %+v, want 1 removed by the dump", st)
	}
	if _, ok := mapEntry(t, tr, ns, tw.Cookie); ok {
		t.Fatal("entry of the gone TIME_WAIT socket still there")
	}
}

// A full socket the tracker never saw (older than it, or refused by a full
// map) needs its file: the dump does not give it, so the walk is the
// iterator's, which seeds it with its file. The next walk is a dump again.
func TestUnknownSocketWalkedWithIterator(t *testing.T) {
	ns := testnet.New(t)
	srv, _ := ns.CloseWait(t, "tcp4") // before the tracker: never seen
	tr := open(t, testnet.PinDir(t), 0)
	st := reconcile(t, tr, ns)
	if st.Iterated != 1 || st.Seeded != 2 {
		t.Fatalf("first walk: %+v, want 2 seeded by the iterator", st)
	}
	if c := mustEntry(t, tr, ns, srv.Cookie); c.File == 0 || c.Exact {
		t.Fatalf("seeded CLOSE_WAIT %+v: want its file, a lower-bound age", c)
	}
	if st := reconcile(t, tr, ns); st.Iterated != 0 {
		t.Fatalf("second walk: %+v, want the dump alone", st)
	}
}

// A connection that reached CLOSE_WAIT in the accept queue has no file;
// accept() gives it one without a transition. The dump shows the new
// inode, and the walk is the iterator's, which records the file.
func TestAcceptedSinceWalkedWithIterator(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	l := ns.Listen(t, "tcp4")
	ns.MustDo(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(l.Local.Port()), Addr: l.Local.Addr().As4()}); err != nil {
			return err
		}
		return unix.Shutdown(fd, unix.SHUT_WR)
	})
	var child testnet.DiagSock
	deadline := time.Now().Add(testnet.Timeout)
	for child.Cookie == 0 {
		for _, d := range ns.MustDump(t) {
			if d.State == conn.CloseWait && d.Local == l.Local {
				child = d
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no CLOSE_WAIT child in the accept queue")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := reconcile(t, tr, ns); st.Iterated != 0 {
		t.Fatalf("walk with the child not accepted: %+v, want the dump alone (no file to find)", st)
	}
	if c := mustEntry(t, tr, ns, child.Cookie); c.File != 0 {
		t.Fatalf("CLOSE_WAIT child in the accept queue has a file: %+v", c)
	}
	l.Accept()
	if st := reconcile(t, tr, ns); st.Iterated != 1 {
		t.Fatalf("walk after accept(): %+v, want the iterator", st)
	}
	if c := mustEntry(t, tr, ns, child.Cookie); c.File == 0 {
		t.Fatalf("accepted CLOSE_WAIT %+v: want its file", c)
	}
}

// A process closing a FIN_WAIT1 socket fires no transition: the socket
// stays in FIN_WAIT1, an orphan. The dump shows it has no inode any more,
// and the walk is the iterator's, which marks it an orphan.
func TestClosedSinceWalkedWithIterator(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	cli, _ := ns.FinWait1(t, "tcp4")
	reconcile(t, tr, ns)
	if c := mustEntry(t, tr, ns, cli.Cookie); c.File == 0 || c.Orphan {
		t.Fatalf("held FIN_WAIT1 %+v: want its file, not an orphan", c)
	}
	cli.Close()
	if st := reconcile(t, tr, ns); st.Iterated != 1 {
		t.Fatalf("walk after close(): %+v, want the iterator", st)
	}
	if c := mustEntry(t, tr, ns, cli.Cookie); !c.Orphan || c.State != conn.FinWait1 {
		t.Fatalf("closed FIN_WAIT1 %+v: want an orphan", c)
	}
	if st := reconcile(t, tr, ns); st.Iterated != 0 {
		t.Fatalf("walk after the orphan was marked: %+v, want the dump alone", st)
	}
}

// diagMsg builds one struct inet_diag_msg with attrs after it.
func diagMsg(family, state, timer byte, src, dst netip.AddrPort, cookie uint64, expires, inode uint32, attrs ...[]byte) []byte {
	m := make([]byte, sockdiag.MsgLen)
	ne := binary.NativeEndian
	m[0], m[1], m[2] = family, state, timer
	binary.BigEndian.PutUint16(m[4:], src.Port())
	binary.BigEndian.PutUint16(m[6:], dst.Port())
	s, d := src.Addr().AsSlice(), dst.Addr().AsSlice()
	copy(m[8:], s)
	copy(m[24:], d)
	ne.PutUint32(m[40:], 7)
	ne.PutUint32(m[44:], uint32(cookie))
	ne.PutUint32(m[48:], uint32(cookie>>32))
	ne.PutUint32(m[52:], expires)
	ne.PutUint32(m[68:], inode)
	for _, a := range attrs {
		m = append(m, a...)
	}
	return m
}

func shutdownAttr(v byte) []byte {
	a := make([]byte, 8)
	binary.NativeEndian.PutUint16(a[0:], 5)
	binary.NativeEndian.PutUint16(a[2:], diagAttrShutdown)
	a[4] = v
	return a
}

func TestDecodeDiag(t *testing.T) {
	const now = uint64(100 * time.Second)
	src := netip.MustParseAddrPort("10.0.0.1:80")
	dst := netip.MustParseAddrPort("10.0.0.2:40000")
	// A TIME_WAIT socket with 59.5 s left entered 0.5 s ago.
	r := decodeDiag(diagMsg(unix.AF_INET, byte(conn.TimeWait), sockdiag.TimerTimewait, src, dst, 1<<40|5, 59500, 0), 9, now)
	c := r.Conn
	if r.Cookie != 1<<40|5 || c.State != uint8(conn.TimeWait) || c.Flags != uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT) ||
		c.EnteredNs != now-uint64(500*time.Millisecond) || c.Netns != 9 || c.Ifindex != 7 || c.Family != unix.AF_INET ||
		c.Sport != 80 || c.Dport != 40000 || [4]byte(c.Saddr[:4]) != src.Addr().As4() || [4]byte(c.Daddr[:4]) != dst.Addr().As4() ||
		c.Saddr[4] != 0 {
		t.Errorf("TIME_WAIT: %+v", r)
	}
	// A FIN_WAIT2 timewait socket: its timer says nothing of its entry.
	r = decodeDiag(diagMsg(unix.AF_INET, byte(conn.FinWait2), sockdiag.TimerTimewait, src, dst, 6, 30000, 0), 9, now)
	if !r.timewait() || r.Conn.EnteredNs != 0 || r.Conn.State != uint8(conn.FinWait2) {
		t.Errorf("FIN_WAIT2 timewait: %+v", r)
	}
	// A full IPv6 socket: inode and sk_shutdown, no timewait flag.
	src6 := netip.MustParseAddrPort("[fd00::1]:443")
	dst6 := netip.MustParseAddrPort("[fd00::2]:50000")
	pad := make([]byte, 12) // an unknown attribute before it
	binary.NativeEndian.PutUint16(pad[0:], 12)
	binary.NativeEndian.PutUint16(pad[2:], 99)
	r = decodeDiag(diagMsg(unix.AF_INET6, byte(conn.CloseWait), 2, src6, dst6, 8, 1000, 4242, pad, shutdownAttr(1)), 9, now)
	if r.timewait() || r.inode != 4242 || r.shutdown != 1 || r.Conn.EnteredNs != 0 ||
		r.Conn.Saddr != src6.Addr().As16() || r.Conn.Daddr != dst6.Addr().As16() || r.Conn.Family != unix.AF_INET6 {
		t.Errorf("full IPv6: %+v", r)
	}
}

func TestNeedsIterator(t *testing.T) {
	tw := uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT)
	orphan := uint8(bpf.TrackerHckFlagHCK_F_ORPHAN)
	lower := uint8(bpf.TrackerHckFlagHCK_F_LOWER_BOUND)
	full := func(inode uint32, shutdown uint8) diagRec {
		r := diagRec{inode: inode, shutdown: shutdown}
		r.Cookie, r.Conn.State = 1, uint8(conn.CloseWait)
		return r
	}
	timewait := func(state conn.State, entered, late uint64) diagRec {
		r := diagRec{late: late}
		r.Cookie, r.Conn.State, r.Conn.Flags, r.Conn.EnteredNs = 1, uint8(state), tw, entered
		return r
	}
	slow := diagClockSlack + 1
	for _, tc := range []struct {
		name    string
		rec     diagRec
		tracked *snap
		want    bool
	}{
		{"full socket never tracked", full(10, 0), nil, true},
		{"held, file known", full(10, 0), &snap{file: 0xf00}, false},
		{"accepted since", full(10, 0), &snap{}, true},
		{"in the accept queue", full(0, rcvShutdown), &snap{}, false},
		{"closed since, had a file", full(0, 3), &snap{file: 0xf00}, true},
		{"closed since, never had a file", full(0, 3), &snap{}, true},
		{"orphan, known", full(0, 3), &snap{file: 0xf00, flags: orphan}, false},
		{"timewait never tracked", timewait(conn.TimeWait, 5, 0), nil, false},
		{"timewait never tracked, clock read late", timewait(conn.TimeWait, 5, slow), nil, true},
		{"entered TIME_WAIT, clock read late", timewait(conn.TimeWait, 5, slow), &snap{state: uint8(conn.FinWait2), flags: tw}, true},
		{"lower bound, clock read late", timewait(conn.TimeWait, 5, slow), &snap{state: uint8(conn.TimeWait), flags: tw | lower}, true},
		{"exact TIME_WAIT, clock read late", timewait(conn.TimeWait, 5, slow), &snap{state: uint8(conn.TimeWait), flags: tw}, false},
		{"FIN_WAIT2 timewait never tracked", timewait(conn.FinWait2, 0, slow), nil, false},
	} {
		tracked := map[uint64]snap{}
		if tc.tracked != nil {
			tracked[1] = *tc.tracked
		}
		if got := needsIterator([]diagRec{tc.rec}, tracked); got != tc.want {
			t.Errorf("%s: needsIterator %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A walk lists the live namespaces (every thread's in /proc) only for a
// watched namespace it did not walk: one just walked exists. A dead one is
// still unwatched.
func TestUnwatchListsOnlyUnwalkedNamespaces(t *testing.T) {
	a, b := testnet.New(t), testnet.New(t)
	tr, err := Open(Options{PinDir: testnet.PinDir(t), Watch: []uint32{a.Inode(), b.Inode()}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	a.MustDo(func() error { _, err := tr.Reconcile([]uint32{a.Inode(), b.Inode()}); return err })
	if tr.live != nil {
		t.Fatal("a walk of every watched namespace listed the live ones")
	}
	bNS := b.Inode()
	if out, err := exec.Command("ip", "netns", "del", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr.live = nil
		reconcile(t, tr, a)
		var mark uint64
		if tr.objs.HckNetns.Lookup(bNS, &mark) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted namespace %d still watched", bNS)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !tr.Seeded(a.Inode()) {
		t.Fatal("the walked namespace is no longer watched")
	}
}
