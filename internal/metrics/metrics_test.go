package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// fakeTracker is a tracker whose counters the test sets.
type fakeTracker struct {
	mu       sync.Mutex
	counters tracking.Counters
	err      error
	entries  int
	read     bool
	reads    int // Counters calls
}

func (f *fakeTracker) Counters() (tracking.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.counters, f.err
}
func (f *fakeTracker) MapSize() uint32 { return 262144 }
func (f *fakeTracker) Entries() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.entries, f.read
}

func item(st conn.State, out sweep.Outcome, age time.Duration, rule string, err error) sweep.Item {
	return sweep.Item{Conn: conn.Conn{State: st}, Outcome: out, Err: err,
		Verdict: policy.Verdict{Age: age, Rule: rule}}
}

// value is the value of the one series of name with labels (name=value
// pairs); for a histogram, its sample count.
func value(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, s := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range s.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return s.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return s.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// TestSweptCounts: one sweep's report moves each metric by what the sweep
// did, with bounded labels: the state, the rule ("default" for the
// flags'), the errno's name, the outcome.
func TestSweptCounts(t *testing.T) {
	m := New(&fakeTracker{}, "v1.2.3")
	ownerErr := errors.New("read owners: boom")
	rep := sweep.Report{Took: 3 * time.Millisecond, Namespaces: 2, OwnerErr: ownerErr, ProcessesKilled: 1,
		Items: []sweep.Item{
			item(conn.CloseWait, sweep.Destroyed, 75*time.Second, "", nil),
			item(conn.CloseWait, sweep.Destroyed, 3*time.Hour, "web", nil),
			item(conn.TimeWait, sweep.Destroyed, 130*time.Second, "", nil),
			item(conn.LastAck, sweep.Failed, time.Minute, "", fmt.Errorf("destroy x: %w", unix.EPERM)),
			item(conn.LastAck, sweep.Failed, time.Minute, "", fmt.Errorf("destroy x: %w", destroy.ErrNoEffect)),
			item(conn.LastAck, sweep.Failed, time.Minute, "", ownerErr),
			item(conn.FinWait1, sweep.Held, time.Minute, "", nil),
			item(conn.FinWait1, sweep.Held, time.Minute, "", nil),
			item(conn.FinWait2, sweep.Skipped, time.Minute, "", nil),
			item(conn.FinWait2, sweep.Gone, time.Minute, "", nil),
			item(conn.FinWait2, sweep.Changed, time.Minute, "", nil),
		}}
	rep.ByState[conn.CloseWait], rep.ByState[conn.TimeWait] = 40, 7
	m.Swept(&rep)
	m.Swept(&sweep.Report{Took: 2 * time.Second, Namespaces: 2}) // nothing hung

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hck_destroyed_total", []string{"state", "CLOSE_WAIT", "reason", "default"}, 1},
		{"hck_destroyed_total", []string{"state", "CLOSE_WAIT", "reason", "web"}, 1},
		{"hck_destroyed_total", []string{"state", "TIME_WAIT", "reason", "default"}, 1},
		{"hck_destroyed_total", []string{"state", "LAST_ACK", "reason", "default"}, 0},
		{"hck_destroyed_age_seconds", []string{"state", "CLOSE_WAIT"}, 2},
		{"hck_destroyed_age_seconds", []string{"state", "TIME_WAIT"}, 1},
		{"hck_destroy_errors_total", []string{"errno", "EPERM"}, 1},
		{"hck_destroy_errors_total", []string{"errno", "no_effect"}, 1},
		{"hck_destroy_errors_total", []string{"errno", "owners_unknown"}, 1},
		{"hck_held_total", nil, 2},
		{"hck_not_destroyed_total", []string{"outcome", "skipped"}, 1},
		{"hck_not_destroyed_total", []string{"outcome", "gone"}, 1},
		{"hck_not_destroyed_total", []string{"outcome", "changed"}, 1},
		{"hck_not_destroyed_total", []string{"outcome", "planned"}, 0},
		{"hck_processes_ended_total", []string{"how", "killed"}, 1},
		{"hck_processes_ended_total", []string{"how", "terminated"}, 0},
		{"hck_sweeps_total", nil, 2},
		{"hck_sweep_duration_seconds", nil, 2},
		{"hck_namespaces", nil, 2},
		// The gauges are the last sweep's: it found nothing.
		{"hck_tracked_sockets", []string{"state", "CLOSE_WAIT"}, 0},
		{"hck_hung_sockets", []string{"state", "LAST_ACK"}, 0},
		{"hck_build_info", []string{"version", "v1.2.3"}, 1},
	} {
		if got := value(t, m, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if ts := value(t, m, "hck_last_sweep_timestamp_seconds"); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last sweep at %v", time.Unix(int64(ts), 0))
	}

	// The gauges follow the last sweep.
	m.Swept(&rep)
	for _, c := range []struct {
		state         string
		tracked, hung float64
	}{{"CLOSE_WAIT", 40, 2}, {"TIME_WAIT", 7, 1}, {"LAST_ACK", 0, 3}, {"FIN_WAIT1", 0, 2}, {"FIN_WAIT2", 0, 3}, {"CLOSING", 0, 0}} {
		if got := value(t, m, "hck_tracked_sockets", "state", c.state); got != c.tracked {
			t.Errorf("tracked %s = %v, want %v", c.state, got, c.tracked)
		}
		if got := value(t, m, "hck_hung_sockets", "state", c.state); got != c.hung {
			t.Errorf("hung %s = %v, want %v", c.state, got, c.hung)
		}
	}
}

// TestAgeBuckets: a destroyed socket's age lands in the bucket of its
// seconds, from a second to a day.
func TestAgeBuckets(t *testing.T) {
	m := New(&fakeTracker{}, "dev")
	m.Swept(&sweep.Report{Items: []sweep.Item{
		item(conn.CloseWait, sweep.Destroyed, 1500*time.Millisecond, "", nil),
		item(conn.CloseWait, sweep.Destroyed, 2*time.Hour, "", nil),
	}})
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "hck_destroyed_age_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			if s.GetLabel()[0].GetValue() != "CLOSE_WAIT" {
				continue
			}
			h := s.GetHistogram()
			if h.GetSampleSum() != 1.5+7200 {
				t.Errorf("sum %v, want 7201.5", h.GetSampleSum())
			}
			for _, b := range h.GetBucket() {
				want := uint64(0)
				if b.GetUpperBound() >= 2 {
					want = 1
				}
				if b.GetUpperBound() >= 7200 {
					want = 2
				}
				if b.GetCumulativeCount() != want {
					t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
				}
			}
			return
		}
	}
	t.Fatal("no CLOSE_WAIT age histogram")
}

