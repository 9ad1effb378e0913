package sweep_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/cgroup"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Privileged tests: a real tracker (pinned in a test pin dir of its own), a
// real Destroyer opened inside the test's network namespace, real sockets
// built there, and every sweep scoped to that namespace's inode. The tracker
// sees every namespace of the host; the scope is what keeps other tests'
// (and the host's) sockets out of reach.

// --- harness ---

// env is one network namespace with a destroyer living in it.
type env struct {
	ns    *testnet.NS
	inode uint32
	k     *destroy.Destroyer
}

// newEnv makes a namespace and opens a Destroyer inside it.
func newEnv(t *testing.T) *env {
	t.Helper()
	ns := testnet.New(t) // skips unless root
	e := &env{ns: ns, inode: ns.Inode()}
	if e.inode == 0 {
		t.Fatal("namespace inode 0 would mean 'every namespace' to a sweep")
	}
	ns.MustDo(func() error {
		// The library's own idea of "this namespace" agrees with the test's.
		self, err := netns.CurrentInode()
		if err != nil {
			return err
		}
		if self != e.inode {
			return fmt.Errorf("netns.CurrentInode inside %s = %d, want %d", ns.Name, self, e.inode)
		}
		e.k, err = destroy.New()
		return err
	})
	t.Cleanup(func() { e.k.Close() })
	return e
}

// openTracker attaches a tracker pinned in a pin dir of the test's own.
// Open it before building sockets: it only sees transitions made after.
func openTracker(t *testing.T) *tracking.Tracker {
	t.Helper()
	testnet.RequireRoot(t)
	pin := testnet.PinDir(t)
	tr, err := tracking.Open(tracking.Options{PinDir: pin, WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		if err := tracking.Unload(pin); err != nil {
			t.Error(err)
		}
	})
	if !tr.Attached {
		t.Fatalf("tracker in fresh pin dir %s was not attached by this Open", pin)
	}
	return tr
}

// run sweeps e's namespace at now, live. It never sweeps without a scope.
func (e *env) run(t *testing.T, src sweep.Source, opts sweep.Options, now uint64) sweep.Report {
	t.Helper()
	return e.sweep(t, src, false, opts, now)
}

// sweep sweeps e's namespace at now: a dry run (lookups only) or live.
func (e *env) sweep(t *testing.T, src sweep.Source, dry bool, opts sweep.Options, now uint64) sweep.Report {
	t.Helper()
	act := sweep.Live(e.k)
	if dry {
		act = sweep.DryRun(e.k)
	}
	if e.inode == 0 {
		t.Fatal("refusing an unscoped sweep")
	}
	opts.NetNS = map[uint32]string{e.inode: e.ns.Name}
	// Inside the namespace, as the binary runs: Reconcile walks the
	// sockets of the calling thread's namespace.
	var rep sweep.Report
	e.ns.MustDo(func() error {
		var err error
		rep, err = sweep.Run(src, act, opts, now)
		return err
	})
	if rep.ReconcileErr != nil {
		t.Fatalf("reconcile: %v", rep.ReconcileErr)
	}
	if rep.OwnerErr != nil {
		t.Fatalf("owners: %v", rep.OwnerErr)
	}
	return rep
}

// thresholds sets d for the given closing states and leaves the others
// without a threshold: a sweep never destroys a state without one.
func thresholds(d time.Duration, states ...conn.State) policy.Policy {
	p := policy.Policy{ExcludePorts: []uint16{22}}
	for _, s := range states {
		if err := p.Thresholds.Set(s, d); err != nil {
			panic(err)
		}
	}
	return p
}

// entry is the tracker's entry for cookie in e's namespace.
func (e *env) entry(t *testing.T, tr *tracking.Tracker, cookie uint64) (conn.Conn, bool) {
	t.Helper()
	conns, err := tr.Conns(e.inode)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if c.Cookie == cookie {
			return c, true
		}
	}
	return conn.Conn{}, false
}

// mustEntry is entry that fails t when the tracker has none.
func (e *env) mustEntry(t *testing.T, tr *tracking.Tracker, cookie uint64) conn.Conn {
	t.Helper()
	c, ok := e.entry(t, tr, cookie)
	if !ok {
		conns, _ := tr.Conns(e.inode)
		t.Fatalf("tracker has no entry for cookie %d in netns %d; it has %v", cookie, e.inode, conns)
	}
	return c
}

// waitDeadlines sleeps until every socket the tracker holds in e's
// namespace has reached its threshold under p.
func (e *env) waitDeadlines(t *testing.T, tr *tracking.Tracker, p *policy.Policy) {
	t.Helper()
	conns, err := tr.Conns(e.inode)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, c := range conns {
		if d, ok := p.Thresholds.For(c.State); ok {
			last = max(last, c.Entered+uint64(d))
		}
	}
	sleepUntil(last)
}

// sleepUntil sleeps until CLOCK_BOOTTIME reaches at.
func sleepUntil(at uint64) {
	for now := conn.Now(); now < at; now = conn.Now() {
		time.Sleep(time.Duration(at-now) + time.Millisecond)
	}
}

// item finds the report's item for cookie.
func item(rep *sweep.Report, cookie uint64) (sweep.Item, bool) {
	for _, it := range rep.Items {
		if it.Conn.Cookie == cookie {
			return it, true
		}
	}
	return sweep.Item{}, false
}

func mustItem(t *testing.T, rep *sweep.Report, cookie uint64) sweep.Item {
	t.Helper()
	it, ok := item(rep, cookie)
	if !ok {
		t.Fatalf("no report item for cookie %d; report: %s", cookie, describe(rep))
	}
	return it
}

