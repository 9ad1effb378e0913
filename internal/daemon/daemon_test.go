package daemon_test

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/daemon"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Privileged tests of the service loop: a real tracker pinned in a test pin
// dir, watching only the test's namespace, a real destroyer and the loop
// itself running on a thread inside that namespace, as the binary would.

// service is one running daemon.Run and what it did.
type service struct {
	ns   *testnet.NS
	tr   *tracking.Tracker
	pin  string
	stop func() // stops the loop (the tracker stays pinned until the test ends)
	mu   sync.Mutex
	reps []sweep.Report
	at   []uint64 // when each report came (CLOCK_BOOTTIME)
	log  bytes.Buffer
	// readyAfter is how many sweeps had run when Ready was called, and
	// readyWalked whether the first of them walked the namespace.
	readyAfter  int
	readyWalked bool
}

func (s *service) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(p)
}

func (s *service) reports() []sweep.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sweep.Report(nil), s.reps...)
}

func (s *service) logged() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// start runs the service in ns with pol until the test ends, and returns
// once its first sweep is done.
func start(t *testing.T, ns *testnet.NS, pol policy.Policy, mapSize uint32, backstop time.Duration) *service {
	t.Helper()
	return startWith(t, ns, pol, setup{mapSize: mapSize, backstop: backstop})
}

// setup is how startWith runs the service.
type setup struct {
	mapSize   uint32
	backstop  time.Duration
	pin       string        // a fresh pin dir when empty
	watch     []*testnet.NS // namespaces the tracker watches besides ns
	beat      func()        // daemon.Config.Heartbeat
	beatEvery time.Duration
}

// startWith is start with more choices: the pin dir (unloaded when the
// test ends) and other namespaces the tracker watches.
func startWith(t *testing.T, ns *testnet.NS, pol policy.Policy, o setup) *service {
	t.Helper()
	pin := o.pin
	if pin == "" {
		pin = testnet.PinDir(t)
		t.Cleanup(func() {
			if err := tracking.Unload(pin); err != nil {
				t.Error(err)
			}
		})
	}
	watch := []uint32{ns.Inode()}
	for _, w := range o.watch {
		watch = append(watch, w.Inode())
	}
	tr, err := tracking.Open(tracking.Options{PinDir: pin, MapSize: o.mapSize, Watch: watch})
	if err != nil {
		t.Fatal(err)
	}
	s := &service{ns: ns, tr: tr, pin: pin}
	var k *destroy.Destroyer
	ns.MustDo(func() error { k, err = destroy.New(); return err })
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := daemon.Config{
		Sweep: sweep.Options{Policy: &pol, NetNS: map[uint32]string{ns.Inode(): ns.Name}},
		Log:   zerolog.New(s).Level(zerolog.DebugLevel),
		// READY=1 only once the tracker is attached and the first sweep
		// (a full walk) ran: its report is in by then.
		Ready: func() {
			s.mu.Lock()
			s.readyAfter = len(s.reps)
			if s.readyAfter > 0 {
				s.readyWalked = s.reps[0].Walked != 0
			}
			s.mu.Unlock()
			close(ready)
		},
		Backstop:       o.backstop,
		Heartbeat:      o.beat,
		HeartbeatEvery: o.beatEvery,
		Swept: func(r *sweep.Report) {
			s.mu.Lock()
			s.reps = append(s.reps, *r)
			s.at = append(s.at, conn.Now())
			s.mu.Unlock()
		},
	}
	s.launch(t, cancel, done, ready,
		func() error { return ns.Do(func() error { return daemon.Run(ctx, tr, sweep.Live(k), cfg) }) },
		func() { k.Close(); tr.Close() })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readyAfter != 1 || !s.readyWalked || !tracking.Pinned(pin) {
		t.Fatalf("ready after %d sweeps (first walked the namespace: %v; tracker pinned: %v), want after the first, a full walk, with the tracker attached",
			s.readyAfter, s.readyWalked, tracking.Pinned(pin))
	}
	return s
}

// sweptSince reports whether a sweep ended at or after t.
func (s *service) sweptSince(t uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at) > 0 && s.at[len(s.at)-1] >= t
}

// sent is how many events the tracker has sent a service so far.
func (s *service) sent(t *testing.T) uint64 {
	t.Helper()
	c, err := s.tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c.EventsSent
}

