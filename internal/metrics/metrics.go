// Package metrics is the service's Prometheus metrics: what every sweep
// saw and did (fed by the service loop after each sweep, from its report),
// the tracker's own counters (read when scraped), and a health check fed
// by the loop's heartbeat. It keeps a registry of its own, never the
// process-wide default one.
//
// What a scrape costs does not grow with the tracked sockets: the counts
// by state come from the last sweep, which reads every tracked socket
// anyway; a scrape reads the tracker's counters (a few system calls).
package metrics

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Tracker is what the metrics read from the kernel tracker when scraped
// (*tracking.Tracker).
type Tracker interface {
	// Counters are the tracker's totals since it was first attached.
	Counters() (tracking.Counters, error)
	// MapSize is the socket map's capacity.
	MapSize() uint32
	// Entries is the map's entries at its last complete read.
	Entries() (int, bool)
}

// DefaultReason is the reason label of a socket destroyed on the
// command's own thresholds (policy.Verdict.Rule empty).
const DefaultReason = "default"

// Outcomes a hung socket that was not destroyed is counted under
// (hck_not_destroyed_total's outcome label).
var Outcomes = []string{"skipped", "planned", "gone", "changed", "unsupported"}

// Buckets of the histograms, in seconds.
var (
	// SweepBuckets: a sweep at a deadline takes well under a millisecond
	// at 60,000 tracked sockets; a full walk of many namespaces, a second
	// or more; --kill-process waits up to its grace period.
	SweepBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// AgeBuckets: thresholds run from a second (tests, demos) to hours.
	AgeBuckets = []float64{1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400}
)

// Metrics is the service's registry and the metrics a sweep updates.
type Metrics struct {
	reg *prometheus.Registry

	tracked       *prometheus.GaugeVec
	hung          *prometheus.GaugeVec
	destroyed     *prometheus.CounterVec
	destroyErrors *prometheus.CounterVec
	held          prometheus.Counter
	notDestroyed  *prometheus.CounterVec
	processes     *prometheus.CounterVec
	sweepDuration prometheus.Histogram
	age           *prometheus.HistogramVec
	sweeps        prometheus.Counter
	lastSweep     prometheus.Gauge
	namespaces    prometheus.Gauge
}

// New makes the registry: the sweep's metrics, tr's counters read at
// every scrape, the build info (version as the command says it), and the
// Go runtime's and the process's standard metrics (go_*, process_*).
func New(tr Tracker, version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.tracked = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hck_tracked_sockets",
		Help: "Tracked sockets in the service's network namespaces, by state, as the last sweep read them.",
	}, []string{"state"})
	m.hung = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hck_hung_sockets",
		Help: "Sockets past their threshold at the last sweep (destroyed or not), by state.",
	}, []string{"state"})
	m.destroyed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hck_destroyed_total",
		Help: "Hung sockets destroyed, by the state they were judged in and the config rule that decided (\"default\": the command's thresholds).",
	}, []string{"state", "reason"})
	m.destroyErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hck_destroy_errors_total",
		Help: "Hung sockets whose destroy failed, by errno name (EPERM, ...) or no_effect, no_answer, owners_unknown, other; retried by later sweeps, each failure counted.",
	}, []string{"errno"})
	m.held = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hck_held_total",
		Help: "Hung sockets a sweep left for the next one because of --max-kills.",
	})
	m.notDestroyed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hck_not_destroyed_total",
		Help: "Hung sockets a sweep did not destroy, by outcome: skipped (a filter or a protected process), planned (dry run), gone (already gone), changed (the kernel had it in another state), unsupported (this kernel cannot destroy it); once per sweep that judged it.",
	}, []string{"outcome"})
	m.processes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hck_processes_ended_total",
		Help: "Owners of sockets that could not be destroyed that --kill-process ended: terminated (exited after SIGTERM) or killed (sent SIGKILL).",
	}, []string{"how"})
	m.sweepDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "hck_sweep_duration_seconds",
		Help:    "How long each sweep took.",
		Buckets: SweepBuckets,
	})
	m.age = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hck_destroyed_age_seconds",
		Help:    "How long each destroyed socket had been in its state (a lower bound for sockets older than the tracker), by state.",
		Buckets: AgeBuckets,
	}, []string{"state"})
	m.sweeps = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hck_sweeps_total",
		Help: "Sweeps that ran.",
	})
	m.lastSweep = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hck_last_sweep_timestamp_seconds",
		Help: "When the last sweep ended, in seconds since the Unix epoch.",
	})
	m.namespaces = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hck_namespaces",
		Help: "Network namespaces in the service's scope at the last sweep.",
	})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "hck_build_info",
		Help:        "Always 1: the running hck-bpf's version and the Go version that built it.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	// Every series with a bounded label set exists from the start, at 0,
	// so that rate() and increase() see the first increment.
	for _, s := range conn.ClosingStates {
		m.tracked.WithLabelValues(s.String())
		m.hung.WithLabelValues(s.String())
		m.destroyed.WithLabelValues(s.String(), DefaultReason)
		m.age.WithLabelValues(s.String())
	}
	for _, o := range Outcomes {
		m.notDestroyed.WithLabelValues(o)
	}
	// The errors a deployment is likely to meet; other errnos appear
	// when they happen.
	for _, e := range []string{"EPERM", "no_effect", "no_answer", "owners_unknown", "other"} {
		m.destroyErrors.WithLabelValues(e)
	}
	for _, h := range []string{"terminated", "killed"} {
		m.processes.WithLabelValues(h)
	}
	m.reg.MustRegister(m.tracked, m.hung, m.destroyed, m.destroyErrors, m.held, m.notDestroyed, m.processes,
		m.sweepDuration, m.age, m.sweeps, m.lastSweep, m.namespaces, build,
		&trackerCollector{tr: tr},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds collectors of other parts of the service (the notifier's
// hck_notify_* counters) to the registry.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("register metrics collector: %w", err)
		}
	}
	return nil
}