func describe(rep *sweep.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "scanned %d hung %d destroyed %d gone %d failed %d held %d planned %d unsupported %d skipped %v next %d",
		rep.Scanned, rep.Hung, rep.Destroyed, rep.Gone, rep.Failed, rep.Held, rep.Planned, rep.Unsupported, rep.Skipped, rep.Next)
	for _, it := range rep.Items {
		fmt.Fprintf(&b, "\n  %s cookie=%d: %s (%s %s) err=%v", it.Conn.String(), it.Conn.Cookie, it.Outcome,
			it.Verdict.Action, it.Verdict.SkipDetail, it.Err)
	}
	return b.String()
}

// aborted checks that the socket's owner, which still holds the file, is
// told ECONNABORTED: SOCK_DESTROY aborted the socket under it.
func aborted(t *testing.T, s *testnet.Sock) {
	t.Helper()
	errno, err := unix.GetsockoptInt(s.FD, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		t.Errorf("%s: read SO_ERROR: %v", s, err)
		return
	}
	if !errors.Is(unix.Errno(errno), unix.ECONNABORTED) {
		t.Errorf("%s: SO_ERROR %v after destroy, want ECONNABORTED", s, unix.Errno(errno))
	}
}

// --- 1. every closing state the tracepoint sees, built for real ---

// hungCases are the states the tracepoint reports on a full socket, each
// built with its file open in this process. The builder returns the socket
// in the state; its peer sits in another state that has no threshold in
// the case's policy, so only the socket under test can become hung.
var hungCases = []struct {
	state conn.State
	build func(t testing.TB, ns *testnet.NS, fam string) *testnet.Sock
}{
	{conn.CloseWait, func(t testing.TB, ns *testnet.NS, fam string) *testnet.Sock {
		s, _ := ns.CloseWait(t, fam)
		return s
	}},
	{conn.FinWait1, func(t testing.TB, ns *testnet.NS, fam string) *testnet.Sock {
		c, _ := ns.FinWait1(t, fam)
		return c
	}},
	{conn.FinWait2, func(t testing.TB, ns *testnet.NS, fam string) *testnet.Sock {
		c, _ := ns.FinWait2(t, fam) // half-closed, file open
		return c
	}},
	{conn.LastAck, func(t testing.TB, ns *testnet.NS, fam string) *testnet.Sock {
		s, _ := ns.LastAck(t, fam)
		return s
	}},
	{conn.Closing, func(t testing.TB, ns *testnet.NS, fam string) *testnet.Sock {
		a, _ := ns.Closing(t, fam)
		return a
	}},
}

// TestHungStates builds each closing state in both families, each in a
// namespace of its own with a threshold for that state only, and checks the
// whole life of its tracker entry: stamped when the socket entered the
// state, left alone by sweeps before its deadline (even 1ns before),
// destroyed by the first sweep after it, gone from the kernel and the map.
//
// Every case is built and checked early right after its build; one wait
// then covers every deadline, so the test takes about one threshold. The
// sockets belong to the parent test (they must outlive the early subtests);
// subtests only look.
func TestHungStates(t *testing.T) {
	const threshold = 2 * time.Second
	// closeTo bounds how long after entering its state a builder returns:
	// the builder only waits for sock_diag to show the state (5ms polls).
	// Generous: this runs on loaded 2-CPU machines.
	const closeTo = time.Second

	type built struct {
		name  string
		state conn.State
		e     *env
		s     *testnet.Sock
		tr    *tracking.Tracker
		ent   conn.Conn
		pol   policy.Policy
	}
	tr := openTracker(t) // one for all namespaces, as on a host
	var cases []*built
	var last uint64
	for _, hc := range hungCases {
		for _, fam := range testnet.Families {
			c := &built{name: hc.state.String() + "/" + fam, state: hc.state, pol: thresholds(threshold, hc.state)}
			c.tr = tr
			c.e = newEnv(t)
			before := conn.Now()
			c.s = hc.build(t, c.e.ns, fam)
			after := conn.Now()
			ok := t.Run(c.name+"/early", func(t *testing.T) {
				c.ent = c.e.mustEntry(t, c.tr, c.s.Cookie)
				checkEntry(t, c.ent, c.s, c.state, before, after, closeTo)
				deadline := c.ent.Entered + uint64(threshold)
				now := conn.Now()
				if now >= deadline {
					t.Fatalf("first sweep at +%v, after the %v threshold: machine too slow for this test",
						time.Duration(now-c.ent.Entered), threshold)
				}
				// Right away, and at the last nanosecond before the deadline.
				for _, at := range []uint64{now, deadline - 1} {
					age := time.Duration(at - c.ent.Entered)
					rep := c.e.run(t, c.tr, sweep.Options{Policy: &c.pol}, at)
					if it, ok := item(&rep, c.s.Cookie); ok || rep.Hung != 0 || rep.Destroyed != 0 {
						t.Errorf("sweep at +%v: reported hung before its %v threshold: %+v; %s", age, threshold, it, describe(&rep))
					}
					if rep.Scanned < 1 {
						t.Errorf("sweep at +%v scanned nothing", age)
					}
					if rep.Next != deadline {
						t.Errorf("sweep at +%v: Next %d, want the socket's deadline %d", age, rep.Next, deadline)
					}
					if v := c.pol.Decide(&c.ent, at); v.Action != policy.Ignore || v.Hung || v.Deadline != deadline {
						t.Errorf("Decide at +%v: %+v, want ignore, not hung, deadline %d", age, v, deadline)
					}
				}
				if d, ok, err := c.e.ns.Find(c.s.Cookie); err != nil || !ok || d.State != c.state {
					t.Errorf("after early sweeps the kernel has %v (alive %v, %v), want %s", d, ok, err, c.state)
				}
			})
			if ok {
				cases = append(cases, c)
				last = max(last, c.ent.Entered+uint64(threshold))
			}
		}
	}
	sleepUntil(last)
	for _, c := range cases {
		t.Run(c.name+"/late", func(t *testing.T) {
			now := conn.Now()
			rep := c.e.run(t, c.tr, sweep.Options{Policy: &c.pol}, now)
			it := mustItem(t, &rep, c.s.Cookie)
			if it.Outcome != sweep.Destroyed || it.Err != nil {
				t.Fatalf("outcome %s (%v), want destroyed; %s", it.Outcome, it.Err, describe(&rep))
			}
			if rep.Hung != 1 || rep.Destroyed != 1 {
				t.Errorf("want exactly this socket hung and destroyed; %s", describe(&rep))
			}
			v := it.Verdict
			if v.Action != policy.Destroy || !v.Hung {
				t.Errorf("verdict %+v, want destroy, hung", v)
			}
			if v.Age < threshold || v.Age != time.Duration(now-c.ent.Entered) {
				t.Errorf("reported age %v, want now - entered = %v ≥ %v", v.Age, time.Duration(now-c.ent.Entered), threshold)
			}
			if v.Threshold != threshold || v.Deadline != c.ent.Entered+uint64(threshold) {
				t.Errorf("verdict threshold %v deadline %d, want %v and %d", v.Threshold, v.Deadline, threshold, c.ent.Entered+uint64(threshold))
			}
			if it.Conn.Owner == nil || it.Conn.Owner.PID != os.Getpid() {
				t.Errorf("owner %+v, want this process (pid %d): it holds the file", it.Conn.Owner, os.Getpid())
			}
			if !strings.Contains(v.Reason, "≥ 2s threshold") {
				t.Errorf("reason %q does not say the age passed the 2s threshold", v.Reason)
			}
			// The kernel no longer has it (an aborted socket is CLOSE and
			// unhashed: sock_diag lists it no more), the process that held
			// it is told ECONNABORTED, and the entry is gone.
			d, ok, err := c.e.ns.Find(c.s.Cookie)
			if err != nil {
				t.Fatal(err)
			}
			if ok && d.State != conn.Close {
				t.Errorf("kernel still has %s after destroy", d)
			}
			aborted(t, c.s)
			if _, ok := c.e.entry(t, c.tr, c.s.Cookie); ok {
				t.Error("tracker still has the destroyed socket")
			}
			t.Logf("destroyed %s after %v", it.Conn.String(), v.Age)
		})
	}
}