// armed reads the service's timer as the tracker sees it (hck_armed).
func (s *service) armed(t *testing.T) uint64 {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(s.pin, "hck_armed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var v uint64
	if err := m.Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// destroyed returns the service's item for the socket with cookie, if it
// destroyed it.
func (s *service) destroyed(cookie uint64) *sweep.Item {
	for _, r := range s.reports() {
		for i := range r.Items {
			if r.Items[i].Conn.Cookie == cookie && r.Items[i].Outcome == sweep.Destroyed {
				return &r.Items[i]
			}
		}
	}
	return nil
}

// awaitDestroyed is destroyed's item, waiting for it: a test sees the
// socket gone as soon as the sweep destroyed it, a moment before the sweep
// ends and its report reaches Swept.
func (s *service) awaitDestroyed(cookie uint64) *sweep.Item {
	var it *sweep.Item
	waitFor(testnet.Timeout, func() bool { it = s.destroyed(cookie); return it != nil })
	return it
}

// waitFor polls cond every 10ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func thresholds(d time.Duration) policy.Policy {
	p := policy.Policy{ExcludePorts: []uint16{22}}
	for _, st := range conn.ClosingStates {
		if err := p.Thresholds.Set(st, d); err != nil {
			panic(err)
		}
	}
	return p
}

// walks counts the sweeps that walked the namespace.
func walks(reps []sweep.Report) int {
	n := 0
	for _, r := range reps {
		if r.Walked != 0 {
			n++
		}
	}
	return n
}

// TestBackstopRunsWhateverIsPending: a deadline far ahead does not stretch
// the service's sleep past its backstop; every backstop walks the
// namespace.
func TestBackstopRunsWhateverIsPending(t *testing.T) {
	ns := testnet.New(t)
	s := start(t, ns, thresholds(time.Hour), 0, time.Second)
	ns.CloseWait(t, "tcp4") // due in an hour
	if !waitFor(8*time.Second, func() bool { return walks(s.reports()) >= 4 }) {
		t.Fatalf("%d walks in 8s with a 1s backstop and a deadline an hour ahead, want 4 or more", walks(s.reports()))
	}
}

// TestTimeWaitWithoutEvent: a FIN_WAIT2 timewait socket (closed by its
// process while the peer kept its end open) enters TIME_WAIT when the peer
// closes, and no event says so. The service must destroy it once it is
// TIME_WAIT's threshold old, not when FIN_WAIT2's threshold, the backstop
// or the kernel's own 60s timer comes round.
func TestTimeWaitWithoutEvent(t *testing.T) {
	const twThreshold = 2 * time.Second
	ns := testnet.New(t)
	pol := thresholds(time.Hour)
	pol.Thresholds.TimeWait = twThreshold
	s := start(t, ns, pol, 0, time.Hour)
	for _, fam := range testnet.Families {
		client, server := ns.FinWait2Orphan(t, fam)
		time.Sleep(300 * time.Millisecond)
		server.Close() // its FIN: the client's timewait socket enters TIME_WAIT
		entered := conn.Now()
		ns.Await(t, client.InTimewait(conn.TimeWait))
		if !waitFor(twThreshold+8*time.Second, func() bool { return !client.Alive() }) {
			t.Fatalf("%s: TIME_WAIT socket %s alive %v after it entered TIME_WAIT with a %v threshold",
				fam, client, time.Duration(conn.Now()-entered), twThreshold)
		}
		it := s.awaitDestroyed(client.Cookie)
		if it == nil {
			t.Fatalf("%s: %s is gone, but not destroyed by the service", fam, client)
		}
		if it.Conn.State != conn.TimeWait || it.Verdict.Age < twThreshold {
			t.Errorf("%s: destroyed as %s aged %v, want TIME_WAIT aged %v or more", fam, it.Conn.State, it.Verdict.Age, twThreshold)
		}
	}
}

// TestHeldFinWait2ThenTimeWait: a FIN_WAIT2 socket its process held past
// the moment it could have been hung as TIME_WAIT, and a sweep since then
// (the service's timer an hour away again), is closed: it goes on as a
// timewait orphan, then to TIME_WAIT on the peer's FIN, and no transition
// reports that. The close is the last thing the tracker sees: it must wake
// the service for TIME_WAIT's threshold from then, not leave the socket to
// the backstop.
func TestHeldFinWait2ThenTimeWait(t *testing.T) {
	const twThreshold = 2 * time.Second
	ns := testnet.New(t)
	pol := thresholds(time.Hour)
	pol.Thresholds.TimeWait = twThreshold
	s := start(t, ns, pol, 0, time.Hour)
	for _, fam := range testnet.Families {
		client, server := ns.FinWait2(t, fam)
		c, ok := entry(t, s.tr, ns, client.Cookie)
		if !ok {
			t.Fatalf("%s: FIN_WAIT2 socket %s not tracked", fam, client)
		}
		// The sweep for TIME_WAIT's threshold from its entry comes and goes.
		if !waitFor(twThreshold+8*time.Second, func() bool { return s.sweptSince(c.Entered + uint64(twThreshold)) }) {
			t.Fatalf("%s: no sweep after %s's wake", fam, client)
		}
		if a := s.armed(t); a < conn.Now()+uint64(30*time.Minute) {
			t.Fatalf("%s: timer armed %v from now, want about an hour: nothing to test", fam, time.Duration(a-conn.Now()))
		}
		client.Close() // a timewait orphan in FIN_WAIT2
		ns.Await(t, client.InTimewait(conn.FinWait2))
		server.Close() // its FIN: TIME_WAIT, with no event
		entered := conn.Now()
		ns.Await(t, client.InTimewait(conn.TimeWait))
		if !waitFor(twThreshold+8*time.Second, func() bool { return !client.Alive() }) {
			t.Fatalf("%s: TIME_WAIT socket %s alive %v after it entered TIME_WAIT with a %v threshold",
				fam, client, time.Duration(conn.Now()-entered), twThreshold)
		}
		it := s.awaitDestroyed(client.Cookie)
		if it == nil {
			t.Fatalf("%s: %s is gone, but not destroyed by the service", fam, client)
		}
		if it.Conn.State != conn.TimeWait || it.Verdict.Age < twThreshold {
			t.Errorf("%s: destroyed as %s aged %v, want TIME_WAIT aged %v or more", fam, it.Conn.State, it.Verdict.Age, twThreshold)
		}
	}
}

// TestOverflowReported: a socket refused by a full map is reported when it
// happens, and the service walks the namespace at once (a walk drops the
// entries of dead sockets and seeds what fits), not at its backstop.
func TestOverflowReported(t *testing.T) {
	ns := testnet.New(t)
	s := start(t, ns, thresholds(time.Hour), 16, time.Hour)
	before := walks(s.reports())
	for range 12 {
		ns.CloseWait(t, "tcp4") // 24 closing sockets, room for 16
	}
	if !waitFor(5*time.Second, func() bool {
		return strings.Contains(s.logged(), "map is full") && walks(s.reports()) > before
	}) {
		t.Fatalf("a full map: no warning and walk within 5s (walks %d -> %d); log:\n%s", before, walks(s.reports()), s.logged())
	}
	c, err := s.tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Overflow < 8 {
		t.Errorf("overflow counted %d, want ≥ 8", c.Overflow)
	}
	// Reported once per OverflowEvery, however many sockets are refused.
	for range 5 {
		ns.CloseWait(t, "tcp4")
	}
	time.Sleep(time.Second)
	if n := strings.Count(s.logged(), "map is full"); n != 1 {
		t.Errorf("%d overflow warnings within a second, want 1", n)
	}
}

// TestWakes: the tracker hears each state's threshold, and FIN_WAIT2's is
// TIME_WAIT's when smaller (sweep.Wake): a FIN_WAIT2 socket may go on to
// TIME_WAIT as a timewait orphan, which no transition reports.
func TestWakes(t *testing.T) {
	pol := thresholds(time.Hour)
	pol.Thresholds.CloseWait = 3 * time.Second
	pol.Thresholds.TimeWait = 2 * time.Second
	w := daemon.Wakes(sweep.Options{Policy: &pol, NetNS: map[uint32]string{42: "", 7: "x"}}, false)
	if !slices.Equal(w.NetNS, []uint32{7, 42}) {
		t.Errorf("NetNS %v, want the sweep's [7 42]", w.NetNS)
	}
	if all := daemon.Wakes(sweep.Options{Policy: &pol, NetNS: map[uint32]string{42: ""}}, true); all.NetNS != nil {
		t.Errorf("every namespace: NetNS %v, want none (every watched one)", all.NetNS)
	}
	want := map[conn.State]time.Duration{conn.CloseWait: 3 * time.Second, conn.FinWait1: time.Hour,
		conn.FinWait2: 2 * time.Second, conn.Closing: time.Hour, conn.LastAck: time.Hour, conn.TimeWait: 2 * time.Second}
	if len(w.After) != len(want) {
		t.Errorf("After %v, want %v", w.After, want)
	}
	for s, d := range want {
		if w.After[s] != d {
			t.Errorf("After[%s] = %v, want %v", s, w.After[s], d)
		}
	}
	pol.Thresholds.TimeWait = 2 * time.Hour
	if d := daemon.Wakes(sweep.Options{Policy: &pol}, false).After[conn.FinWait2]; d != time.Hour {
		t.Errorf("FIN_WAIT2 with a longer TIME_WAIT threshold: %v, want its own hour", d)
	}
}

// TestDueBeforeTimerIsDestroyed: a socket that enters its state while the
// service sleeps towards a far timer (the backstop, an hour away), and is
// due long before it, is announced and destroyed at its deadline.
func TestDueBeforeTimerIsDestroyed(t *testing.T) {
	const threshold = 2 * time.Second
	ns := testnet.New(t)
	pol := thresholds(time.Hour)
	pol.Thresholds.CloseWait = threshold
	s := start(t, ns, pol, 0, time.Hour)
	if a := s.armed(t); a < conn.Now()+uint64(30*time.Minute) {
		t.Fatalf("timer armed at %d, %v from now: want the backstop, an hour away", a, time.Duration(a-conn.Now()))
	}
	before := s.sent(t)
	for _, fam := range testnet.Families {
		srv, _ := ns.CloseWait(t, fam)
		if !waitFor(threshold+8*time.Second, func() bool { return !srv.Alive() }) {
			t.Fatalf("%s: CLOSE_WAIT socket %s alive %v after a %v threshold, the service's timer an hour away", fam, srv, threshold+8*time.Second, threshold)
		}
		it := s.awaitDestroyed(srv.Cookie)
		if it == nil {
			t.Fatalf("%s: %s is gone, but not destroyed by the service", fam, srv)
		}
		if it.Verdict.Age < threshold {
			t.Errorf("%s: destroyed aged %v, before its %v threshold", fam, it.Verdict.Age, threshold)
		}
	}
	if n := s.sent(t) - before; n == 0 {
		t.Error("no event sent: the sockets were not announced")
	}
}

// TestDueAfterTimerSendsNothing: sockets due after the service's timer
// cost no event: the sweep at that timer walks the map and finds them. Of
// sockets due before it, only the first is announced: it lowers the timer,
// and those due later than it are found by the same sweep.
func TestDueAfterTimerSendsNothing(t *testing.T) {
	ns := testnet.New(t)
	pol := thresholds(time.Hour) // every socket due an hour on: after the backstop
	s := start(t, ns, pol, 0, 30*time.Minute)
	before := s.sent(t)
	for _, fam := range testnet.Families {
		ns.CloseWait(t, fam)
		ns.TimeWait(t, fam)
		ns.FinWait2Orphan(t, fam)
	}
	if n := s.sent(t) - before; n != 0 {
		t.Errorf("%d events for sockets due after the service's timer, want none", n)
	}

	// CLOSE_WAIT due in 10 minutes: before the timer, 30 minutes away.
	pol.Thresholds.CloseWait = 10 * time.Minute
	ns = testnet.New(t)
	s = start(t, ns, pol, 0, 30*time.Minute)
	before = s.sent(t)
	first, _ := ns.CloseWait(t, "tcp4")
	for range 3 {
		ns.CloseWait(t, "tcp6")
	}
	if n := s.sent(t) - before; n != 1 {
		t.Errorf("%d events for 4 CLOSE_WAIT sockets due before the timer, one after the other, want 1 (the first)", n)
	}
	c, ok := entry(t, s.tr, ns, first.Cookie)
	if !ok {
		t.Fatalf("%s not tracked", first)
	}
	if a, want := s.armed(t), c.Entered+uint64(pol.Thresholds.CloseWait); a != want {
		t.Errorf("timer at %d, want the first CLOSE_WAIT's deadline %d (off by %v)", a, want, time.Duration(int64(a-want)))
	}
}

// TestOtherNamespaceDoesNotWake: the tracker watches two namespaces, the
// service sweeps one. Sockets of the other are due before the service's
// timer, but are not its to destroy: they send no event and leave its
// timer alone. Its own are still destroyed on time.
func TestOtherNamespaceDoesNotWake(t *testing.T) {
	const threshold = 2 * time.Second
	ns, other := testnet.New(t), testnet.New(t)
	s := startWith(t, ns, thresholds(threshold), setup{backstop: time.Hour, watch: []*testnet.NS{other}})
	armed, before := s.armed(t), s.sent(t)
	var theirs []*testnet.Sock
	for _, fam := range testnet.Families {
		srv, cli := other.CloseWait(t, fam)
		theirs = append(theirs, srv, cli)
	}
	if n := s.sent(t) - before; n != 0 {
		t.Errorf("%d events for another namespace's sockets, want none", n)
	}
	if a := s.armed(t); a != armed {
		t.Errorf("another namespace's sockets moved the service's timer from %d to %d", armed, a)
	}
	srv, _ := ns.CloseWait(t, "tcp4")
	if !waitFor(threshold+8*time.Second, func() bool { return !srv.Alive() }) {
		t.Fatalf("CLOSE_WAIT socket %s of the service's namespace alive %v after a %v threshold", srv, threshold+8*time.Second, threshold)
	}
	if s.awaitDestroyed(srv.Cookie) == nil {
		t.Fatalf("%s is gone, but not destroyed by the service", srv)
	}
	for _, o := range theirs {
		if !o.Alive() {
			t.Errorf("%s of another namespace was destroyed", o)
		}
	}
}

// TestRestartedServiceHears: a service started on the pins of one that
// stopped (the tracker and its maps reused) is told of a socket due before
// its timer, even when the one before left the timer at a moment long
// past (hck_armed as a service killed mid-sweep may leave it).
func TestRestartedServiceHears(t *testing.T) {
	const threshold = 2 * time.Second
	ns := testnet.New(t)
	pol := thresholds(time.Hour)
	pol.Thresholds.CloseWait = threshold
	s := start(t, ns, pol, 0, time.Hour)
	s.stop()
	m, err := ebpf.LoadPinnedMap(filepath.Join(s.pin, "hck_armed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Put(uint32(0), uint64(1)); err != nil {
		t.Fatal(err)
	}
	m.Close()
	s = startWith(t, ns, pol, setup{backstop: time.Hour, pin: s.pin})
	before := s.sent(t)
	srv, _ := ns.CloseWait(t, "tcp4")
	if !waitFor(threshold+8*time.Second, func() bool { return !srv.Alive() }) {
		t.Fatalf("CLOSE_WAIT socket %s alive %v after a %v threshold, in a restarted service", srv, threshold+8*time.Second, threshold)
	}
	if s.awaitDestroyed(srv.Cookie) == nil {
		t.Fatalf("%s is gone, but not destroyed by the restarted service", srv)
	}
	if s.sent(t) == before {
		t.Error("no event sent to the restarted service")
	}
}

// entry is the tracker's entry for cookie.
func entry(t *testing.T, tr *tracking.Tracker, ns *testnet.NS, cookie uint64) (conn.Conn, bool) {
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

// launch runs the service loop (run) on a goroutine of its own, sets
// s.stop (cancel, wait, then release: close what the loop used), stopped
// when t ends, and returns once the first sweep is done.
func (s *service) launch(t *testing.T, cancel func(), done chan error, ready <-chan struct{},
	run func() error, release func()) {
	t.Helper()
	go func() { done <- run() }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			release()
		})
	}
	t.Cleanup(s.stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("service stopped before its first sweep: %v", err)
	case <-time.After(testnet.Timeout):
		t.Fatal("no first sweep")
	}
}

