package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/daemon"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/logging"
	"github.com/hck-bpf/hck-bpf/internal/metrics"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/systemd"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func newRun(g *globals) *cobra.Command {
	f := &sweepFlags{}
	wh := &webhookFlags{}
	var metricsAddr string
	cmd := &cobra.Command{
		Use:   "run [--dry-run|--live] [flags]",
		Short: "The service: track and sweep continuously (dry run unless --live)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.loadConfig(g, cmd.Flags()); err != nil {
				return err
			}
			if f.dryRun && f.live {
				return usagef("choose one mode: -n/--dry-run or -l/--live")
			}
			f.dryRun = !f.live
			f.mapSizeSet = f.mapSizeSet || cmd.Flags().Changed("map-size")
			f.killGraceSet = cmd.Flags().Changed("kill-grace")
			if f.cfg != nil && !cmd.Flags().Changed("webhook") {
				wh.raw = f.cfg.Settings.Webhooks // checked by configChecks
			}
			if err := wh.parse(); err != nil {
				return err
			}
			if f.cfg != nil && !cmd.Flags().Changed("metrics-addr") {
				metricsAddr = f.cfg.Settings.MetricsAddr // checked by configChecks
			}
			addr := ""
			if metricsAddr != "" {
				var err error
				if addr, err = metrics.ParseAddr(metricsAddr); err != nil {
					return usagef("--metrics-addr: %v", err)
				}
			}
			return runService(g, f, wh, addr)
		},
	}
	f.register(cmd.Flags())
	wh.register(cmd.Flags())
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz on HOST:PORT (127.0.0.1:9477; port 0: any free one); off when empty")
	return cmd
}

func runService(g *globals, f *sweepFlags, wh *webhookFlags, metricsAddr string) (err error) {
	p, err := g.prepare(f)
	if err != nil {
		return err
	}
	pol, log, out, scope := p.pol, p.log, p.out, p.scope
	defer scope.Close()
	defer g.closeLog(out, &err)
	if err := canEnter(scope); err != nil {
		return err
	}
	if f.live {
		// Started without it, every destroy of every sweep would fail.
		if err := kernel.CanDestroy(); err != nil {
			return fmt.Errorf("refuse to run --live: %w", err)
		}
	}
	softMemoryLimit()
	sd, sdErr := systemd.FromEnv()
	if sdErr != nil {
		log.Warn().Err(sdErr).Msg("Could not read systemd's environment")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// STOPPING=1 as soon as the signal arrives, before the loop winds
	// down; at the latest when the loop has returned.
	stopping := sync.OnceFunc(func() { sdNotified(log, sd.Stopping()) })
	context.AfterFunc(ctx, stopping)
	kernelCaps := kernelRules(log)
	opts := func(f *sweepFlags, pol *policy.Policy) sweep.Options {
		return sweep.Options{Policy: pol, MaxKills: f.maxKills,
			Kernel: kernelCaps, Processes: f.processes(func(p sweep.Processes) sweep.Processes {
				return daemon.AuditedProcesses(p, f.killGrace, log, out.Flush)
			})}
	}
	reloads := make(chan daemon.Reload)
	rl := &reloader{f: f, base: f.base, log: log, cur: f.settings(g, pol), opts: opts, out: reloads}
	defer handleSignals(ctx, log, out, sd, rl.reload)()

	// The port first: one in use fails the start before anything is loaded.
	var metricsLn net.Listener
	if metricsAddr != "" {
		if metricsLn, err = metrics.Listen(metricsAddr); err != nil {
			return err
		}
		defer metricsLn.Close()
	}

	tr, err := g.openTracker(f.openSize(), true, scope)
	var busy *tracking.BusyError
	if errors.As(err, &busy) {
		return fmt.Errorf("refuse to run: %w, another service: one 'hck-bpf run' per pin dir", err)
	}
	if err != nil {
		return err
	}
	defer tr.Close()
	// A dry run needs the destroyers too: they ask the kernel whether
	// each hung socket is still in its state, and destroy nothing. One per
	// namespace, opened in it on first need, closed when it is gone.
	pool, err := destroy.NewPool(scope.Dup)
	if err != nil {
		return err
	}
	defer pool.CloseAll()
	// Ready only once netlink answers here: a service that cannot ask
	// the kernel about a socket would destroy nothing.
	if err := pool.Ping(); err != nil {
		return fmt.Errorf("refuse to run: %w", err)
	}
	act := sweep.DryRun(pool)
	if f.live {
		act = sweep.Live(daemon.Audited(pool, log, out.Flush, several(scope)))
	}
	ev := log.Info().Str("mode", report.Mode(f.dryRun)).Str("pin_dir", g.pinDir).Bool("attached", tr.Attached).
		Bool("all_netns", scope.All()).Int("namespaces", scope.Len())
	if ns := scope.Inodes(); len(ns) == 1 {
		ev = ev.Uint32("netns", ns[0])
	}
	if f.cfg != nil {
		ev = ev.Str("config", f.cfg.Path).Int("rules", len(pol.Rules))
	}
	ev.Msgf("hck-bpf service started - %s (pins in %s; %s)", report.Mode(f.dryRun), g.pinDir, scopeText(scope))
	// The notifier takes each sweep's report without waiting: a slow or
	// dead webhook delays no kill.
	notifier, stopNotifier := startNotifier(wh, log, f.dryRun)
	swept := []func(*sweep.Report){heapProfiler(os.Getenv(heapProfileEnv)), sdStatus(sd), daemon.PublishKills(tr, log)}
	beats := []func(){func() { sdNotified(log, sd.Ping()) }}
	if notifier != nil {
		swept = append(swept, notifier.Swept)
	}
	if metricsLn != nil {
		m := metrics.New(tr, version)
		if notifier != nil {
			m.Register(notifier)
		}
		health := metrics.NewHealth(healthLimit(f))
		srv := metrics.Serve(metricsLn, m.Handler(health))
		defer func() {
			if err := srv.Close(); err != nil {
				log.Warn().Err(err).Msg("Metrics server stopped")
			}
		}()
		swept, beats = append(swept, m.Swept), append(beats, health.Beat)
		log.Info().Str("metrics_addr", metricsLn.Addr().String()).
			Msgf("Metrics on http://%s/metrics, health on /healthz", metricsLn.Addr())
	}
	err = daemon.Run(ctx, tr, act, daemon.Config{
		Sweep:  opts(f, pol),
		Reload: reloads,
		Log:    log,
		// After the tracker attached, the pool's netlink answered and
		// the first sweep ran.
		Ready:          func() { sdNotified(log, sd.Ready("tracking; first sweep done")) },
		Swept:          sweptHooks(swept...),
		Scope:          scope,
		Closed:         pool.Close,
		Heartbeat:      beatHooks(beats...),
		HeartbeatEvery: beatEvery(sd.PingEvery()),
	})
	stopping()
	stopNotifier()
	logCounters(log, tr)
	logStopped(log, out)
	return err
}

// serviceMemoryLimit is the service's soft limit on the Go runtime's memory
// (heap, stacks, runtime metadata; not the binary): near it the garbage
// collector runs sooner rather than letting garbage from the last sweep
// double the heap. Soft: an allocation never fails for it, and the runtime
// caps the collector's share of CPU. Measured with 100,000 tracked sockets:
// peak resident memory 32-34 MiB without, 26-28 MiB with.
const serviceMemoryLimit = 24 << 20

// softMemoryLimit sets serviceMemoryLimit unless GOMEMLIMIT says otherwise.
func softMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serviceMemoryLimit)
	}
}

