// Package daemon is the service loop: keep the tracker attached, sleep until
// the next tracked socket reaches its threshold, sweep, repeat.
package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Backstop is the longest the service sleeps without a sweep: each sweep
// walks the namespace (reconcile), catching what no event reports, and
// recovers from a lost event (hck_events full). A safety net, not a poll.
const Backstop = time.Minute

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
}

// Run sweeps whenever the earliest tracked socket is due until ctx ends.
// The tracker stays pinned afterwards.
func Run(ctx context.Context, tr *tracking.Tracker, k sweep.Killer, cfg Config) error {
	events, err := tr.Events()
	if err != nil {
		return err
	}
	defer events.Close()

	// The reader keeps the earliest deadline it has seen and pokes the loop;
	// a burst of transitions costs one wake-up, not one per socket.
	var pending atomic.Uint64
	wake := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() {
		for {
			c, err := events.Read()
			if err != nil {
				readErr <- err
				return
			}
			if cfg.Sweep.NetNS != 0 && c.NetNS != cfg.Sweep.NetNS {
				continue
			}
			d, ok := cfg.Sweep.Policy.Thresholds.For(c.State)
			if !ok {
				continue
			}
			deadline := c.Entered + uint64(d)
			for {
				old := pending.Load()
				if old != 0 && old <= deadline {
					break
				}
				if pending.CompareAndSwap(old, deadline) {
					break
				}
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()

	timer := time.NewTimer(0)
	defer timer.Stop()
	var next uint64 // CLOCK_BOOTTIME of the armed timer; 0: none
	arm := func(at uint64) {
		now := conn.Now()
		if at == 0 {
			at = now + uint64(Backstop)
		}
		if next != 0 && at >= next {
			return
		}
		next = at
		wait := time.Duration(0)
		if at > now {
			wait = time.Duration(at - now)
		}
		timer.Reset(wait)
	}
	ready := false
	sweepLog := newSweepLog(cfg.Log, tr.Counters)
	var lastWalk uint64 // CLOCK_BOOTTIME of the last full walk
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if errors.Is(err, tracking.ErrEventsClosed) && ctx.Err() != nil {
				return nil
			}
			return err
		case <-wake:
			arm(pending.Swap(0))
		case <-timer.C:
			next = 0
			// A full walk of the namespace on the first sweep and on the
			// backstop; sweeps at a deadline walk only what is tracked.
			opts := cfg.Sweep
			now := conn.Now()
			opts.WalkOnDemand = ready && now < lastWalk+uint64(Backstop)
			if !opts.WalkOnDemand {
				lastWalk = now
			}
			rep, err := sweep.Run(tr, k, opts, now)
			if err != nil {
				cfg.Log.Error().Err(err).Msg("Sweep failed")
				arm(conn.Now() + uint64(sweep.RetryAfter))
				continue
			}
			sweepLog.sweep(&rep)
			if cfg.Swept != nil {
				cfg.Swept(&rep)
			}
			arm(rep.Next)
			if !ready && cfg.Ready != nil {
				ready = true
				cfg.Ready()
			}
		}
	}
}

// logSweep logs one line per socket acted on, and the sweep at debug
// level; the walk, if the sweep made one, as report.Reconciled says.
func logSweep(log zerolog.Logger, rep *sweep.Report, routine bool) {
	if rep.ReconcileErr != nil || rep.Reconciled != (tracking.ReconcileStats{}) {
		report.Reconciled(log, rep, routine)
	}
	if rep.OwnerErr != nil {
		log.Error().Err(rep.OwnerErr).Msg("Could not read socket owners: no hung connection destroyed")
	}
	for i := range rep.Items {
		if rep.Items[i].Outcome == sweep.Skipped {
			continue
		}
		report.Fate(log, &rep.Items[i])
	}
	log.Debug().Int("scanned", rep.Scanned).Int("hung", rep.Hung).Int("destroyed", rep.Destroyed).
		Int("gone", rep.Gone).Int("failed", rep.Failed).Int("held", rep.Held).Float64("took_s", rep.Took.Seconds()).
		Msgf("Sweep: %d scanned, %d hung, %d destroyed, %d failed in %s", rep.Scanned, rep.Hung, rep.Destroyed, rep.Failed, rep.Took)
}