// TestHeartbeatFromTheLoop: the loop itself calls Heartbeat every
// HeartbeatEvery while it sleeps towards a deadline far away (systemd's
// watchdog), not only after sweeps.
func TestHeartbeatFromTheLoop(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	var beats atomic.Int64
	s := startWith(t, ns, thresholds(time.Hour), setup{beatEvery: 20 * time.Millisecond, beat: func() { beats.Add(1) }})
	if !waitFor(testnet.Timeout, func() bool { return beats.Load() >= 5 }) {
		t.Fatalf("%d heartbeats, want at least 5 at one per 20ms", beats.Load())
	}
	if n := len(s.reports()); n != 1 {
		t.Fatalf("%d sweeps, want the first only: the beats must come from the loop's own clock", n)
	}
}

// TestWakesRules: a rule's shorter threshold is its state's wake, whatever
// the rule matches (the kernel cannot tell); the TIME_WAIT one lowers
// FIN_WAIT2's too.
func TestWakesRules(t *testing.T) {
	pol := thresholds(time.Hour)
	pol.Rules = []policy.Rule{
		{Name: "a", Ports: []uint16{7001}, Thresholds: policy.Thresholds{CloseWait: 2 * time.Second}},
		{Name: "b", Processes: []string{"nginx"}, Thresholds: policy.Thresholds{CloseWait: 5 * time.Second, TimeWait: 3 * time.Second}},
	}
	w := daemon.Wakes(sweep.Options{Policy: &pol}, false)
	want := map[conn.State]time.Duration{conn.CloseWait: 2 * time.Second, conn.FinWait1: time.Hour,
		conn.FinWait2: 3 * time.Second, conn.Closing: time.Hour, conn.LastAck: time.Hour, conn.TimeWait: 3 * time.Second}
	for s, d := range want {
		if w.After[s] != d {
			t.Errorf("After[%s] = %v, want %v", s, w.After[s], d)
		}
	}
}