// TestTrackerReadAtScrape: the tracker's counters are read when scraped,
// never cached; map entries come from the last read of the map and are
// left out before there was one; a failed read leaves its metrics out
// and the rest served.
func TestTrackerReadAtScrape(t *testing.T) {
	tr := &fakeTracker{}
	m := New(tr, "dev")
	srv := httptest.NewServer(m.Handler(NewHealth(time.Minute)))
	defer srv.Close()
	body := scrape(t, srv.URL+"/metrics", http.StatusOK)
	if strings.Contains(body, "hck_tracker_map_entries") {
		t.Errorf("map entries before any read of the map:\n%s", grepLines(body, "hck_tracker_"))
	}
	for _, want := range []string{"hck_tracker_map_capacity 262144", "hck_tracker_overflow_total 0"} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no %q in\n%s", want, grepLines(body, "hck_tracker_"))
		}
	}
	tr.mu.Lock()
	tr.counters = tracking.Counters{Overflow: 5, Missed: 12, UpdateErrors: 1, EventsLost: 3}
	tr.entries, tr.read = 60006, true
	tr.mu.Unlock()
	body = scrape(t, srv.URL+"/metrics", http.StatusOK)
	for _, want := range []string{"hck_tracker_map_entries 60006", "hck_tracker_overflow_total 5",
		"hck_tracker_missed_transitions_total 12", "hck_tracker_update_errors_total 1", "hck_tracker_events_lost_total 3"} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no %q in\n%s", want, grepLines(body, "hck_tracker_"))
		}
	}
	tr.mu.Lock()
	tr.err = errors.New("map gone")
	tr.mu.Unlock()
	body = scrape(t, srv.URL+"/metrics", http.StatusOK)
	if strings.Contains(body, "hck_tracker_overflow_total") || !strings.Contains(body, "hck_sweeps_total 0\n") {
		t.Errorf("with the counters unreadable:\n%s", grepLines(body, "hck_"))
	}
}

func scrape(t *testing.T, url string, code int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != code {
		t.Fatalf("GET %s: %d, want %d: %s", url, resp.StatusCode, code, b)
	}
	return string(b)
}

