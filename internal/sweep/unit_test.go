package sweep

import (
	"errors"
	"go/build"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

type fakeSource struct {
	conns     []conn.Conn
	owners    map[uint64][]conn.Owner
	ownerErr  error
	forgotten []uint64
	walks     int
	asked     []uint64   // cookies Owners was asked about
	walkedIn  [][]uint32 // what each Reconcile was asked to walk
}

func (f *fakeSource) Reconcile(in []uint32) (WalkStats, error) {
	f.walks++
	f.walkedIn = append(f.walkedIn, in)
	return WalkStats{}, nil
}
func (f *fakeSource) Walk(_ uint32, fn func(*conn.Conn)) error {
	var c conn.Conn // one buffer, as the tracker's: fn must copy what it keeps
	for i := range f.conns {
		c = f.conns[i]
		fn(&c)
	}
	return nil
}
func (f *fakeSource) Owners(cs []*conn.Conn) (map[uint64][]conn.Owner, error) {
	for _, c := range cs {
		f.asked = append(f.asked, c.Cookie)
	}
	return f.owners, f.ownerErr
}
func (f *fakeSource) Forget(c uint64) error { f.forgotten = append(f.forgotten, c); return nil }

// fakeKiller is a kernel where every socket is in the state its entry
// says, except those listed in moved.
type fakeKiller struct {
	got     []uint64 // destroyed
	checked []uint64
	moved   map[uint64]conn.State
}

func (k *fakeKiller) Kill(cs []*conn.Conn) []error {
	errs := k.Lookup(cs)
	for i, c := range cs {
		if errs[i] == nil {
			k.got = append(k.got, c.Cookie)
		}
	}
	return errs
}

func (k *fakeKiller) Lookup(cs []*conn.Conn) []error {
	errs := make([]error, len(cs))
	for i, c := range cs {
		k.checked = append(k.checked, c.Cookie)
		if st, ok := k.moved[c.Cookie]; ok {
			errs[i] = &StateError{Want: c.State, Have: st}
		}
	}
	return errs
}

// act is what the tests' sweeps do with k: look up in a dry run, destroy
// otherwise.
func act(k *fakeKiller, dry bool) Act {
	if dry {
		return DryRun(k)
	}
	return Live(k)
}

const sec = uint64(time.Second)

func hung(cookie uint64, st conn.State, timewait bool) conn.Conn {
	return conn.Conn{Cookie: cookie, State: st, Timewait: timewait, Exact: true, Entered: 1 * sec, File: 0xff00 + cookie,
		Local:  netip.MustParseAddrPort("10.0.0.1:8080"),
		Remote: netip.MustParseAddrPort("10.0.0.2:40000")}
}

func orphaned(c conn.Conn) conn.Conn {
	c.Orphan = true
	return c
}

func TestKernelLimits(t *testing.T) {
	pol := policy.Default()
	src := &fakeSource{
		conns: []conn.Conn{
			hung(1, conn.TimeWait, true), // timewait
			orphaned(hung(2, conn.LastAck, false)),
			hung(3, conn.CloseWait, false), // owned
		},
		owners: map[uint64][]conn.Owner{3: {{PID: 42, Comm: "app"}}},
	}
	now := 1000 * sec
	for _, tt := range []struct {
		limits *kernel.Capabilities
		killed []uint64
	}{
		{nil, []uint64{1, 2, 3}},
		{&kernel.Capabilities{DestroyTimewait: true, DestroyOrphans: true}, []uint64{1, 2, 3}},
		{&kernel.Capabilities{DestroyTimewait: true}, []uint64{1, 3}},
		{&kernel.Capabilities{}, []uint64{3}},
	} {
		k := &fakeKiller{}
		rep, err := Run(src, act(k, false), Options{Policy: &pol, Kernel: tt.limits}, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.got) != len(tt.killed) {
			t.Errorf("%+v: destroyed %v, want %v", tt.limits, k.got, tt.killed)
		}
		if rep.Unsupported != 3-len(tt.killed) || rep.Destroyed != len(tt.killed) {
			t.Errorf("%+v: report %d destroyed, %d unsupported", tt.limits, rep.Destroyed, rep.Unsupported)
		}
	}
	// Neither a timewait socket nor an orphan can have an owner.
	if !slices.Equal(src.asked, []uint64{3, 3, 3, 3}) {
		t.Errorf("owners asked for %v, want only the owned socket 3, once per sweep", src.asked)
	}
}

func TestOwnerFailureDestroysNothing(t *testing.T) {
	pol := policy.Default()
	src := &fakeSource{conns: []conn.Conn{hung(1, conn.CloseWait, false)}, ownerErr: errors.New("no iter")}
	k := &fakeKiller{}
	rep, _ := Run(src, act(k, false), Options{Policy: &pol}, 1000*sec)
	if len(k.got) != 0 || rep.Failed != 1 {
		t.Fatalf("destroyed %v, %d failed: owners unknown must destroy nothing", k.got, rep.Failed)
	}
}

func TestDryRunNeverDestroys(t *testing.T) {
	pol := policy.Default()
	src := &fakeSource{conns: []conn.Conn{hung(1, conn.CloseWait, false), hung(2, conn.FinWait1, false)}}
	k := &fakeKiller{}
	rep, _ := Run(src, act(k, true), Options{Policy: &pol}, 1000*sec)
	if len(k.got) != 0 || rep.Planned != 2 || len(src.forgotten) != 0 {
		t.Fatalf("dry run: destroyed %v, planned %d, forgot %v", k.got, rep.Planned, src.forgotten)
	}
}

// TestChangedLeftAlone: a hung entry whose socket the kernel has in another
// state is not the socket that was judged: nothing is destroyed, the item
// says so with the kernel's state, and the sweep walks the namespace to
// correct the map. A dry run asks the same question and says the same.
func TestChangedLeftAlone(t *testing.T) {
	pol := policy.Default()
	for _, dry := range []bool{false, true} {
		src := &fakeSource{conns: []conn.Conn{hung(1, conn.LastAck, false), hung(2, conn.CloseWait, false)}}
		k := &fakeKiller{moved: map[uint64]conn.State{1: conn.Established}}
		rep, err := Run(src, act(k, dry), Options{Policy: &pol, WalkOnDemand: true}, 1000*sec)
		if err != nil {
			t.Fatal(err)
		}
		it := rep.Items[slices.IndexFunc(rep.Items, func(it Item) bool { return it.Conn.Cookie == 1 })]
		if it.Outcome != Changed || it.KernelState != conn.Established || rep.Changed != 1 {
			t.Errorf("dry run %v: moved socket %s (kernel %s), %d changed; want changed (ESTABLISHED)", dry, it.Outcome, it.KernelState, rep.Changed)
		}
		if slices.Contains(k.got, 1) || slices.Contains(src.forgotten, 1) {
			t.Errorf("dry run %v: moved socket destroyed %v or forgotten %v", dry, k.got, src.forgotten)
		}
		if src.walks != 1 {
			t.Errorf("dry run %v: %d walks after a changed socket, want 1", dry, src.walks)
		}
		want := Destroyed
		if dry {
			want = Planned
		}
		if other := rep.Items[slices.IndexFunc(rep.Items, func(it Item) bool { return it.Conn.Cookie == 2 })]; other.Outcome != want {
			t.Errorf("dry run %v: the other socket %s, want %s", dry, other.Outcome, want)
		}
	}
}

func TestMaxKillsHoldsTheRest(t *testing.T) {
	pol := policy.Default()
	src := &fakeSource{}
	for i := range 5 {
		c := hung(uint64(i+1), conn.CloseWait, false)
		c.Entered += uint64(i) // oldest first
		src.conns = append(src.conns, c)
	}
	k := &fakeKiller{}
	now := 1000 * sec
	rep, _ := Run(src, act(k, false), Options{Policy: &pol, MaxKills: 2}, now)
	if rep.Destroyed != 2 || rep.Held != 3 || rep.Next == 0 || rep.Next > now {
		t.Fatalf("destroyed %d held %d next %d: want 2, 3 and a sweep right away", rep.Destroyed, rep.Held, rep.Next)
	}
	if k.got[0] != 1 || k.got[1] != 2 {
		t.Fatalf("destroyed %v first, want the oldest (1, 2)", k.got)
	}
	if len(src.forgotten) != 0 {
		t.Fatalf("forgot %v: destroyed full sockets leave the map through their CLOSE event", src.forgotten)
	}
}

// The next wake-up is the earliest deadline still ahead.
func TestNextDeadline(t *testing.T) {
	pol := policy.Default() // CLOSE_WAIT 60s, FIN_WAIT1 120s
	now := 100 * sec
	a := hung(1, conn.CloseWait, false)
	a.Entered = 90 * sec // due at 150s
	b := hung(2, conn.FinWait1, false)
	b.Entered = 20 * sec // due at 140s
	src := &fakeSource{conns: []conn.Conn{a, b}}
	rep, _ := Run(src, act(&fakeKiller{}, false), Options{Policy: &pol}, now)
	if rep.Next != 140*sec || rep.Hung != 0 {
		t.Fatalf("next %d hung %d, want 140s and none hung", rep.Next, rep.Hung)
	}
}

// Sweeps at a deadline walk the namespace only when what the map says of
// a hung socket may be out of date: a FIN_WAIT2 timewait socket may have
// moved to TIME_WAIT, a TIME_WAIT socket past its 60 s timer may be gone,
// a socket with no known file may have been accepted since.
// TestTimewaitCheckScheduled: a FIN_WAIT2 timewait socket enters TIME_WAIT
// on the peer's FIN, with no event. Its next deadline is when it could be
// hung as TIME_WAIT (its entry, or the last walk that saw it still in
// FIN_WAIT2, plus TIME_WAIT's threshold), not FIN_WAIT2's own deadline; a
// sweep from then on walks to see, and the walk moves the check on.
func TestTimewaitCheckScheduled(t *testing.T) {
	pol := policy.Default()
	pol.Thresholds.TimeWait = 2 * time.Second
	pol.Thresholds.FinWait2 = time.Hour
	fw2 := hung(1, conn.FinWait2, true)
	fw2.Entered = 100 * sec
	src := &fakeSource{conns: []conn.Conn{fw2}}

	rep, _ := Run(src, act(&fakeKiller{}, false), Options{Policy: &pol, WalkOnDemand: true}, 101*sec)
	if rep.Next != 102*sec || src.walks != 0 {
		t.Fatalf("at 101s: next %v, %d walks; want a check at 102s, no walk yet", time.Duration(rep.Next), src.walks)
	}
	rep, _ = Run(src, act(&fakeKiller{}, false), Options{Policy: &pol, WalkOnDemand: true}, 102*sec)
	if src.walks != 1 || rep.Walked != 102*sec {
		t.Fatalf("at 102s: %d walks (walked at %v); want one", src.walks, time.Duration(rep.Walked))
	}
	if rep.Next != 104*sec {
		t.Errorf("after a walk at 102s that saw it still in FIN_WAIT2: next %v, want 104s", time.Duration(rep.Next))
	}
	rep, _ = Run(src, act(&fakeKiller{}, false), Options{Policy: &pol, WalkOnDemand: true, Walked: rep.Walked}, 103*sec)
	if src.walks != 1 || rep.Next != 104*sec {
		t.Errorf("at 103s, walked at 102s: %d walks, next %v; want no walk, next 104s", src.walks, time.Duration(rep.Next))
	}
}

func TestWalkOnDemand(t *testing.T) {
	pol := policy.Default()
	pol.Thresholds.TimeWait = 30 * time.Second
	now := 1000 * sec
	young := hung(2, conn.TimeWait, true)
	young.Entered = now - 40*sec // hung, and its timer has not fired
	orphan := hung(4, conn.LastAck, false)
	orphan.File, orphan.Orphan = 0, true
	src := &fakeSource{conns: []conn.Conn{hung(1, conn.CloseWait, false), young, orphan}}
	Run(src, act(&fakeKiller{}, false), Options{Policy: &pol, WalkOnDemand: true}, now)
	if src.walks != 0 {
		t.Fatalf("walked %d times with nothing stale", src.walks)
	}
	Run(src, act(&fakeKiller{}, false), Options{Policy: &pol}, now)
	if src.walks != 1 {
		t.Fatalf("a full sweep walked %d times, want 1", src.walks)
	}
	old := hung(5, conn.TimeWait, true)
	old.Entered = now - 70*sec
	fileless := hung(6, conn.CloseWait, false)
	fileless.File = 0
	for _, c := range []conn.Conn{hung(3, conn.FinWait2, true), old, fileless} {
		src = &fakeSource{conns: []conn.Conn{c}}
		Run(src, act(&fakeKiller{}, false), Options{Policy: &pol, WalkOnDemand: true}, now)
		if src.walks != 1 {
			t.Errorf("hung %s (timewait %v, file %#x): walked %d times, want 1", c.State, c.Timewait, c.File, src.walks)
		}
	}
}

// tracked100k is 100,000 sockets nowhere near their threshold but hung
// ones: the sweep's common case.
func tracked100k(hungN int) *fakeSource {
	src := &fakeSource{conns: make([]conn.Conn, 100000)}
	for i := range src.conns {
		c := hung(uint64(i+1), conn.CloseWait, false)
		if i >= hungN {
			c.Entered = 1000*sec + uint64(i) // hung at 1060 s + i ns
		}
		src.conns[i] = c
	}
	return src
}

// TestStreamingDecide: a sweep keeps the hung sockets only, finds the
// earliest deadline of the others, and allocates in proportion to the hung
// sockets, not the tracked ones.
func TestStreamingDecide(t *testing.T) {
	pol := policy.Default()
	src := tracked100k(3)
	opts := Options{Policy: &pol, WalkOnDemand: true}
	now := 1000 * sec
	rep, err := Run(src, act(&fakeKiller{}, true), opts, now)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 100000 || rep.Hung != 3 || rep.Planned != 3 || len(rep.Items) != 3 {
		t.Fatalf("scanned %d, hung %d, planned %d, items %d; want 100000, 3, 3, 3", rep.Scanned, rep.Hung, rep.Planned, len(rep.Items))
	}
	if want := 1060*sec + 3; rep.Next != want {
		t.Errorf("next %d, want %d (the earliest socket not hung)", rep.Next, want)
	}
	if n := testing.AllocsPerRun(3, func() { _, _ = Run(src, act(&fakeKiller{}, true), opts, now) }); n > 100 {
		t.Errorf("a sweep of 100,000 tracked, 3 hung, allocates %v times", n)
	}
}

// BenchmarkSweep100k: deciding on 100,000 tracked sockets, 3 hung (the map
// read itself: tracking's BenchmarkWalk100k).
func BenchmarkSweep100k(b *testing.B) {
	pol := policy.Default()
	src := tracked100k(3)
	opts := Options{Policy: &pol, WalkOnDemand: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Run(src, act(&fakeKiller{}, true), opts, 1000*sec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestImportsNeitherDestroyNorTracking: sweep owns its outcome types and
// the interfaces it needs; the destroyer and the tracker implement them,
// not the other way round.
func TestImportsNeitherDestroyNorTracking(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasSuffix(imp, "/internal/destroy") || strings.HasSuffix(imp, "/internal/tracking") {
			t.Errorf("sweep imports %s", imp)
		}
	}
}

// TestDryRunCannotDestroy: a dry run's Act holds only the lookup; handed
// something that could destroy, it never does.
func TestDryRunCannotDestroy(t *testing.T) {
	pol := policy.Default()
	src := &fakeSource{conns: []conn.Conn{hung(1, conn.CloseWait, false)}, owners: map[uint64][]conn.Owner{1: {{PID: 42, Comm: "app"}}}}
	k := &fakeKiller{moved: map[uint64]conn.State{}}
	rep, err := Run(src, DryRun(k), Options{Policy: &pol}, 1000*sec)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.got) != 0 || len(k.checked) != 1 || rep.Planned != 1 || !DryRun(k).DryRun() || Live(k).DryRun() {
		t.Errorf("dry run: destroyed %v, looked up %v, planned %d", k.got, k.checked, rep.Planned)
	}
	if _, err := Run(src, Act{}, Options{Policy: &pol}, 1000*sec); err == nil {
		t.Error("a sweep with no act ran")
	}
}

// TestStepsWithinTook: the parts of a sweep's time are measured where they
// happen and never add up to more than the whole.
func TestStepsWithinTook(t *testing.T) {
	pol := policy.Default()
	src := &fakeSource{conns: []conn.Conn{hung(1, conn.CloseWait, false), hung(2, conn.FinWait1, false)}}
	rep, err := Run(src, Live(&fakeKiller{}), Options{Policy: &pol}, 1000*sec)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Steps
	if s.Walk <= 0 || s.Read <= 0 || s.Owners <= 0 || s.Act <= 0 {
		t.Errorf("steps %+v: a full sweep that walked, read, asked for owners and destroyed has all four", s)
	}
	if sum := s.Walk + s.Read + s.Owners + s.Act; sum > rep.Took {
		t.Errorf("steps add up to %v, more than took %v", sum, rep.Took)
	}
}

// inNS is c in namespace ns.
func inNS(c conn.Conn, ns uint32) conn.Conn {
	c.NetNS = ns
	return c
}

// TestScope: a sweep judges only the sockets of the namespaces in scope,
// names each hung one's namespace, counts the namespaces, and holds every
// namespace's sockets to one --max-kills; an empty scope judges nothing
// and walks nothing.
func TestScope(t *testing.T) {
	pol := policy.Default()
	src := &fakeSource{conns: []conn.Conn{
		inNS(hung(1, conn.CloseWait, false), 10),
		inNS(hung(2, conn.CloseWait, false), 20),
		inNS(hung(3, conn.CloseWait, false), 30), // not in scope
		inNS(hung(4, conn.CloseWait, false), 20),
	}}
	scope := map[uint32]string{10: "a", 20: ""}
	k := &fakeKiller{}
	rep, err := Run(src, act(k, false), Options{Policy: &pol, NetNS: scope, MaxKills: 2}, 1000*sec)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scanned != 3 || rep.Hung != 3 || rep.Namespaces != 2 {
		t.Errorf("scanned %d, hung %d, namespaces %d; want 3, 3, 2", rep.Scanned, rep.Hung, rep.Namespaces)
	}
	if rep.Destroyed != 2 || rep.Held != 1 || slices.Contains(k.got, 3) {
		t.Errorf("destroyed %v (%d), held %d; want two of 1, 2, 4 and one held", k.got, rep.Destroyed, rep.Held)
	}
	for _, it := range rep.Items {
		if it.Conn.NetNSName != scope[it.Conn.NetNS] {
			t.Errorf("socket %d of namespace %d named %q, want %q", it.Conn.Cookie, it.Conn.NetNS, it.Conn.NetNSName, scope[it.Conn.NetNS])
		}
	}
	if len(src.walkedIn) != 1 || !slices.Equal(src.walkedIn[0], []uint32{10, 20}) {
		t.Errorf("walks %v, want one of [10 20]", src.walkedIn)
	}

	src.walkedIn = nil
	rep, _ = Run(src, act(k, false), Options{Policy: &pol, NetNS: map[uint32]string{}}, 1000*sec)
	if rep.Scanned != 0 || rep.Hung != 0 || len(src.walkedIn) != 0 {
		t.Errorf("empty scope: scanned %d, hung %d, walks %v; want nothing", rep.Scanned, rep.Hung, src.walkedIn)
	}
}

// TestWalkOnlyWhereStale: a sweep at a deadline walks only the namespaces
// whose hung sockets the map may be wrong about, says which (WalkedNS),
// and a later sweep counts that walk for them only.
func TestWalkOnlyWhereStale(t *testing.T) {
	pol := policy.Default()
	stale := inNS(hung(1, conn.CloseWait, false), 20)
	stale.File = 0 // accepted since? only a walk can say
	src := &fakeSource{conns: []conn.Conn{inNS(hung(2, conn.CloseWait, false), 10), stale}}
	scope := map[uint32]string{10: "", 20: "", 30: ""}
	rep, _ := Run(src, act(&fakeKiller{}, true), Options{Policy: &pol, NetNS: scope, WalkOnDemand: true}, 1000*sec)
	if len(src.walkedIn) != 1 || !slices.Equal(src.walkedIn[0], []uint32{20}) || !slices.Equal(rep.WalkedNS, []uint32{20}) || rep.Walked == 0 {
		t.Fatalf("walks %v, WalkedNS %v, Walked %d; want one walk of [20]", src.walkedIn, rep.WalkedNS, rep.Walked)
	}
	// A FIN_WAIT2 timewait socket (FIN_WAIT2 threshold an hour) is worth
	// a walk once it could be hung as TIME_WAIT (120 s) since its
	// namespace was last walked.
	if err := pol.Thresholds.Set(conn.FinWait2, time.Hour); err != nil {
		t.Fatal(err)
	}
	fw := inNS(hung(3, conn.FinWait2, true), 30)
	fw.Entered = 900 * sec
	src = &fakeSource{conns: []conn.Conn{fw}}
	opts := Options{Policy: &pol, NetNS: scope, WalkOnDemand: true, Walked: 800 * sec}
	Run(src, act(&fakeKiller{}, true), opts, 1000*sec) // 900 + 120 > 1000: not yet
	if len(src.walkedIn) != 0 {
		t.Fatalf("walked %v before the socket could be TIME_WAIT", src.walkedIn)
	}
	rep, _ = Run(src, act(&fakeKiller{}, true), opts, 1021*sec)
	if len(src.walkedIn) != 1 || !slices.Equal(src.walkedIn[0], []uint32{30}) {
		t.Fatalf("walks %v at 1021 s, want one of [30]", src.walkedIn)
	}
	// Walked at 1021 s: not again until 1021 + 120 s, whatever the last
	// walk of every namespace.
	opts.WalkedIn = map[uint32]uint64{30: rep.Walked}
	if rep, _ = Run(src, act(&fakeKiller{}, true), opts, 1100*sec); len(src.walkedIn) != 1 || rep.Next != 1141*sec {
		t.Errorf("walks %v, next %d at 1100 s; want no walk, the next check at %d", src.walkedIn, rep.Next, 1141*sec)
	}
}

// TestRulesWithOwners: a rule on a process makes Due look at a socket
// early; with the owners known, the socket of that process dies on the
// rule's threshold, another process's is not hung (not counted, its
// deadline next), a report rule's is kept, and a socket shared with a
// process the rule does not cover waits for the later threshold.
func TestRulesWithOwners(t *testing.T) {
	const now = uint64(1000 * time.Second)
	mkc := func(cookie uint64, port uint16) conn.Conn {
		return conn.Conn{Cookie: cookie, State: conn.CloseWait, Exact: true, Entered: now - uint64(10*time.Second), NetNS: 1,
			Local: netip.MustParseAddrPort("10.0.0.1:" + strconv.Itoa(int(port))), Remote: netip.MustParseAddrPort("10.0.0.2:5000")}
	}
	p := policy.Default()
	p.Rules = []policy.Rule{
		{Name: "nginx", Processes: []string{"nginx"}, Thresholds: policy.Thresholds{CloseWait: 5 * time.Second}},
		{Name: "watch", Ports: []uint16{9000}, Thresholds: policy.Thresholds{CloseWait: time.Second}, Action: policy.RuleReport},
	}
	src := &fakeSource{
		conns: []conn.Conn{mkc(1, 80), mkc(2, 80), mkc(3, 9000), mkc(4, 80)},
		owners: map[uint64][]conn.Owner{
			1: {{PID: 10, Comm: "nginx"}},
			2: {{PID: 11, Comm: "curl"}},
			3: {{PID: 12, Comm: "curl"}},
			4: {{PID: 10, Comm: "nginx"}, {PID: 11, Comm: "curl"}},
		},
	}
	k := &fakeKiller{}
	rep, err := Run(src, act(k, false), Options{Policy: &p}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.got, []uint64{1}) {
		t.Errorf("destroyed %v, want [1] (nginx's, on its rule)", k.got)
	}
	if rep.Hung != 2 || rep.Skipped[policy.SkipReportOnly] != 1 || len(rep.Items) != 2 {
		t.Errorf("hung %d, report-only %d, items %d: want 2, 1, 2", rep.Hung, rep.Skipped[policy.SkipReportOnly], len(rep.Items))
	}
	for _, it := range rep.Items {
		if want := map[uint64]string{1: "nginx", 3: "watch"}[it.Conn.Cookie]; it.Verdict.Rule != want {
			t.Errorf("socket %d decided by rule %q, want %q", it.Conn.Cookie, it.Verdict.Rule, want)
		}
	}
	// curl's sockets are due at the default 60s.
	if want := now - uint64(10*time.Second) + uint64(60*time.Second); rep.Next != want {
		t.Errorf("Next %d, want %d (the default threshold of the sockets no rule made hung)", rep.Next, want)
	}
}

// TestByState: a sweep counts the tracked sockets in scope by state as it
// reads them (the metrics' tracked sockets by state), the hung and the
// others alike, and none outside its scope.
func TestByState(t *testing.T) {
	pol := policy.Default()
	src := &fakeSource{}
	add := func(cookie uint64, st conn.State, netns uint32, entered uint64) {
		c := hung(cookie, st, false)
		c.NetNS, c.Entered = netns, entered
		src.conns = append(src.conns, c)
	}
	now := 1000 * sec
	add(1, conn.CloseWait, 7, 1*sec)     // hung
	add(2, conn.CloseWait, 7, now-1*sec) // not yet
	add(3, conn.TimeWait, 7, now-1*sec)
	add(4, conn.LastAck, 7, now-1*sec)
	add(5, conn.CloseWait, 8, 1*sec) // another namespace: out of scope
	opts := Options{Policy: &pol, NetNS: map[uint32]string{7: "", 9: ""}, WalkOnDemand: true}
	rep, err := Run(src, act(&fakeKiller{}, true), opts, now)
	if err != nil {
		t.Fatal(err)
	}
	var want [StateSlots]int
	want[conn.CloseWait], want[conn.TimeWait], want[conn.LastAck] = 2, 1, 1
	if rep.ByState != want {
		t.Errorf("by state %v, want %v", rep.ByState, want)
	}
	if rep.Scanned != 4 {
		t.Errorf("scanned %d, want 4", rep.Scanned)
	}
}