// checkEntry checks the tracker's entry against the socket it names.
func checkEntry(t *testing.T, ent conn.Conn, s *testnet.Sock, state conn.State, before, after uint64, closeTo time.Duration) {
	t.Helper()
	if ent.State != state {
		t.Errorf("entry state %s, want %s", ent.State, state)
	}
	if ent.Local != s.Local || ent.Remote != s.Remote {
		t.Errorf("entry %s -> %s, socket is %s -> %s", ent.Local, ent.Remote, s.Local, s.Remote)
	}
	if !ent.Exact || ent.Timewait {
		t.Errorf("entry exact %v timewait %v, want an exact full socket", ent.Exact, ent.Timewait)
	}
	// The state was entered while the builder ran: the stamp lies between
	// the clock readings on both sides of it, and close to the end.
	if ent.Entered < before || ent.Entered > after {
		t.Errorf("entered at %d, outside the build [%d, %d]", ent.Entered, before, after)
	} else if late := time.Duration(after - ent.Entered); late > closeTo {
		t.Errorf("entered %v before the builder returned, want at most %v", late, closeTo)
	} else {
		t.Logf("%s entered %v into a %v build", state, time.Duration(ent.Entered-before), time.Duration(after-before))
	}
}

// --- 2. the states a sweep never destroys ---