// Gatherer is the registry, for promhttp and tests.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Swept takes in one sweep's report (daemon.Config.Swept): called from the
// service loop after every sweep; safe while a scrape runs.
func (m *Metrics) Swept(rep *sweep.Report) {
	m.sweeps.Inc()
	m.sweepDuration.Observe(rep.Took.Seconds())
	m.lastSweep.Set(float64(time.Now().UnixNano()) / 1e9)
	m.namespaces.Set(float64(rep.Namespaces))
	var hung [sweep.StateSlots]int
	for i := range rep.Items {
		it := &rep.Items[i]
		st := it.Conn.State
		if int(st) < len(hung) {
			hung[st]++
		}
		switch it.Outcome {
		case sweep.Destroyed:
			reason := it.Verdict.Rule
			if reason == "" {
				reason = DefaultReason
			}
			m.destroyed.WithLabelValues(st.String(), reason).Inc()
			m.age.WithLabelValues(st.String()).Observe(it.Verdict.Age.Seconds())
		case sweep.Failed:
			m.destroyErrors.WithLabelValues(ErrnoLabel(it.Err, rep.OwnerErr)).Inc()
		case sweep.Held:
			m.held.Inc()
		default:
			m.notDestroyed.WithLabelValues(it.Outcome.String()).Inc()
		}
	}
	// Only the closing states are tracked: the six series are all there
	// is, each set every sweep (no reset, so a scrape never sees one
	// missing).
	for _, s := range conn.ClosingStates {
		m.tracked.WithLabelValues(s.String()).Set(float64(rep.ByState[s]))
		m.hung.WithLabelValues(s.String()).Set(float64(hung[s]))
	}
	if rep.ProcessesTerminated > 0 {
		m.processes.WithLabelValues("terminated").Add(float64(rep.ProcessesTerminated))
	}
	if rep.ProcessesKilled > 0 {
		m.processes.WithLabelValues("killed").Add(float64(rep.ProcessesKilled))
	}
}

// ErrnoLabel is hck_destroy_errors_total's label for a failed destroy's
// error: the errno's name (EPERM, ENOBUFS, ...), no_effect (the kernel
// answered success and kept the socket), no_answer, owners_unknown (the
// sweep could not read owners: nothing was destroyed), else other. A
// bounded set: no address, port or message in it.
func ErrnoLabel(err, ownerErr error) string {
	var en syscall.Errno
	switch {
	case ownerErr != nil && errors.Is(err, ownerErr):
		return "owners_unknown"
	case errors.Is(err, destroy.ErrNoEffect):
		return "no_effect"
	case errors.Is(err, destroy.ErrNoAnswer):
		return "no_answer"
	case errors.As(err, &en):
		if name := unix.ErrnoName(en); name != "" {
			return name
		}
	}
	return "other"
}

// trackerCollector reads the tracker's counters at scrape time: they are
// the kernel's (per-CPU array, the program's recursion misses), cheap to
// read, and never lag.
type trackerCollector struct{ tr Tracker }

var (
	entriesDesc = prometheus.NewDesc("hck_tracker_map_entries",
		"Sockets in the tracker's map (every namespace it records), as the last sweep read them.", nil, nil)
	capacityDesc = prometheus.NewDesc("hck_tracker_map_capacity",
		"Sockets the tracker's map holds (--map-size).", nil, nil)
	overflowDesc = prometheus.NewDesc("hck_tracker_overflow_total",
		"Sockets the tracker could not record because its map was full, since it was first attached.", nil, nil)
	missedDesc = prometheus.NewDesc("hck_tracker_missed_transitions_total",
		"Socket transitions the kernel did not run the tracker for (its program's recursion misses), since it was loaded.", nil, nil)
	updateErrorsDesc = prometheus.NewDesc("hck_tracker_update_errors_total",
		"Map updates of the tracker that failed for another reason than a full map, since it was first attached.", nil, nil)
	eventsLostDesc = prometheus.NewDesc("hck_tracker_events_lost_total",
		"Wake-up events the tracker could not send the service (ring buffer full), since it was first attached.", nil, nil)
)

func (c *trackerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{entriesDesc, capacityDesc, overflowDesc, missedDesc, updateErrorsDesc, eventsLostDesc} {
		ch <- d
	}
}

func (c *trackerCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(c.tr.MapSize()))
	if n, ok := c.tr.Entries(); ok {
		ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(n))
	}
	cs, err := c.tr.Counters()
	if err != nil {
		err = fmt.Errorf("read tracker counters: %w", err)
		for _, d := range []*prometheus.Desc{overflowDesc, missedDesc, updateErrorsDesc, eventsLostDesc} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	ch <- prometheus.MustNewConstMetric(overflowDesc, prometheus.CounterValue, float64(cs.Overflow))
	ch <- prometheus.MustNewConstMetric(missedDesc, prometheus.CounterValue, float64(cs.Missed))
	ch <- prometheus.MustNewConstMetric(updateErrorsDesc, prometheus.CounterValue, float64(cs.UpdateErrors))
	ch <- prometheus.MustNewConstMetric(eventsLostDesc, prometheus.CounterValue, float64(cs.EventsLost))
}
