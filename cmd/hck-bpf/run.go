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
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/daemon"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func newRun(g *globals) *cobra.Command {
	f := &sweepFlags{}
	wh := &webhookFlags{}
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
			if err := wh.parse(); err != nil {
				return err
			}
			return runService(g, f, wh)
		},
	}
	f.register(cmd.Flags())
	wh.register(cmd.Flags())
	return cmd
}

func runService(g *globals, f *sweepFlags, wh *webhookFlags) (err error) {
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
	// The notifier takes each sweep's report without waiting: a slow or
	// dead webhook delays no kill.
	notifier, stopNotifier := startNotifier(wh, log, f.dryRun)
	var notifySwept func(*sweep.Report)
	if notifier != nil {
		notifySwept = notifier.Swept
	}
	err = daemon.Run(ctx, tr, act, daemon.Config{
		Sweep: sweep.Options{Policy: pol, MaxKills: f.maxKills,
			Kernel: kernelRules(log), Processes: f.processes(func(p sweep.Processes) sweep.Processes {
				return daemon.AuditedProcesses(p, f.killGrace, log, out.Flush)
			})},
		Log:    log,
		Ready:  func() { sdNotify("READY=1") },
		Swept:  swept(heapProfiler(os.Getenv(heapProfileEnv)), notifySwept),
		Scope:  scope,
		Closed: pool.Close,
	})
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