func grepLines(body, prefix string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestLabelsBounded: no hck_ metric has a label that could name a
// connection, a process or a pod: only these.
func TestLabelsBounded(t *testing.T) {
	allowed := map[string]bool{"state": true, "reason": true, "errno": true, "outcome": true, "how": true,
		"version": true, "goversion": true}
	m := New(&fakeTracker{read: true}, "dev")
	m.Swept(&sweep.Report{Items: []sweep.Item{item(conn.CloseWait, sweep.Failed, time.Second, "", unix.ENOBUFS)}})
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "hck_") {
			continue
		}
		n++
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
	if n < 19 {
		t.Errorf("%d hck_ metrics, want at least 19", n)
	}
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "hck_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestErrnoLabel: an errno's name, a few named failures, "other".
func TestErrnoLabel(t *testing.T) {
	owner := errors.New("read owners")
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("destroy a: %w", unix.EPERM), "EPERM"},
		{fmt.Errorf("check destroy of a: %w", unix.ENOBUFS), "ENOBUFS"},
		{fmt.Errorf("destroy a: %w: still there", destroy.ErrNoEffect), "no_effect"},
		{fmt.Errorf("look up a: %w", destroy.ErrNoAnswer), "no_answer"},
		{owner, "owners_unknown"},
		{errors.New("something else"), "other"},
		{unix.Errno(4000), "other"},
	} {
		if got := ErrnoLabel(c.err, owner); got != c.want {
			t.Errorf("ErrnoLabel(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// extra is another part's collector (the notifier's).
type extra struct{ desc *prometheus.Desc }

func (e extra) Describe(ch chan<- *prometheus.Desc) { ch <- e.desc }
func (e extra) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(e.desc, prometheus.CounterValue, 7)
}

// TestRegisterExtra: another part's collector is served with the rest; a
// second one under the same name is refused.
func TestRegisterExtra(t *testing.T) {
	m := New(&fakeTracker{}, "dev")
	e := extra{prometheus.NewDesc("hck_notify_dropped_total", "Dropped notifications.", nil, nil)}
	if err := m.Register(e); err != nil {
		t.Fatal(err)
	}
	if got := value(t, m, "hck_notify_dropped_total"); got != 7 {
		t.Errorf("extra collector's counter %v, want 7", got)
	}
	if err := m.Register(extra{prometheus.NewDesc("hck_notify_dropped_total", "Dropped notifications.", nil, nil)}); err == nil {
		t.Error("a second collector of the same metric registered")
	}
}

// TestHealth: 503 until the first beat, 200 while beats come within the
// limit, 503 naming how long since the last when they stop.
func TestHealth(t *testing.T) {
	now := time.Unix(1e9, 0)
	h := NewHealth(30 * time.Second)
	h.now = func() time.Time { return now }
	m := New(&fakeTracker{}, "dev")
	srv := httptest.NewServer(m.Handler(h))
	defer srv.Close()
	if body := scrape(t, srv.URL+"/healthz", http.StatusServiceUnavailable); !strings.Contains(body, "first sweep") {
		t.Errorf("before the first beat: %q", body)
	}
	h.Beat()
	now = now.Add(29 * time.Second)
	if body := scrape(t, srv.URL+"/healthz", http.StatusOK); body != "ok\n" {
		t.Errorf("29 s after a beat: %q", body)
	}
	now = now.Add(2 * time.Second)
	if body := scrape(t, srv.URL+"/healthz", http.StatusServiceUnavailable); !strings.Contains(body, "not reported for 31s") {
		t.Errorf("31 s after a beat: %q", body)
	}
	h.Beat()
	scrape(t, srv.URL+"/healthz", http.StatusOK)
	scrape(t, srv.URL+"/nothing", http.StatusNotFound)
}

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9477": "127.0.0.1:9477",
		"[::1]:9477":     "[::1]:9477",
		":9477":          ":9477",
		"0.0.0.0:0":      "0.0.0.0:0",
		"localhost:80":   "localhost:80",
	} {
		got, err := ParseAddr(in)
		if err != nil || got != want {
			t.Errorf("ParseAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "9477", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
		"127.0.0.1:http", "example.com:9477", "::1:9477", "1.2.3.4:09477", "127.0.0.1:9477\n"} {
		if got, err := ParseAddr(in); err == nil {
			t.Errorf("ParseAddr(%q) = %q, want an error", in, got)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseAddr(%q): error on several lines: %q", in, err)
		}
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9477", "[::1]:0", ":1", "x:y", "[fe80::1%eth0]:9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, err := ParseAddr(s)
		if err != nil {
			return
		}
		// What it accepts, it accepts again unchanged.
		if again, err := ParseAddr(addr); err != nil || again != addr {
			t.Errorf("ParseAddr(%q) = %q, then %q, %v", s, addr, again, err)
		}
	})
}

// TestPromtoolCheckMetrics: what /metrics serves passes Prometheus's own
// checker (promtool, Debian's prometheus package), after a sweep that
// used every label.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("needs promtool (apt-get install prometheus)")
	}
	m := New(&fakeTracker{read: true, entries: 3}, "dev")
	m.Swept(&sweep.Report{Items: []sweep.Item{
		item(conn.CloseWait, sweep.Destroyed, time.Minute, "web", nil),
		item(conn.CloseWait, sweep.Failed, time.Minute, "", unix.EPERM),
		item(conn.CloseWait, sweep.Held, time.Minute, "", nil),
	}})
	srv := httptest.NewServer(m.Handler(NewHealth(time.Minute)))
	defer srv.Close()
	body := scrape(t, srv.URL+"/metrics", http.StatusOK)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
