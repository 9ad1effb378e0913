// Package daemon is the service loop: keep the tracker attached, sleep until
// the next tracked socket reaches its threshold, sweep, repeat.
package daemon

import (
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Backstop is the longest the service goes without a full walk of the
// namespace (reconcile), however far the next deadline: the walk catches
// what no event reports (a timewait socket gone, a socket the tracker
// missed, one refused by a full map) and recovers from a lost event
// (hck_events full). A safety net, not a poll.
const Backstop = time.Minute

// OverflowEvery is the most often a full map is reported, and walked for.
const OverflowEvery = 10 * time.Second

// Config of the service.
type Config struct {
	Sweep sweep.Options
	Log   zerolog.Logger
	// Ready is called once the tracker is attached and the first sweep is
	// done (systemd's READY=1).
	Ready func()
	// Swept, when set, is called after every sweep that ran (a debugging
	// hook: the command writes heap profiles with it).
	Swept func(*sweep.Report)
	// Backstop overrides the package's Backstop when not zero.
	Backstop time.Duration
	// Scope, when set, is the service's network namespaces: Sweep.NetNS
	// is taken from it, and before every full walk but the first it is
	// refreshed (scope.Scope.Refresh: with --all-netns, namespaces made
	// since join it, gone ones leave it). The tracker watches each new
	// one; Closed is called with each one gone (the destroyers' pool
	// closes its destroyer).
	Scope  *scope.Scope
	Closed func(ns uint32)
	// Heartbeat, when set, is called from the loop itself every
	// HeartbeatEvery and after every sweep, so that a wedged loop stops
	// calling it (systemd's WATCHDOG=1, /healthz). Not before Ready.
	Heartbeat      func()
	HeartbeatEvery time.Duration
	// Reload, when set, brings new sweep options (a reloaded
	// configuration): they apply from the next sweep, which runs at once;
	// the tracker's wakes follow them. NetNS is the service's own (its
	// scope): the one given is ignored. Applied tells the sender whether
	// the loop took them.
	Reload <-chan Reload
}

// Reload is one new set of sweep options for a running service.
type Reload struct {
	Sweep sweep.Options
	// Applied, when set, receives nil once the options are in use, or why
	// they are not (the tracker's wakes could not be changed: the old
	// options stay).
	Applied chan<- error
}

// Run sweeps whenever a tracked socket is due, or may be due without an
// event telling, and at least every Backstop, until ctx ends, doing act
// with the hung sockets. The tracker stays pinned afterwards.
//
// The tracker knows when the timer fires: it announces only a socket due
// before that, and lowers the timer itself. A sweep walks the map, so the
// sockets due later need no event: the next timer is armed for the
// earliest of them.
func Run(ctx context.Context, tr *tracking.Tracker, act sweep.Act, cfg Config) error {
	all := false
	if cfg.Scope != nil {
		cfg.Sweep.NetNS, all = cfg.Scope.Names(), cfg.Scope.All()
	}
	events, err := tr.Events(Wakes(cfg.Sweep, all))
	if err != nil {
		return err
	}
	defer events.Close()
	backstop := uint64(Backstop)
	if cfg.Backstop > 0 {
		backstop = uint64(cfg.Backstop)
	}

	// The reader keeps the earliest deadline it has seen and pokes the loop;
	// a burst of transitions costs one wake-up, not one per socket.
	var pending atomic.Uint64
	var overflowed atomic.Bool
	wake := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() {
		for {
			ev, err := events.Read()
			if err != nil {
				readErr <- err
				return
			}
			if ev.Overflow {
				overflowed.Store(true)
			} else if !keepEarliest(&pending, ev.Due) {
				continue
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()

	timer := time.NewTimer(0) // the first sweep, a full walk, at once
	defer timer.Stop()
	var beat <-chan time.Time // nil: no heartbeat
	if cfg.Heartbeat != nil && cfg.HeartbeatEvery > 0 {
		t := time.NewTicker(cfg.HeartbeatEvery)
		defer t.Stop()
		beat = t.C
	}
	var armed uint64 // CLOCK_BOOTTIME the timer fires at; 0: not armed
	arm := func(at uint64) {
		if armed != 0 && at >= armed {
			return
		}
		armed = at
		events.Arm(at)
		timer.Reset(time.Duration(max(int64(at)-int64(conn.Now()), 0)))
	}
	ready := false
	sweepLog := newSweepLog(cfg.Log, tr.Counters)
	var lastWalk uint64 // CLOCK_BOOTTIME of the last full walk that worked
	var walkDue uint64  // when the next full walk is due
	// walkedIn: later walks of single namespaces (sweep.Options.WalkedIn).
	var walkedIn map[uint32]uint64
	var overflowAt uint64 // when to report a full map and walk; 0: not due
	var quietUntil uint64 // no overflow report before this
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat:
			if ready {
				cfg.Heartbeat()
			}
		case r := <-cfg.Reload:
			err := reload(&cfg, events, all, r.Sweep)
			if r.Applied != nil {
				r.Applied <- err
			}
			if err == nil {
				arm(conn.Now())
			}
		case err := <-readErr:
			if errors.Is(err, tracking.ErrEventsClosed) && ctx.Err() != nil {
				return nil
			}
			return err
		case <-wake:
			if at := pending.Swap(0); at != 0 {
				arm(at)
			}
			if overflowed.Swap(false) {
				overflowAt = max(conn.Now(), quietUntil)
				arm(overflowAt)
			}
		case <-timer.C:
			armed = 0
			events.Fired() // before the sweep walks the map
			now := conn.Now()
			opts := cfg.Sweep
			// A full walk on the first sweep, on the backstop, and when
			// the map was full; sweeps at a deadline walk only what is
			// tracked, or what may be stale.
			opts.WalkOnDemand = ready && now < walkDue
			opts.Walked, opts.WalkedIn = lastWalk, walkedIn
			if overflowAt != 0 && now >= overflowAt {
				logOverflow(cfg.Log, tr)
				opts.WalkOnDemand = false
				overflowAt, quietUntil = 0, now+uint64(OverflowEvery)
				if err := events.ArmOverflow(); err != nil {
					cfg.Log.Warn().Err(err).Msg("Could not ask the tracker for the next overflow")
				}
			}
			if !opts.WalkOnDemand && ready && cfg.Scope != nil {
				refreshScope(&cfg, tr, walkedIn)
				opts.NetNS = cfg.Sweep.NetNS
			}
			rep, err := sweep.Run(tr, act, opts, now)
			if err != nil {
				cfg.Log.Error().Err(err).Msg("Sweep failed")
				arm(conn.Now() + uint64(sweep.RetryAfter))
				continue
			}
			switch {
			case rep.Walked == 0:
			case rep.ReconcileErr != nil && rep.WalkedNS == nil:
				// Not again at once: a namespace that cannot be walked
				// now (its error is logged) likely cannot in a moment.
				walkDue = conn.Now() + uint64(sweep.RetryAfter)
			case rep.ReconcileErr != nil:
			case rep.WalkedNS == nil:
				lastWalk, walkDue, walkedIn = rep.Walked, rep.Walked+backstop, nil
			default:
				if walkedIn == nil {
					walkedIn = map[uint32]uint64{}
				}
				for _, ns := range rep.WalkedNS {
					walkedIn[ns] = rep.Walked
				}
			}
			sweepLog.sweep(&rep)
			if cfg.Swept != nil {
				cfg.Swept(&rep)
			}
			next := walkDue
			if rep.Next != 0 {
				next = min(next, rep.Next)
			}
			if overflowAt != 0 {
				next = min(next, overflowAt)
			}
			arm(next)
			if !ready {
				ready = true
				if cfg.Ready != nil {
					cfg.Ready()
				}
			}
			if cfg.Heartbeat != nil {
				cfg.Heartbeat()
			}
		}
	}
}

// reload makes opts the service's sweep options, keeping its scope, and
// tells the tracker of the wakes they need.
func reload(cfg *Config, events *tracking.Events, all bool, opts sweep.Options) error {
	opts.NetNS = cfg.Sweep.NetNS
	if err := events.SetWakes(Wakes(opts, all)); err != nil {
		return err
	}
	cfg.Sweep = opts
	return nil
}

// keepEarliest keeps in pending the deadline due if it is earlier than the
// one kept; it reports whether it was.
func keepEarliest(pending *atomic.Uint64, due uint64) bool {
	for {
		old := pending.Load()
		if old != 0 && old <= due {
			return false
		}
		if pending.CompareAndSwap(old, due) {
			return true
		}
	}
}

// refreshScope refreshes the service's scope (cfg.Scope): the tracker
// watches the namespaces that joined it; those that left it are closed
// (cfg.Closed) and forgotten; cfg.Sweep.NetNS becomes the new scope.
func refreshScope(cfg *Config, tr *tracking.Tracker, walkedIn map[uint32]uint64) {
	added, removed := cfg.Scope.Refresh()
	names := cfg.Scope.Names()
	for _, ns := range added {
		if err := tr.Watch(ns); err != nil {
			cfg.Log.Warn().Err(err).Uint32("netns", ns).Msgf("Could not watch network namespace %d", ns)
			continue
		}
		cfg.Log.Info().Uint32("netns", ns).Str("netns_name", names[ns]).
			Msgf("Network namespace %s joined the scope", report.NetNS(ns, names[ns]))
	}
	for _, ns := range removed {
		if cfg.Closed != nil {
			cfg.Closed(ns)
		}
		delete(walkedIn, ns)
		cfg.Log.Info().Uint32("netns", ns).Msgf("Network namespace %d left the scope: nothing holds it any more", ns)
	}
	cfg.Sweep.NetNS = names
}

// Wakes tells the tracker which sockets the service must hear of: those of
// its scope (every watched namespace when all), from the earliest moment a
// sweep may have to look at one after it entered its state (sweep.Wake of
// a socket that entered at 0).
//
// With rules, a state's time is the smallest threshold any rule (or the
// policy) gives it: the kernel cannot tell which rule a socket falls
// under, so a rule's short threshold wakes the service on time.
func Wakes(opts sweep.Options, all bool) tracking.Wakes {
	w := tracking.Wakes{After: map[conn.State]time.Duration{}}
	if !all && opts.NetNS != nil {
		w.NetNS = slices.Sorted(maps.Keys(opts.NetNS))
	}
	loosest := &policy.Policy{Thresholds: opts.Policy.MinThresholds()}
	for _, s := range conn.ClosingStates {
		c := conn.Conn{State: s}
		if at := sweep.Wake(loosest, &c); at != 0 {
			w.After[s] = time.Duration(min(at, math.MaxInt64))
		}
	}
	return w
}

// logOverflow says that the map was full: sockets went untracked, and will
// not be destroyed until there is room and a walk finds them.
func logOverflow(log zerolog.Logger, tr *tracking.Tracker) {
	c, err := tr.Counters()
	if err != nil {
		log.Warn().Err(err).Msg("The tracker's map is full; could not read its counters")
		return
	}
	log.Warn().Uint64("overflow", c.Overflow).Uint32("map_size", tr.MapSize()).
		Msgf("The tracker's map is full (--map-size %d): it refused a socket %d times so far; a socket it refused "+
			"is not destroyed until there is room and a walk finds it. Walking the namespace to drop entries of dead sockets",
			tr.MapSize(), c.Overflow)
}

// logSweep logs every hung socket the sweep acted on as a scan does
// (report.Items: detected, reason, fate), and the sweep at debug level;
// the walk, if the sweep made one, as report.Reconciled says.
func logSweep(log zerolog.Logger, rep *sweep.Report, routine bool) {
	if rep.ReconcileErr != nil || rep.Reconciled != (sweep.WalkStats{}) {
		report.Reconciled(log, rep, routine)
	}
	if rep.OwnerErr != nil {
		log.Error().Err(rep.OwnerErr).Msg("Could not read socket owners: no hung connection destroyed")
	}
	report.Items(log, rep)
	log.Debug().Int("scanned", rep.Scanned).Int("hung", rep.Hung).Int("destroyed", rep.Destroyed).
		Int("gone", rep.Gone).Int("failed", rep.Failed).Int("held", rep.Held).Float64("took_s", rep.Took.Seconds()).
		Msgf("Sweep: %d scanned, %d hung, %d destroyed, %d failed in %s", rep.Scanned, rep.Hung, rep.Destroyed, rep.Failed, rep.Took)
}
