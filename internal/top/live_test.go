package top

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/daemon"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// attach pins a tracker watching ns in a pin dir of the test's own.
func attach(t *testing.T, ns *testnet.NS) (*tracking.Tracker, string) {
	t.Helper()
	pin := testnet.PinDir(t)
	t.Cleanup(func() {
		if err := tracking.Unload(pin); err != nil {
			t.Error(err)
		}
	})
	tr, err := tracking.Open(tracking.Options{PinDir: pin, Watch: []uint32{ns.Inode()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, pin
}

func open(t *testing.T, ns *testnet.NS, pin string, pol *policy.Policy) *Source {
	t.Helper()
	sc, err := scope.Resolve([]string{ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Close)
	src, err := Open(Options{PinDir: pin, Scope: sc, Policy: pol, SynAlarm: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	return src
}

// TestSnapshotAgreesWithDump: sockets in known states in a namespace of
// the test's own; the snapshot's counts per state and half-open count are
// those of vishvananda/netlink's dump of the same namespace, its rates
// follow the tracker's per-state counters, and the CLOSE_WAIT socket is a
// candidate with its countdown.
func TestSnapshotAgreesWithDump(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	_, pin := attach(t, ns)
	ns.Established(t, "tcp4")
	ns.Established(t, "tcp6")
	cw, _ := ns.CloseWait(t, "tcp4")
	ns.FinWait2(t, "tcp4")
	ns.TimeWait(t, "tcp4")
	ns.SynRecv(t, "tcp4")
	pol := policy.Default()
	src := open(t, ns, pin, &pol)
	first, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // transitions between the two snapshots
		_ = i
		ns.Established(t, "tcp4")
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Interval <= 0 || first.Interval != 0 {
		t.Errorf("intervals %v then %v, want 0 then > 0", first.Interval, snap.Interval)
	}
	want := map[conn.State]int{}
	for _, d := range ns.MustDump(t) {
		want[d.State]++
	}
	got := map[conn.State]int{}
	for _, s := range snap.States {
		if s.Count > 0 {
			got[s.State] = s.Count
		}
	}
	for st, n := range want {
		if got[st] != n {
			t.Errorf("%s: %d in the snapshot, %d in the dump (snapshot %+v)", st, got[st], n, snap.States)
		}
	}
	for st, n := range got {
		if want[st] != n {
			t.Errorf("%s: %d in the snapshot, %d in the dump", st, n, want[st])
		}
	}
	if want[conn.SynRecv] == 0 || snap.Syn.HalfOpen != want[conn.SynRecv] || !snap.Syn.Alarm {
		t.Errorf("half-open %d (alarm %v), dump %d SYN_RECV, want equal and the alarm (threshold 1)", snap.Syn.HalfOpen, snap.Syn.Alarm, want[conn.SynRecv])
	}
	var est StateCount
	for _, s := range snap.States {
		if s.State == conn.Established {
			est = s
		}
	}
	if est.PerSec <= 0 || snap.Transitions <= 0 {
		t.Errorf("ESTABLISHED entries %v/s, transitions %v/s after 3 connections, want > 0", est.PerSec, snap.Transitions)
	}
	found := false
	for _, c := range snap.Candidates {
		if c.Conn.Cookie == cw.Cookie {
			found = true
			if c.Threshold != pol.Thresholds.CloseWait || c.Left <= 0 || c.Left > pol.Thresholds.CloseWait || c.Excluded != "" {
				t.Errorf("CLOSE_WAIT candidate %+v: want %v threshold, time left in (0, threshold]", c, pol.Thresholds.CloseWait)
			}
		}
	}
	if !found {
		t.Errorf("CLOSE_WAIT socket %d not among the candidates %+v", cw.Cookie, snap.Candidates)
	}
	for _, p := range snap.Peers {
		if p.Conns <= 0 {
			t.Errorf("peer %+v with no connection", p)
		}
	}
	if len(snap.Peers) == 0 {
		t.Error("no peers")
	}
}

// TestSnapshotWithoutTracker: nothing pinned: counts still come, and a
// warning says the tracker is not attached; nothing is pinned by top.
func TestSnapshotWithoutTracker(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	pin := testnet.PinDir(t)
	ns.Established(t, "tcp4")
	src := open(t, ns, pin, nil)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Warnings) == 0 || snap.Warnings[0] != WarnNotAttached {
		t.Errorf("warnings %q, want %q", snap.Warnings, WarnNotAttached)
	}
	if tracking.Pinned(pin) {
		t.Error("top attached a tracker")
	}
	n := 0
	for _, s := range snap.States {
		if s.State == conn.Established {
			n = s.Count
		}
	}
	if n != 2 {
		t.Errorf("ESTABLISHED %d, want 2 (both ends)", n)
	}
}

// TestKillsFromService: a service destroys a socket; the ring has it, and
// the snapshot lists it.
func TestKillsFromService(t *testing.T) {
	testnet.RequireRoot(t)
	ns := testnet.New(t)
	tr, pin := attach(t, ns)
	pol := policy.Default()
	pol.Thresholds.CloseWait = time.Second
	cw, _ := ns.CloseWait(t, "tcp4")
	var k *destroy.Destroyer
	var err error
	ns.MustDo(func() error { k, err = destroy.New(); return err })
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			return daemon.Run(ctx, tr, sweep.Live(k), daemon.Config{
				Sweep: sweep.Options{Policy: &pol, NetNS: map[uint32]string{ns.Inode(): ns.Name}},
				Log:   zerolog.New(io.Discard), Swept: daemon.PublishKills(tr, zerolog.New(io.Discard)),
			})
		})
	}()
	defer func() { cancel(); <-done }()
	ns.Await(t, cw.Gone())
	src := open(t, ns, pin, &pol)
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap, err := src.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		for _, kl := range snap.Kills {
			if kl.Conn.Cookie == cw.Cookie {
				if kl.Conn.State != conn.CloseWait || kl.Age < time.Second || kl.Reason == "" || kl.Conn.Local != cw.Local {
					t.Errorf("kill %+v: want CLOSE_WAIT, at least 1s old, a reason, local %s", kl, cw.Local)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %d destroyed, not in the kills %+v", cw.Cookie, snap.Kills)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
