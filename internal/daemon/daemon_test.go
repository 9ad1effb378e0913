package daemon_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

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
	mu   sync.Mutex
	reps []sweep.Report
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
	pin := testnet.PinDir(t)
	tr, err := tracking.Open(tracking.Options{PinDir: pin, MapSize: mapSize, Watch: []uint32{ns.Inode()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		if err := tracking.Unload(pin); err != nil {
			t.Error(err)
		}
	})
	s := &service{ns: ns, tr: tr}
	var k *destroy.Destroyer
	ns.MustDo(func() error { k, err = destroy.New(); return err })
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := daemon.Config{
		Sweep: sweep.Options{Policy: &pol, NetNS: ns.Inode()},
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
		Backstop: backstop,
		Swept: func(r *sweep.Report) {
			s.mu.Lock()
			s.reps = append(s.reps, *r)
			s.mu.Unlock()
		},
	}
	go func() { done <- ns.Do(func() error { return daemon.Run(ctx, tr, sweep.Live(k), cfg) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		k.Close()
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("service stopped before its first sweep: %v", err)
	case <-time.After(testnet.Timeout):
		t.Fatal("no first sweep")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readyAfter != 1 || !s.readyWalked || !tracking.Pinned(pin) {
		t.Fatalf("ready after %d sweeps (first walked the namespace: %v; tracker pinned: %v), want after the first, a full walk, with the tracker attached",
			s.readyAfter, s.readyWalked, tracking.Pinned(pin))
	}
	return s
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
		var it *sweep.Item
		for _, r := range s.reports() {
			for i := range r.Items {
				if r.Items[i].Conn.Cookie == client.Cookie && r.Items[i].Outcome == sweep.Destroyed {
					it = &r.Items[i]
				}
			}
		}
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