// TestSafeStatesLiveOn builds ESTABLISHED, LISTEN, SYN_SENT and SYN_RECV
// sockets next to every closing state in one namespace, and sweeps with a
// 1ms threshold for every closing state until nothing is hung: the closing
// sockets are destroyed, the safe ones are never tracked, never reported
// and still in their states after several more sweeps.
func TestSafeStatesLiveOn(t *testing.T) {
	tr := openTracker(t)
	e := newEnv(t)
	ns := e.ns

	type safe struct {
		name  string
		s     *testnet.Sock
		state conn.State
	}
	var safes []safe
	var closing []*testnet.Sock
	for _, fam := range testnet.Families {
		c, s := ns.Established(t, fam)
		l := ns.Listen(t, fam)
		ss := ns.SynSent(t, fam)
		req, rc, rl := ns.SynRecv(t, fam)
		safes = append(safes,
			safe{"established client/" + fam, c, conn.Established},
			safe{"established server/" + fam, s, conn.Established},
			safe{"listener/" + fam, l, conn.Listen},
			safe{"syn_sent/" + fam, ss, conn.SynSent},
			safe{"syn_recv request/" + fam, req, conn.SynRecv},
			safe{"syn_recv client/" + fam, rc, conn.Established},
			safe{"syn_recv listener/" + fam, rl, conn.Listen},
		)
		cw, fw2 := ns.CloseWait(t, fam)
		fw1, cw1 := ns.FinWait1(t, fam)
		la, latw := ns.LastAck(t, fam)
		a, b := ns.Closing(t, fam)
		tw := ns.TimeWait(t, fam)
		orphan, _ := ns.FinWait2Orphan(t, fam)
		closing = append(closing, cw, fw2, fw1, cw1, la, latw, a, b, tw, orphan)
	}

	pol := thresholds(time.Millisecond, conn.ClosingStates...)
	e.waitDeadlines(t, tr, &pol)
	isSafe := func(cookie uint64) (string, bool) {
		for _, s := range safes {
			if s.s.Cookie == cookie {
				return s.name, true
			}
		}
		return "", false
	}
	destroyed := 0
	for round := 0; round < 5; round++ {
		rep := e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
		for _, it := range rep.Items {
			if name, ok := isSafe(it.Conn.Cookie); ok {
				t.Errorf("round %d: %s reported: %s %s", round, name, it.Conn.String(), it.Outcome)
			}
			if it.Outcome == sweep.Failed || it.Outcome == sweep.Skipped {
				t.Errorf("round %d: %s cookie=%d: %s %v %s", round, it.Conn.String(), it.Conn.Cookie, it.Outcome, it.Err, it.Verdict.SkipDetail)
			}
		}
		destroyed += rep.Destroyed
		t.Logf("round %d: %s", round, describe(&rep))
	}
	if destroyed == 0 {
		t.Fatal("no closing socket destroyed")
	}
	// Nothing in a closing state is left in the namespace...
	ns.Await(t, func(socks []testnet.DiagSock) error {
		for _, d := range socks {
			if d.State.Closing() {
				return fmt.Errorf("still in a closing state: %s", d)
			}
		}
		return nil
	})
	for _, s := range closing {
		if _, ok, _ := ns.Find(s.Cookie); ok {
			t.Errorf("closing socket %s survived", s)
		}
	}
	// ...the tracker holds nothing of it, and no safe socket ever was there.
	conns, err := tr.Conns(e.inode)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		t.Errorf("tracker still holds %s cookie=%d", c.String(), c.Cookie)
	}
	// ...and every safe socket is where it was.
	socks := ns.MustDump(t)
	for _, s := range safes {
		d, ok := testnet.Lookup(socks, s.s.Cookie)
		if !ok || d.State != s.state {
			t.Errorf("%s %s: kernel has %v (alive %v), want %s", s.name, s.s, d, ok, s.state)
		}
	}
}

// --- 3. port filters ---

// rawSock is a socket the test makes itself, for what the builders' free
// ports cannot do: a fixed port, or a 4-tuple used twice.
type rawSock struct {
	fd            int
	local, remote netip.AddrPort
	cookie        uint64
}

func (s *rawSock) String() string {
	return fmt.Sprintf("%s -> %s cookie=%d", s.local, s.remote, s.cookie)
}

// newRaw makes a non-blocking TCP socket in the namespace with SO_REUSEADDR,
// bound to bind, aborted when t ends.
func newRaw(t *testing.T, ns *testnet.NS, bind netip.AddrPort) *rawSock {
	t.Helper()
	af := unix.AF_INET
	if bind.Addr().Is6() {
		af = unix.AF_INET6
	}
	s := &rawSock{fd: -1}
	ns.MustDo(func() error {
		fd, err := unix.Socket(af, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		s.fd = fd
		return err
	})
	t.Cleanup(s.abort)
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(s.fd, testnet.Sockaddr(bind)); err != nil {
		t.Fatalf("bind %s: %v", bind, err)
	}
	s.fill(t)
	return s
}

func (s *rawSock) abort() {
	if s.fd < 0 {
		return
	}
	_ = unix.SetsockoptLinger(s.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
	_ = unix.Close(s.fd)
	s.fd = -1
}

func (s *rawSock) fill(t *testing.T) {
	t.Helper()
	sa, err := unix.Getsockname(s.fd)
	if err != nil {
		t.Fatal(err)
	}
	s.local = testnet.AddrPort(sa)
	if sa, err := unix.Getpeername(s.fd); err == nil {
		s.remote = testnet.AddrPort(sa)
	}
	if s.cookie, err = unix.GetsockoptUint64(s.fd, unix.SOL_SOCKET, unix.SO_COOKIE); err != nil {
		t.Fatal(err)
	}
}

func (s *rawSock) listen(t *testing.T) {
	t.Helper()
	if err := unix.Listen(s.fd, 16); err != nil {
		t.Fatalf("listen on %s: %v", s.local, err)
	}
}

func (s *rawSock) wait(t *testing.T, events int16) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: events}}
	for {
		n, err := unix.Poll(fds, int(testnet.Timeout.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			t.Fatalf("poll %s: %d %v", s, n, err)
		}
		return
	}
}

func (s *rawSock) dial(t *testing.T, to netip.AddrPort) {
	t.Helper()
	if err := unix.Connect(s.fd, testnet.Sockaddr(to)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		t.Fatalf("connect %s to %s: %v", s.local, to, err)
	}
	s.wait(t, unix.POLLOUT)
	if errno, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
		t.Fatalf("connect %s to %s: %v %v", s.local, to, unix.Errno(errno), err)
	}
	s.fill(t)
}

func (s *rawSock) accept(t *testing.T) *rawSock {
	t.Helper()
	s.wait(t, unix.POLLIN)
	fd, _, err := unix.Accept4(s.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatalf("accept on %s: %v", s.local, err)
	}
	a := &rawSock{fd: fd}
	t.Cleanup(a.abort)
	a.fill(t)
	return a
}

