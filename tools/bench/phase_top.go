package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

const topWindow = 30 * time.Second // how long `top` is measured

// topPhase measures `hck-bpf top --json --interval 1s` (one JSON document
// a second, as a script or an agent reads it) beside 60k sockets (p.sizes'
// largest) with a dry-run service keeping the tracker pinned: CPU of the
// top process, utime+stime from /proc/PID/stat, over topWindow after its
// first two refreshes.
func (b *bench) topPhase(ctx context.Context, p plan) error {
	n := p.sizes[len(p.sizes)-1]
	b.progress("top: building %s sockets", fmtCount(n))
	hs, _, err := b.buildSet(ctx, planMixed(n))
	if err != nil {
		return err
	}
	defer hs.stop()
	_, total, err := census(ctx)
	if err != nil {
		return err
	}
	pin := b.pin("top")
	svc, err := b.startService(ctx, "top", pin, append([]string{"--dry-run"}, thresholdArgs("3600", "3600")...)...)
	if err != nil {
		return err
	}
	defer b.unload(pin)
	defer svc.stop()
	cmd := exec.Command(b.bin, "top", "--json", "--interval", "1s", "--pin-dir", pin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
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
	elapsed := time.Since(start)
	cpu := time.Duration(cpu1-cpu0) * time.Second / time.Duration(clockTicks)
	pct := 100 * cpu.Seconds() / elapsed.Seconds()
	t := b.single()
	t.add(row{What: fmt.Sprintf("top --json at a 1 s interval, %s sockets around: CPU over %s", fmtCount(total), topWindow),
		Hck: fmt.Sprintf("%.2f%% of a core", pct), Cmp: fmt.Sprintf("%s CPU in %s", fmtDur(cpu), elapsed.Round(100*time.Millisecond)),
		Target: "< 2%", Result: verdict(pct < 2)})
	t.note("top: `hck-bpf top --json --interval 1s` beside a dry-run service (thresholds 3600 s); each refresh dumps every socket of the namespace (sock_diag: counts, peers, half-open), reads TcpExt, hck_states, the tracked map and the ring of kills; CPU = utime+stime of /proc/PID/stat, %d Hz ticks", clockTicks)
	return nil
}