// heapProfileEnv names a directory: when set, the service writes a Go heap
// profile there after every sweep (heap-1.pb.gz, heap-2.pb.gz, ...), for
// `go tool pprof`. A debugging aid, documented in the README; unset, it
// costs nothing.
const heapProfileEnv = "HCK_BPF_HEAP_PROFILE"

// heapProfiler returns the daemon's Swept hook writing heap profiles to dir,
// nil when dir is empty.
func heapProfiler(dir string) func(*sweep.Report) {
	if dir == "" {
		return nil
	}
	n := 0
	return func(*sweep.Report) {
		n++
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d.pb.gz", n)))
		if err != nil {
			return
		}
		defer f.Close()
		_ = pprof.Lookup("heap").WriteTo(f, 0)
	}
}

// heartbeatEvery is how often the service loop says it is alive while it
// waits (daemon.Config.HeartbeatEvery), unless systemd's watchdog asks for
// more: /healthz fails after three missed.
const heartbeatEvery = 10 * time.Second

// beatEvery is heartbeatEvery, or the watchdog's ping interval when that
// is shorter (0: no watchdog).
func beatEvery(watchdog time.Duration) time.Duration {
	if watchdog > 0 && watchdog < heartbeatEvery {
		return watchdog
	}
	return heartbeatEvery
}

// healthLimit is how long /healthz waits for the loop's heartbeat before
// it answers 503: three missed beats, at least a minute, and with
// --kill-process the grace period a sweep may wait for processes to exit.
func healthLimit(f *sweepFlags) time.Duration {
	d := max(3*heartbeatEvery, time.Minute)
	if f.killProcess {
		d += f.killGrace + 2*time.Second
	}
	return d
}

// beatHooks is one daemon.Config.Heartbeat calling each hook given.
func beatHooks(hooks ...func()) func() {
	return func() {
		for _, h := range hooks {
			h()
		}
	}
}

// sdNotified logs a failed notification to systemd; the service goes on.
func sdNotified(log zerolog.Logger, err error) {
	if err != nil {
		log.Warn().Err(err).Msg("Could not notify systemd")
	}
}

// sweptHooks is one daemon.Config.Swept calling each non-nil hook.
func sweptHooks(hooks ...func(*sweep.Report)) func(*sweep.Report) {
	hooks = slices.DeleteFunc(hooks, func(h func(*sweep.Report)) bool { return h == nil })
	if len(hooks) == 0 {
		return nil
	}
	return func(r *sweep.Report) {
		for _, h := range hooks {
			h(r)
		}
	}
}

// sdStatus keeps systemctl status's line current: destroyed so far, and
// the last sweep. Nil without systemd.
func sdStatus(sd *systemd.Notifier) func(*sweep.Report) {
	if !sd.Enabled() {
		return nil
	}
	var destroyed, failed int
	return func(r *sweep.Report) {
		destroyed += r.Destroyed
		failed += r.Failed
		_ = sd.Status(fmt.Sprintf("%d destroyed, %d failed since start; last sweep: %d scanned, %d hung",
			destroyed, failed, r.Scanned, r.Hung))
	}
}

// handleSignals handles, until the returned stop is called, SIGHUP
// (reload: RELOADING=1, reload, READY=1) and SIGUSR1 (reopen --log-file,
// for logrotate).
func handleSignals(ctx context.Context, log zerolog.Logger, out *logging.Output, sd *systemd.Notifier,
	reload func(context.Context)) (stop func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case s := <-sigs:
				switch s {
				case syscall.SIGUSR1:
					if err := out.Reopen(); err != nil {
						log.Error().Err(err).Msg("SIGUSR1: could not reopen the log file; still writing to the old one")
						continue
					}
					log.Info().Msg("SIGUSR1: log file reopened")
				case syscall.SIGHUP:
					sdNotified(log, sd.Reloading())
					reload(ctx)
					sdNotified(log, sd.Ready("reloaded"))
				}
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		<-finished
	}
}
