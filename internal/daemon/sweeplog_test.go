package daemon

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/logging"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func TestMissedWatch(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		count uint64
		at    time.Time
		grew  uint64 // 0: no warning
		over  time.Duration
	}
	for name, steps := range map[string][]step{
		"baseline, never a warning":              {{0, at(0), 0, 0}, {0, at(time.Hour), 0, 0}},
		"misses before the service are not news": {{1820, at(0), 0, 0}, {1820, at(time.Minute), 0, 0}},
		"growth warns at once, then at most every MissedWarnEvery": {
			{100, at(0), 0, 0},
			{110, at(time.Second), 10, time.Second},
			{150, at(time.Minute), 0, 0},                                  // rate-limited
			{190, at(time.Second + MissedWarnEvery - 1), 0, 0},            // still
			{200, at(time.Second + MissedWarnEvery), 90, MissedWarnEvery}, // all the growth since the last
			{200, at(time.Hour), 0, 0},                                    // no growth, no warning
			{201, at(time.Hour + time.Second), 1, time.Hour + time.Second - time.Second - MissedWarnEvery},
		},
		"a reloaded program starts over": {
			{500, at(0), 0, 0},
			{3, at(time.Minute), 3, time.Minute},
		},
	} {
		var m missedWatch
		for i, s := range steps {
			grew, over, warn := m.check(s.count, s.at)
			if warn != (s.grew > 0) || grew != s.grew || warn && over != s.over {
				t.Errorf("%s: step %d (%d at %v): warn %v grew %d over %v; want grew %d over %v",
					name, i, s.count, s.at.Sub(t0), warn, grew, over, s.grew, s.over)
			}
		}
	}
}

// serviceLog runs the service's sweep logging over reports, the tracker's
// missed count and the clock given per sweep, and returns the JSON lines
// logged at the default level (no -v).
func serviceLog(t *testing.T, reps []sweep.Report, missed []uint64, step time.Duration) []map[string]any {
	t.Helper()
	var b bytes.Buffer
	log, _, err := logging.New(&b, logging.Options{Format: logging.JSON})
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	now := time.Unix(0, 0)
	sl := newSweepLog(log, func() (tracking.Counters, error) { return tracking.Counters{Missed: missed[i]}, nil })
	sl.now = func() time.Time { return now }
	for i = range reps {
		sl.sweep(&reps[i])
		now = now.Add(step)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestRoutineWalksAtDebug: under churn every walk of the service seeds a
// few sockets (their transitions were missed); only the first walk, at
// start, says so at info level. A full map still warns every time.
func TestRoutineWalksAtDebug(t *testing.T) {
	const n = 1050
	reps := make([]sweep.Report, n)
	missed := make([]uint64, n)
	for i := range reps {
		reps[i] = sweep.Report{Skipped: nil, Reconciled: sweep.WalkStats{Seen: 400, Seeded: 3, Updated: 2, Removed: 1}}
	}
	reps[0].Reconciled.Seeded = 250 // sockets older than the tracker
	reps[n-1].Reconciled.Overflow = 7
	lines := serviceLog(t, reps, missed, 90*time.Second/n)
	var walks []map[string]any
	for _, m := range lines {
		if strings.HasPrefix(m["message"].(string), "Kernel walk") {
			walks = append(walks, m)
		}
	}
	if len(walks) != 2 || walks[0]["level"] != "info" || walks[0]["seeded"] != 250.0 || walks[1]["level"] != "warn" || walks[1]["overflow"] != 7.0 {
		t.Errorf("%d walks logged %d walk lines, want the first (info) and the full map (warn): %v", n, len(walks), walks)
	}
}

// TestMissedRunsWarn: growth of the tracker's missed runs is a warning,
// rate-limited; it is not hidden at debug level.
func TestMissedRunsWarn(t *testing.T) {
	const n = 60 // a sweep a minute for an hour, 30 more misses each
	reps := make([]sweep.Report, n)
	missed := make([]uint64, n)
	for i := range missed {
		missed[i] = 1820 + 30*uint64(i)
	}
	var warns []map[string]any
	for _, m := range serviceLog(t, reps, missed, time.Minute) {
		if strings.HasPrefix(m["message"].(string), "Tracker missed") {
			warns = append(warns, m)
		}
	}
	// At the second sweep, then every 5 minutes: minutes 1, 6, ..., 56.
	if len(warns) != 12 {
		t.Fatalf("%d warnings in an hour of growth, want 12: %v", len(warns), warns)
	}
	first, second := warns[0], warns[1]
	if first["level"] != "warn" || first["missed_new"] != 30.0 || first["missed_total"] != 1850.0 {
		t.Errorf("first warning %v: want 30 new, 1850 in all", first)
	}
	if second["missed_new"] != 150.0 || second["over_s"] != 300.0 {
		t.Errorf("second warning %v: want the 150 missed in the 5 minutes since the first", second)
	}
	if !strings.Contains(first["message"].(string), "Tracker missed 30 socket transitions in the last 1m0s (1850 since it was loaded)") {
		t.Errorf("message %q", first["message"])
	}
}

// TestSweepLineTookS: the debug sweep line's duration says its unit, in
// seconds like every duration field (took_s).
func TestSweepLineTookS(t *testing.T) {
	var b bytes.Buffer
	log, _, err := logging.New(&b, logging.Options{Format: logging.JSON, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	logSweep(log, &sweep.Report{Took: 2500 * time.Millisecond}, true)
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["took"]; ok || m["took_s"] != 2.5 {
		t.Errorf("sweep line %v: want took_s 2.5 and no took", m)
	}
}

// TestServiceRendersAsScan: the service logs a hung socket in the lines a
// scan prints, dry run or live: detected, reason, then its fate.
func TestServiceRendersAsScan(t *testing.T) {
	c := conn.Conn{Cookie: 7, State: conn.CloseWait, Exact: true,
		Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:39724"),
		Owner: &conn.Owner{PID: 18128, Comm: "python3"}}
	v := policy.Verdict{Age: 2900 * time.Millisecond, Threshold: 2 * time.Second,
		Reason: "CLOSE_WAIT for 2.9s ≥ 2s threshold (peer closed; the application never closed its socket)"}
	for _, o := range []sweep.Outcome{sweep.Planned, sweep.Destroyed} {
		rep := sweep.Report{Items: []sweep.Item{{Conn: c, Verdict: v, Outcome: o}}}
		var scan, svc bytes.Buffer
		for _, out := range []*bytes.Buffer{&scan, &svc} {
			log, _, err := logging.New(out, logging.Options{Format: logging.Text})
			if err != nil {
				t.Fatal(err)
			}
			if out == &scan {
				report.Items(log, &rep)
			} else {
				logSweep(log, &rep, true)
			}
		}
		got, want := stripTimes(svc.String()), stripTimes(scan.String())
		if got != want || !strings.Contains(got, "WARN - Hung connection detected: "+c.String()) ||
			!strings.Contains(got, "WARN -   Reason: "+v.Reason) {
			t.Errorf("%s: the service logs\n%s\nwant what a scan logs\n%s", o, got, want)
		}
	}
}

// stripTimes drops the timestamp at the head of each text line.
func stripTimes(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if _, rest, ok := strings.Cut(l, " - "); ok {
			l = rest
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
