package sweep_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// Timewait sockets fire no event; reconcile gives them their state and exact
// age, and SOCK_DESTROY removes them like full sockets.
func TestTimewaitSocketsDestroyed(t *testing.T) {
	const threshold = time.Second
	for _, fam := range testnet.Families {
		t.Run(fam, func(t *testing.T) {
			e := newEnv(t)
			tr := openTracker(t)

			before := conn.Now()
			tw := e.ns.TimeWait(t, fam)
			mid := conn.Now()
			orphan, _ := e.ns.FinWait2Orphan(t, fam)
			after := conn.Now()

			pol := thresholds(threshold, conn.TimeWait, conn.FinWait2)
			rep := e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
			if rep.Hung != 0 {
				t.Fatalf("hung before any threshold: %s", describe(&rep))
			}
			slack := uint64(20 * time.Millisecond)
			twEnt := e.mustEntry(t, tr, tw.Cookie)
			if twEnt.State != conn.TimeWait || !twEnt.Timewait || !twEnt.Exact ||
				twEnt.Entered+slack < before || twEnt.Entered > mid+slack {
				t.Fatalf("TIME_WAIT entry %+v: want exact, entered within 20ms of [%d, %d]", twEnt, before, mid)
			}
			orEnt := e.mustEntry(t, tr, orphan.Cookie)
			if c, err := tr.Counters(); err == nil && c.Missed > 0 && !orEnt.Exact {
				// The kernel skipped the tracker for a transition (a
				// softirq on the CPU running it): the walk noticed the
				// state change, with a lower-bound age.
				t.Logf("tracker missed %d transitions; FIN_WAIT2 orphan seen by the walk: %+v", c.Missed, orEnt)
				orEnt.Exact, orEnt.Entered = true, mid
			}
			if orEnt.State != conn.FinWait2 || !orEnt.Timewait || !orEnt.Exact ||
				orEnt.Entered < mid || orEnt.Entered > after {
				t.Fatalf("FIN_WAIT2 orphan entry %+v: want exact timewait, entered within [%d, %d]", orEnt, mid, after)
			}

			// One nanosecond early: still alive.
			rep = e.run(t, tr, sweep.Options{Policy: &pol}, twEnt.Entered+uint64(threshold)-1)
			if it, ok := item(&rep, tw.Cookie); ok {
				t.Fatalf("TIME_WAIT acted on before its deadline: %s", it.Outcome)
			}
			sleepUntil(max(twEnt.Entered, orEnt.Entered) + uint64(threshold))
			rep = e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
			for _, s := range []*testnet.Sock{tw, orphan} {
				if it := mustItem(t, &rep, s.Cookie); it.Outcome != sweep.Destroyed {
					t.Errorf("%s: %s (%v), want destroyed", s, it.Outcome, it.Err)
				}
				if s.Alive() {
					t.Errorf("%s still in the kernel", s)
				}
				if _, ok := e.entry(t, tr, s.Cookie); ok {
					t.Errorf("%s still tracked", s)
				}
			}
		})
	}
}

// A socket older than the tracker counts from first sight: never destroyed
// before the threshold from then, and shown as a lower bound.
func TestPreexistingSocketWaitsFullThreshold(t *testing.T) {
	const threshold = time.Second
	e := newEnv(t)
	srv, _ := e.ns.CloseWait(t, "tcp4")
	time.Sleep(300 * time.Millisecond) // older than the tracker by this much
	loaded := conn.Now()
	tr := openTracker(t)
	pol := thresholds(threshold, conn.CloseWait)

	rep := e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
	if rep.Reconciled.Seeded == 0 {
		t.Fatalf("nothing seeded: %+v", rep.Reconciled)
	}
	ent := e.mustEntry(t, tr, srv.Cookie)
	if ent.Exact || ent.Entered < loaded {
		t.Fatalf("seeded entry %+v: want a lower bound counted from load (%d)", ent, loaded)
	}
	// The socket is 1.2s old by now, but the tracker cannot know that.
	rep = e.run(t, tr, sweep.Options{Policy: &pol}, ent.Entered+uint64(threshold)-1)
	if _, ok := item(&rep, srv.Cookie); ok || !srv.Alive() {
		t.Fatalf("destroyed before its threshold from first sight: %s", describe(&rep))
	}
	sleepUntil(ent.Entered + uint64(threshold))
	rep = e.run(t, tr, sweep.Options{Policy: &pol}, conn.Now())
	it := mustItem(t, &rep, srv.Cookie)
	if it.Outcome != sweep.Destroyed || it.Conn.Exact {
		t.Fatalf("%s exact=%v, want destroyed with a lower-bound age", it.Outcome, it.Conn.Exact)
	}
	if !strings.Contains(it.Verdict.Reason, "≥") || !strings.Contains(it.Verdict.Reason, "lower bound") {
		t.Errorf("reason %q does not mark the age as a lower bound", it.Verdict.Reason)
	}
}
