package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kill"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/top"
)

const topWindow = 30 * time.Second // how long `top` is measured

// topPhase measures top at a 1 s interval beside 60k sockets (p.sizes'
// largest) with a dry-run service keeping the tracker pinned, over
// topWindow after its first two refreshes: in this process (the library
// `hck-bpf top --json` runs: a Snapshot and its JSON document a second;
// CPU = this process's rusage over the window, nothing else of the bench
// runs meanwhile: a note), and `hck-bpf top --json --interval 1s` itself,
// its stdout a pipe the bench drains (CPU = utime+stime of
// /proc/PID/stat: the row with the < 2% target; the in-process row takes
// it only when the binary has no top command).
func (b *bench) topPhase(ctx context.Context, p plan) error {
	hs, counts, total, err := b.buildLargest(ctx, p, "top")
	if err != nil {
		return err
	}
	defer hs.stop()
	pin := b.pin("top")
	svc, err := b.startService(ctx, "top", pin, append([]string{"--dry-run"}, thresholdArgs("3600", "3600")...)...)
	if err != nil {
		return err
	}
	defer b.unload(pin)
	defer svc.stop()
	t := b.single()

	parts, err := dumpCosts()
	if err != nil {
		return err
	}
	t.note("top: CPU of one sock_diag dump of the namespace (medians of %d, thread CPU): %s", dumpReps, parts)

	b.progress("top: in-process Snapshot + JSON a second, measured for %s", topWindow)
	cpu, elapsed, took, err := b.topInProcess(ctx, pin)
	if err != nil {
		return err
	}
	pct := 100 * cpu.Seconds() / elapsed.Seconds()
	inProcess := row{What: fmt.Sprintf("top (in-process Snapshot + JSON) at a 1 s interval, %s sockets around: CPU over %s", fmtCount(total), topWindow),
		Hck: fmt.Sprintf("%.2f%% of a core", pct), Cmp: fmt.Sprintf("%s CPU in %s", fmtDur(cpu), elapsed.Round(100*time.Millisecond)),
		Target: "< 2%", Result: verdict(pct < 2)}
	slices.Sort(took)
	t.note("top: beside a dry-run service (thresholds 3600 s), sockets %s; each refresh counts the states by a sock_diag dump filtered by state to all but ESTABLISHED and TIME_WAIT (the kernel still walks its whole established table: the \"CLOSING only\" cost above), ESTABLISHED from Tcp CurrEstab (/proc/net/snmp), TIME_WAIT from sockstat's tw, reads TcpExt, hck_states, the tracked map and the ring of kills; peers (and that refresh's counts) come from a full dump every %s at most; wall time of a refresh: median %s, max %s over %d",
		stateSummary(counts), top.PeersEvery, fmtDur(took[len(took)/2]), fmtDur(took[len(took)-1]), len(took))

	if !b.hasTop() {
		t.add(inProcess)
		t.note("top: %s has no top command: the in-process row stands for it", b.bin)
		return nil
	}
	t.note("top: in-process (the library `hck-bpf top --json` runs, without its process: a Snapshot and its JSON document a second, CPU by this process's rusage): %s (%s)",
		inProcess.Hck, inProcess.Cmp)
	b.progress("top: hck-bpf top --json --interval 1s, measured for %s", topWindow)
	cmd := exec.Command(b.bin, "top", "--json", "--interval", "1s", "--pin-dir", pin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	// Its stdout a pipe the bench drains (a goroutine of exec copies
	// it to io.Discard), as `hck-bpf top --json | jq` runs it.
	cmd.Stdout, cmd.Stderr = io.Discard, prefixWriter("hck-bpf top: ")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start hck-bpf top: %w", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	select {
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	cpu0, err := procCPUTicks(pid)
	if err != nil {
		return fmt.Errorf("hck-bpf top exited: %w", err)
	}
	start := time.Now()
	select {
	case <-time.After(topWindow):
	case <-ctx.Done():
		return ctx.Err()
	}
	cpu1, err := procCPUTicks(pid)
	if err != nil {
		return fmt.Errorf("hck-bpf top exited: %w", err)
	}
	elapsed = time.Since(start)
	cpu = time.Duration(cpu1-cpu0) * time.Second / time.Duration(clockTicks)
	pct = 100 * cpu.Seconds() / elapsed.Seconds()
	t.add(row{What: fmt.Sprintf("hck-bpf top --json at a 1 s interval, %s sockets around: CPU over %s", fmtCount(total), topWindow),
		Hck: fmt.Sprintf("%.2f%% of a core", pct), Cmp: fmt.Sprintf("%s CPU in %s", fmtDur(cpu), elapsed.Round(100*time.Millisecond)),
		Target: "< 2%", Result: verdict(pct < 2)})
	t.note("top: the row checked is the binary as users run it: `hck-bpf top --json --interval 1s` (no threshold flag: its countdowns follow the service's command line), stdout a pipe the bench drains; its CPU = utime+stime of /proc/PID/stat, %d Hz ticks, over %s after its first two refreshes", clockTicks, topWindow)
	return nil
}

const dumpReps = 15

// dumpCosts measures sock_diag dumps of this namespace by the states
// asked: what a refresh of top is made of.
func dumpCosts() (string, error) {
	ns, err := netns.Current()
	if err != nil {
		return "", err
	}
	defer ns.Close()
	d, err := kill.OpenDumper(ns)
	if err != nil {
		return "", err
	}
	defer d.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var out []string
	for _, m := range []struct {
		what   string
		states uint32
	}{
		{"every state (peers)", 1<<(conn.NewSynRecv+1) - 1},
		{"all but ESTABLISHED and TIME_WAIT (counts)", (1<<(conn.NewSynRecv+1) - 1) &^ (1<<conn.Established | 1<<conn.TimeWait)},
		{"CLOSING only (the hash table's walk)", 1 << conn.Closing},
		{"LISTEN only (no walk of the established table)", 1 << conn.Listen},
	} {
		var took []time.Duration
		for range dumpReps {
			c0 := threadCPU()
			if err := d.Dump(m.states, func(*kill.Socket) {}); err != nil {
				return "", err
			}
			took = append(took, threadCPU()-c0)
		}
		slices.Sort(took)
		out = append(out, fmt.Sprintf("%s %s", m.what, fmtDur(took[len(took)/2])))
	}
	return strings.Join(out, "; "), nil
}

func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// hasTop tells whether the measured binary has the top command.
func (b *bench) hasTop() bool {
	return exec.Command(b.bin, "top", "--help").Run() == nil
}

// topInProcess takes a Snapshot and writes its JSON document a second in
// this process, and returns the process's CPU (rusage) over topWindow
// after two refreshes, and the wall time of each refresh. With
// HCK_BENCH_TOP_PROFILE set, it writes a CPU profile of the window there.
func (b *bench) topInProcess(ctx context.Context, pin string) (cpu, elapsed time.Duration, took []time.Duration, err error) {
	sc, err := scope.Own()
	if err != nil {
		return 0, 0, nil, err
	}
	defer sc.Close()
	src, err := top.Open(top.Options{PinDir: pin, Scope: sc})
	if err != nil {
		return 0, 0, nil, err
	}
	defer src.Close()
	refresh := func() error {
		t0 := time.Now()
		snap, err := src.Snapshot()
		if err != nil {
			return err
		}
		if err := top.WriteJSON(io.Discard, snap); err != nil {
			return err
		}
		took = append(took, time.Since(t0))
		return nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for range 2 {
		if err := refresh(); err != nil {
			return 0, 0, nil, err
		}
		<-tick.C
	}
	took = nil
	if path := os.Getenv("HCK_BENCH_TOP_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return 0, 0, nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, 0, nil, err
		}
		defer pprof.StopCPUProfile()
	}
	ru0, start := rusageCPU(), time.Now()
	for time.Since(start) < topWindow {
		if err := refresh(); err != nil {
			return 0, 0, nil, err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, 0, nil, ctx.Err()
		}
	}
	return rusageCPU() - ru0, time.Since(start), took, nil
}

// rusageCPU is this process's user+system CPU so far.
func rusageCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