func (s *rawSock) closeWrite(t *testing.T) {
	t.Helper()
	if err := unix.Shutdown(s.fd, unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
}

// in holds when the kernel has the socket in state want.
func (s *rawSock) in(want conn.State) testnet.Cond {
	return func(socks []testnet.DiagSock) error {
		if d, ok := testnet.Lookup(socks, s.cookie); !ok || d.State != want {
			return fmt.Errorf("%s: want %s, kernel has %v (alive %v)", s, want, d, ok)
		}
		return nil
	}
}

// pairOn connects a new client from bind to l and returns both ends.
func pairOn(t *testing.T, ns *testnet.NS, l *rawSock, bind netip.AddrPort) (client, server *rawSock) {
	t.Helper()
	client = newRaw(t, ns, bind)
	client.dial(t, l.local)
	server = l.accept(t)
	return client, server
}

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.IPv6Loopback()
)

// TestPort22ExcludedByDefault builds hung connections to a listener on
// port 22 in the namespace, with port 22 at either end of the hung socket:
// the scripts' default exclusion keeps all of them, and nothing else does.
func TestPort22ExcludedByDefault(t *testing.T) {
	tr := openTracker(t)
	e := newEnv(t)
	ssh := newRaw(t, e.ns, netip.AddrPortFrom(lo4, 22))
	ssh.listen(t)
	// The server end in CLOSE_WAIT: local port 22 (its client, FIN_WAIT2,
	// has remote port 22).
	c1, s1 := pairOn(t, e.ns, ssh, netip.AddrPortFrom(lo4, 0))
	c1.closeWrite(t)
	// The client end in CLOSE_WAIT: remote port 22 (its server, FIN_WAIT2,
	// has local port 22).
	c2, s2 := pairOn(t, e.ns, ssh, netip.AddrPortFrom(lo4, 0))
	s2.closeWrite(t)
	e.ns.Await(t, s1.in(conn.CloseWait), c1.in(conn.FinWait2), c2.in(conn.CloseWait), s2.in(conn.FinWait2))

	pol := policy.Default()
	for _, s := range conn.ClosingStates {
		if err := pol.Thresholds.Set(s, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	e.waitDeadlines(t, tr, &pol)
	rep := e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
	want := map[uint64]string{
		s1.cookie: "local port 22 is excluded",
		c1.cookie: "remote port 22 is excluded",
		c2.cookie: "remote port 22 is excluded",
		s2.cookie: "local port 22 is excluded",
	}
	if rep.Hung != len(want) || rep.Skipped[policy.SkipExcludedPort] != len(want) || rep.Destroyed != 0 {
		t.Errorf("want %d hung, all skipped for port 22; %s", len(want), describe(&rep))
	}
	for cookie, detail := range want {
		it := mustItem(t, &rep, cookie)
		if it.Outcome != sweep.Skipped || it.Verdict.Skip != policy.SkipExcludedPort || it.Verdict.SkipDetail != detail {
			t.Errorf("%s: %s %s %q, want skipped: %q", it.Conn.String(), it.Outcome, it.Verdict.Skip, it.Verdict.SkipDetail, detail)
		}
	}
	e.ns.Await(t, s1.in(conn.CloseWait), c1.in(conn.FinWait2), c2.in(conn.CloseWait), s2.in(conn.FinWait2))

	// Only the exclusion protects them: without it a dry run plans all four.
	pol.ExcludePorts = nil
	rep = e.sweep(t, tr, true, sweep.Options{Policy: &pol}, conn.Now())
	if rep.Planned != len(want) {
		t.Errorf("without the exclusion, want %d planned; %s", len(want), describe(&rep))
	}
}

// TestIncludePorts: with IncludePorts [X] only the connection on X is
// destroyed; a hung connection on another port is kept and stays.
func TestIncludePorts(t *testing.T) {
	tr := openTracker(t)
	e := newEnv(t)
	onX, _ := e.ns.CloseWait(t, "tcp4")
	other, _ := e.ns.CloseWait(t, "tcp4")
	x := onX.Local.Port()
	if other.Local.Port() == x || other.Remote.Port() == x {
		t.Fatalf("both connections on port %d", x)
	}
	pol := thresholds(time.Millisecond, conn.CloseWait)
	pol.IncludePorts = []uint16{x}
	e.waitDeadlines(t, tr, &pol)
	rep := e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
	if it := mustItem(t, &rep, onX.Cookie); it.Outcome != sweep.Destroyed {
		t.Errorf("connection on included port %d: %s %v, want destroyed", x, it.Outcome, it.Err)
	}
	it := mustItem(t, &rep, other.Cookie)
	if it.Outcome != sweep.Skipped || it.Verdict.Skip != policy.SkipNotIncluded {
		t.Errorf("connection on port %d: %s (%s), want skipped: not included", other.Local.Port(), it.Outcome, it.Verdict.Skip)
	}
	if rep.Destroyed != 1 || rep.Skipped[policy.SkipNotIncluded] != 1 {
		t.Errorf("want 1 destroyed, 1 not included; %s", describe(&rep))
	}
	e.ns.Await(t, onX.Gone(), other.In(conn.CloseWait))
}

// --- 4. cookie exactness ---

// staleSource is the real tracker plus entries read from it earlier, whose
// sockets have since died: what a sweep holds when a socket is replaced
// between the walk of the map and SOCK_DESTROY.
type staleSource struct {
	*tracking.Tracker
	stale []conn.Conn
}

func (s staleSource) Walk(netns uint32, fn func(*conn.Conn)) error {
	if err := s.Tracker.Walk(netns, fn); err != nil {
		return err
	}
	for _, c := range s.stale {
		fn(&c)
	}
	return nil
}

// TestReusedTuple: entries for sockets that are gone, whose 4-tuples a
// newer connection now uses, are reported gone; the newer connection is
// left alone.
//
// The tracker cannot be made to hold such an entry at sweep time, and the
// test does not pretend it can:
//   - the server's CLOSE_WAIT entry leaves the map when the socket is
//     aborted (CLOSE_WAIT -> CLOSE fires);
//   - the client, closed in FIN_WAIT2, lives on as a timewait socket under
//     the same cookie, and the server's reset kills it without any event
//     (the tracepoint never fires for timewait sockets): the map keeps a
//     genuinely stale entry, which the sweep's reconcile (a walk of the
//     namespace's sockets) removes before deciding anything.
//
// So both entries, as the kernel shows the sockets before the abort, are
// handed to the sweep by a Source that wraps the real tracker: the race of
// a socket replaced between the walk and the destroy. (They are built from
// the kernel's view, not read from the tracker: the kernel may skip the
// tracker for a transition, recursion_misses, and a test must not depend
// on an event the kernel may skip.) Then a new connection takes the very
// same 4-tuple (same client port, same listener port, SO_REUSEADDR) and
// the sweep runs with the real Destroyer: its lookups and SOCK_DESTROY
// carry the old cookies, the kernel finds the new sockets on the tuples,
// the cookies differ, nothing is destroyed.
func TestReusedTuple(t *testing.T) {
	for _, fam := range testnet.Families {
		t.Run(fam, func(t *testing.T) {
			tr := openTracker(t)
			e := newEnv(t)
			client, server := e.ns.FinWait2Orphan(t, fam)
			entered := conn.Now()
			staleClient := conn.Conn{Cookie: client.Cookie, State: conn.FinWait2, Timewait: true, Orphan: true,
				Local: client.Local, Remote: client.Remote, NetNS: e.inode, Entered: entered, Exact: true}
			staleServer := conn.Conn{Cookie: server.Cookie, State: conn.CloseWait,
				Local: server.Local, Remote: server.Remote, NetNS: e.inode, Entered: entered, Exact: true}
			server.Abort() // RST: kills the client's timewait socket too
			e.ns.Await(t, client.Gone(), server.Gone())
			_, keptClient := e.entry(t, tr, client.Cookie)
			t.Logf("timewait socket killed by a reset: tracker kept its entry: %v", keptClient)

			// The same 4-tuple again.
			l := newRaw(t, e.ns, server.Local)
			l.listen(t)
			c2, s2 := pairOn(t, e.ns, l, client.Local)
			if c2.local != staleClient.Local || c2.remote != staleClient.Remote ||
				s2.local != staleServer.Local || s2.remote != staleServer.Remote {
				t.Fatalf("new connection %s / %s, want the tuples of %s / %s", c2, s2, staleClient.String(), staleServer.String())
			}
			if c2.cookie == staleClient.Cookie || s2.cookie == staleServer.Cookie {
				t.Fatal("new sockets reuse the old cookies")
			}
			e.ns.Await(t, c2.in(conn.Established), s2.in(conn.Established))

			pol := thresholds(time.Millisecond, conn.ClosingStates...)
			src := staleSource{Tracker: tr, stale: []conn.Conn{staleClient, staleServer}}
			sleepUntil(max(staleServer.Entered, staleClient.Entered) + uint64(time.Millisecond))
			rep := e.run(t, src, sweep.Options{Policy: &pol}, conn.Now())
			if keptClient && rep.Reconciled.Removed < 1 {
				t.Errorf("reconcile removed %d entries, want the dead timewait socket's", rep.Reconciled.Removed)
			}
			if _, ok := e.entry(t, tr, staleClient.Cookie); ok {
				t.Error("tracker still holds the dead timewait socket's entry after a sweep")
			}
			for _, cookie := range []uint64{staleClient.Cookie, staleServer.Cookie} {
				if it := mustItem(t, &rep, cookie); it.Outcome != sweep.Gone {
					t.Errorf("stale %s cookie=%d: %s %v, want gone", it.Conn.String(), cookie, it.Outcome, it.Err)
				}
			}
			if rep.Hung != 2 || rep.Gone != 2 || rep.Destroyed != 0 || rep.Failed != 0 {
				t.Errorf("want 2 hung, 2 gone, nothing destroyed; %s", describe(&rep))
			}
			// The new connection is untouched and carries data both ways.
			e.ns.Await(t, c2.in(conn.Established), s2.in(conn.Established), l.in(conn.Listen))
			exchange(t, c2, s2)
			exchange(t, s2, c2)
		})
	}
}

// TestTrackerSharedByNamespaces: one tracker serves every namespace of the
// host (one pin dir), and a sweep in one namespace must not cost another
// its exact entry times — also a namespace created after an earlier sweep.
func TestTrackerSharedByNamespaces(t *testing.T) {
	tr := openTracker(t)
	never := thresholds(time.Hour, conn.ClosingStates...)
	a := newEnv(t)
	a.ns.CloseWait(t, "tcp4")
	b := newEnv(t)
	sb, _ := b.ns.CloseWait(t, "tcp4")
	a.run(t, tr, sweep.Options{Policy: &never}, conn.Now()) // sees b's entries
	c := newEnv(t)
	sc, _ := c.ns.CloseWait(t, "tcp4")
	before := c.mustEntry(t, tr, sc.Cookie)
	rep := a.run(t, tr, sweep.Options{Policy: &never}, conn.Now()) // sees b's and c's
	// (Pruned may count entries of other tests' namespaces, gone
	// meanwhile: the tracker sees every namespace of the machine.)
	if _, ok := b.entry(t, tr, sb.Cookie); !ok {
		t.Errorf("a sweep in %s dropped the entry of %s in live namespace %s (pruned %d)", a.ns.Name, sb, b.ns.Name, rep.Reconciled.Pruned)
	}
	after, ok := c.entry(t, tr, sc.Cookie)
	if !ok || after.Entered != before.Entered || !after.Exact {
		t.Fatalf("entry of %s in namespace %s: before a sweep elsewhere %+v, after %+v (present %v)",
			sc, c.ns.Name, before, after, ok)
	}
	// And c's own sweep destroys it on time.
	pol := thresholds(time.Millisecond, conn.CloseWait)
	sleepUntil(before.Entered + uint64(time.Millisecond))
	rep = c.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
	if it := mustItem(t, &rep, sc.Cookie); it.Outcome != sweep.Destroyed {
		t.Errorf("%s: %s %v, want destroyed", it.Conn.String(), it.Outcome, it.Err)
	}
}

// exchange sends a few bytes from a to b and reads them there.
func exchange(t *testing.T, a, b *rawSock) {
	t.Helper()
	msg := []byte("still here")
	if n, err := unix.Write(a.fd, msg); err != nil || n != len(msg) {
		t.Fatalf("write %s: %d %v", a, n, err)
	}
	b.wait(t, unix.POLLIN)
	buf := make([]byte, 64)
	n, err := unix.Read(b.fd, buf)
	if err != nil || string(buf[:n]) != string(msg) {
		t.Fatalf("read %s: %q %v", b, buf[:max(n, 0)], err)
	}
}

// --- 5. owners ---

// TestOwners: a hung socket held by this process shows this process as its
// owner; excluding this process by name keeps it. A hung orphan has no
// owner and is destroyed all the same.
func TestOwners(t *testing.T) {
	tr := openTracker(t)
	e := newEnv(t)
	raw, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	comm := strings.TrimSpace(string(raw))
	held, _ := e.ns.CloseWait(t, "tcp4")
	orphan, _ := e.ns.LastAckOrphan(t, "tcp6")

	if _, err := tr.Reconcile(nil); err != nil { // learns the orphan is one
		t.Fatal(err)
	}
	conns, err := tr.Conns(0)
	if err != nil {
		t.Fatal(err)
	}
	var ask []*conn.Conn
	for i := range conns {
		ask = append(ask, &conns[i])
	}
	owners, err := tr.Owners(ask)
	if err != nil {
		t.Fatal(err)
	}
	// Its cgroup too, read from /proc: this process's.
	self, err := cgroup.Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := conn.Owner{PID: os.Getpid(), Comm: comm, Cgroup: self.Path, ContainerID: self.ContainerID, PodUID: self.PodUID}
	if self.Path == "" || !slices.Contains(owners[held.Cookie], want) {
		t.Errorf("owners of %s: %+v, want %+v", held, owners[held.Cookie], want)
	}
	if o := owners[orphan.Cookie]; len(o) != 0 {
		t.Errorf("orphan %s has owners %v", orphan, o)
	}

	pol := thresholds(time.Millisecond, conn.CloseWait, conn.LastAck)
	e.waitDeadlines(t, tr, &pol)
	pol.ExcludeProcesses = []string{comm}
	rep := e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
	it := mustItem(t, &rep, held.Cookie)
	if it.Conn.Owner == nil || it.Conn.Owner.PID != os.Getpid() || it.Conn.Owner.Comm != comm {
		t.Errorf("owner %+v, want pid %d comm %q", it.Conn.Owner, os.Getpid(), comm)
	}
	if it.Outcome != sweep.Skipped || it.Verdict.Skip != policy.SkipExcludedProcess {
		t.Errorf("%s: %s (%s), want skipped: excluded process", it.Conn.String(), it.Outcome, it.Verdict.Skip)
	}
	detail := fmt.Sprintf("process %s (pid %d) is excluded", comm, os.Getpid())
	if it.Verdict.SkipDetail != detail {
		t.Errorf("skip detail %q, want %q", it.Verdict.SkipDetail, detail)
	}
	if it := mustItem(t, &rep, orphan.Cookie); it.Outcome != sweep.Destroyed || it.Conn.Owner != nil {
		t.Errorf("orphan %s: %s owner %+v, want destroyed without owner", it.Conn.String(), it.Outcome, it.Conn.Owner)
	}
	e.ns.Await(t, held.In(conn.CloseWait), orphan.Gone())
	if rep.Skipped[policy.SkipExcludedProcess] != 1 || rep.Destroyed != 1 {
		t.Errorf("want 1 excluded process, 1 destroyed; %s", describe(&rep))
	}

	// Not excluded, it is destroyed, and this process lives on to see it.
	pol.ExcludeProcesses = nil
	rep = e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
	if it := mustItem(t, &rep, held.Cookie); it.Outcome != sweep.Destroyed || it.Conn.Owner == nil || it.Conn.Owner.PID != os.Getpid() {
		t.Errorf("%s: %s owner %+v, want destroyed, owned by pid %d", it.Conn.String(), it.Outcome, it.Conn.Owner, os.Getpid())
	}
	e.ns.Await(t, held.Gone())
	aborted(t, held)
}

// --- 6. the blast-radius cap ---

// TestMaxKills: five hung sockets and MaxKills 2 take three sweeps, the
// oldest going first; what is held back asks for the next sweep at once.
func TestMaxKills(t *testing.T) {
	tr := openTracker(t)
	e := newEnv(t)
	var socks []*testnet.Sock
	for range 5 {
		s, _ := e.ns.CloseWait(t, "tcp4")
		socks = append(socks, s)
	}
	pol := thresholds(time.Millisecond, conn.CloseWait)
	e.waitDeadlines(t, tr, &pol)

	for i, want := range []struct{ destroyed, held int }{{2, 3}, {2, 1}, {1, 0}} {
		now := conn.Now()
		rep := e.run(t, tr, sweep.Options{Policy: &pol, MaxKills: 2}, now)
		if rep.Hung != want.destroyed+want.held || rep.Destroyed != want.destroyed || rep.Held != want.held || rep.Failed != 0 {
			t.Fatalf("sweep %d: want %d destroyed, %d held; %s", i, want.destroyed, want.held, describe(&rep))
		}
		if want.held > 0 && (rep.Next == 0 || rep.Next > now) {
			t.Errorf("sweep %d: Next %d, want ≤ now %d: more to do", i, rep.Next, now)
		}
		if want.held == 0 && rep.Next != 0 {
			t.Errorf("sweep %d: Next %d, want 0: nothing pending", i, rep.Next)
		}
		// Oldest first: the sockets were built in order.
		for j, it := range rep.Items {
			wantOutcome := sweep.Held
			if j < want.destroyed {
				wantOutcome = sweep.Destroyed
			}
			if it.Outcome != wantOutcome {
				t.Errorf("sweep %d item %d %s: %s, want %s", i, j, it.Conn.String(), it.Outcome, wantOutcome)
			}
		}
		done := 2*i + want.destroyed
		var conds []testnet.Cond
		for j, s := range socks {
			if j < done {
				conds = append(conds, s.Gone())
			} else {
				conds = append(conds, s.In(conn.CloseWait))
			}
		}
		e.ns.Await(t, conds...)
	}
}

// TestOwnerOfLateAccept: a connection that reaches CLOSE_WAIT while it
// waits in the accept queue has no file when the tracker sees it; a
// process accepts it later. A sweep that walks only on demand must still
// learn that owner before deciding: here the owner is excluded, so the
// socket is kept.
func TestOwnerOfLateAccept(t *testing.T) {
	tr := openTracker(t)
	e := newEnv(t)
	raw, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	comm := strings.TrimSpace(string(raw))
	l := newRaw(t, e.ns, netip.AddrPortFrom(lo4, 0))
	l.listen(t)
	client := newRaw(t, e.ns, netip.AddrPortFrom(lo4, 0))
	client.dial(t, l.local)
	client.closeWrite(t) // the server end enters CLOSE_WAIT unaccepted

	var queued conn.Conn
	deadline := time.Now().Add(testnet.Timeout)
	for queued.Cookie == 0 {
		conns, err := tr.Conns(e.inode)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			if c.State == conn.CloseWait && c.Remote == client.local {
				queued = c
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the queued connection never showed up in CLOSE_WAIT")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if queued.File != 0 || queued.Orphan {
		t.Fatalf("queued connection %s: file %#x orphan %v, want no file and not an orphan", queued.String(), queued.File, queued.Orphan)
	}
	server := l.accept(t)
	if server.cookie != queued.Cookie {
		t.Fatalf("accepted cookie %d, tracked %d", server.cookie, queued.Cookie)
	}

	pol := thresholds(time.Millisecond, conn.CloseWait)
	pol.ExcludeProcesses = []string{comm}
	e.waitDeadlines(t, tr, &pol)
	rep := e.run(t, tr, sweep.Options{Policy: &pol, WalkOnDemand: true}, conn.Now())
	it := mustItem(t, &rep, server.cookie)
	if it.Outcome != sweep.Skipped || it.Conn.Owner == nil || it.Conn.Owner.PID != os.Getpid() {
		t.Fatalf("%s: %s owner %+v, want skipped, owned by pid %d", it.Conn.String(), it.Outcome, it.Conn.Owner, os.Getpid())
	}
	if rep.Reconciled.Updated == 0 {
		t.Errorf("the sweep learnt the owner without the walk recording the file: %+v", rep.Reconciled)
	}
	// The file is in the map now: the next sweep needs no walk.
	if c := e.mustEntry(t, tr, server.cookie); c.File == 0 {
		t.Fatalf("entry after the walk has no file")
	}
	rep = e.run(t, tr, sweep.Options{Policy: &pol, WalkOnDemand: true}, conn.Now())
	if it := mustItem(t, &rep, server.cookie); it.Outcome != sweep.Skipped || rep.Reconciled.Seen != 0 {
		t.Fatalf("second sweep: %s, walk %+v; want skipped without a walk", it.Outcome, rep.Reconciled)
	}
	e.ns.Await(t, server.in(conn.CloseWait))
}

// TestOwnersOfManySockets: one process holding thousands of hung sockets.
// An iterator may print at most 32 KiB per process (the first owners design
// failed here with E2BIG, and so destroyed nothing); every one of them must
// get its owner.
func TestOwnersOfManySockets(t *testing.T) {
	const n = 1500
	tr := openTracker(t)
	e := newEnv(t)
	l := newRaw(t, e.ns, netip.AddrPortFrom(lo4, 0))
	l.listen(t)
	servers := make(map[uint64]bool, n)
	for range n {
		client, server := pairOn(t, e.ns, l, netip.AddrPortFrom(lo4, 0))
		client.closeWrite(t)
		servers[server.cookie] = true
	}
	var ask []*conn.Conn
	deadline := time.Now().Add(testnet.Timeout)
	for len(ask) < n {
		conns, err := tr.Conns(e.inode)
		if err != nil {
			t.Fatal(err)
		}
		ask = ask[:0]
		for i := range conns {
			if servers[conns[i].Cookie] && conns[i].State == conn.CloseWait {
				ask = append(ask, &conns[i])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d server ends tracked in CLOSE_WAIT", len(ask), n)
		}
	}
	owners, err := tr.Owners(ask)
	if err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, c := range ask {
		if o := owners[c.Cookie]; len(o) != 1 || o[0].PID != os.Getpid() {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d sockets held by this process without it as their one owner", missing, n)
	}
}
