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
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/daemon"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/metrics"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func newRun(g *globals) *cobra.Command {
	f := &sweepFlags{}
	var metricsAddr string
	cmd := &cobra.Command{
		Use:   "run [--dry-run|--live] [flags]",
		Short: "The service: track and sweep continuously (dry run unless --live)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.dryRun && f.live {
				return usagef("choose one mode: -n/--dry-run or -l/--live")
			}
			f.dryRun = !f.live
			f.mapSizeSet = cmd.Flags().Changed("map-size")
			f.killGraceSet = cmd.Flags().Changed("kill-grace")
			addr := ""
			if metricsAddr != "" {
				var err error
				if addr, err = metrics.ParseAddr(metricsAddr); err != nil {
					return usagef("--metrics-addr: %v", err)
				}
			}
			return runService(g, f, addr)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz on HOST:PORT (127.0.0.1:9477; port 0: any free one); off when empty")
	return cmd
}

func runService(g *globals, f *sweepFlags, metricsAddr string) (err error) {
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

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
	act := sweep.DryRun(pool)
	if f.live {
		act = sweep.Live(daemon.Audited(pool, log, out.Flush, several(scope)))
	}
	ev := log.Info().Str("mode", report.Mode(f.dryRun)).Str("pin_dir", g.pinDir).Bool("attached", tr.Attached).
		Bool("all_netns", scope.All()).Int("namespaces", scope.Len())
	if ns := scope.Inodes(); len(ns) == 1 {
		ev = ev.Uint32("netns", ns[0])
	}
	ev.Msgf("hck-bpf service started - %s (pins in %s; %s)", report.Mode(f.dryRun), g.pinDir, scopeText(scope))
	var swept []func(*sweep.Report)
	var beats []func()
	if metricsLn != nil {
		m := metrics.New(tr, version)
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
		Sweep: sweep.Options{Policy: pol, MaxKills: f.maxKills,
			Kernel: kernelRules(log), Processes: f.processes(func(p sweep.Processes) sweep.Processes {
				return daemon.AuditedProcesses(p, f.killGrace, log, out.Flush)
			})},
		Log:    log,
		Ready:  func() { sdNotify("READY=1") },
		Swept:  sweptHooks(append(swept, heapProfiler(os.Getenv(heapProfileEnv)))...),
		Scope:  scope,
		Closed: pool.Close,

		Heartbeat:      beatHooks(beats...),
		HeartbeatEvery: heartbeatEvery,
	})
	logCounters(log, tr)
	logStopped(log, out)
	return err
}

// heartbeatEvery is how often the service loop says it is alive while it
// waits (daemon.Config.HeartbeatEvery): /healthz fails after three missed.
const heartbeatEvery = 10 * time.Second

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

// sweptHooks is one daemon.Config.Swept calling each hook given (nil ones
// skipped); nil when there is none.
func sweptHooks(hooks ...func(*sweep.Report)) func(*sweep.Report) {
	hooks = slices.DeleteFunc(hooks, func(h func(*sweep.Report)) bool { return h == nil })
	if len(hooks) == 0 {
		return nil
	}
	return func(rep *sweep.Report) {
		for _, h := range hooks {
			h(rep)
		}
	}
}

// beatHooks is one daemon.Config.Heartbeat calling each hook given; nil
// when there is none.
func beatHooks(hooks ...func()) func() {
	hooks = slices.DeleteFunc(hooks, func(h func()) bool { return h == nil })
	if len(hooks) == 0 {
		return nil
	}
	return func() {
		for _, h := range hooks {
			h()
		}
	}
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

// sdNotify tells systemd (Type=notify) how the service is doing.
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}
