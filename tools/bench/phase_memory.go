package main

import (
	"context"
	"fmt"
	"time"
)

// memoryPhase starts a dry-run service, builds p.memTracked/2 CLOSE_WAIT
// pairs (CLOSE_WAIT + FIN_WAIT2: p.memTracked tracked sockets), makes the
// service sweep over them, and reads its resident memory and the socket
// map's memory charge.
func (b *bench) memoryPhase(ctx context.Context, p plan) error {
	pin := b.pin("memory")
	b.progress("memory: hck-bpf run --dry-run, %s tracked sockets", fmtCount(p.memTracked))
	svc, err := b.startService(ctx, "memory-dry-run", pin, append([]string{"--dry-run"}, thresholdArgs("3600", "0.2")...)...)
	if err != nil {
		return err
	}
	defer b.unload(pin)
	defer svc.stop()
	if _, err := b.serviceSweep(ctx, svc); err != nil { // loads the owners iterator
		return err
	}
	empty, capacity, err := mapMemory(pin)
	if err != nil {
		return err
	}
	_, idlePeak, _ := svc.rss()
	hs, _, err := b.buildSet(ctx, planCloseWait(p.memTracked/2))
	if err != nil {
		return err
	}
	defer hs.stop()
	time.Sleep(500 * time.Millisecond)
	var took []time.Duration
	tracked := 0
	for range 3 {
		l, err := b.serviceSweep(ctx, svc)
		if err != nil {
			return err
		}
		took, tracked = append(took, l.Took), l.Scanned
	}
	now, peak, err := svc.rss()
	if err != nil {
		return err
	}
	full, _, err := mapMemory(pin)
	if err != nil {
		return err
	}
	t := b.single()
	t.add(row{What: fmt.Sprintf("service memory at %s tracked: VmHWM peak (VmRSS)", fmtCount(tracked)),
		Hck: fmt.Sprintf("%s (%s)", fmtBytes(peak), fmtBytes(now)), Cmp: "idle: " + fmtBytes(idlePeak),
		Target: "≤ 40 MiB", Result: verdict(peak <= 40<<20 && tracked > 0)})
	perEntry := 0.0
	if tracked > 0 {
		perEntry = float64(full-empty) / float64(tracked)
	}
	t.info(fmt.Sprintf("socket map memory at %s tracked (memlock)", fmtCount(tracked)),
		fmtBytes(full), "empty: "+fmtBytes(empty), fmt.Sprintf("%.0f B/entry", perEntry))
	t.info(fmt.Sprintf("sweep: service's own at %s tracked (took)", fmtCount(tracked)),
		fmtDur(median(took)), "", "")
	t.note("memory: `hck-bpf run --dry-run` over %s CLOSE_WAIT pairs (CLOSE_WAIT + FIN_WAIT2); map capacity %s (--map-size default); sweep: median of %d",
		fmtCount(p.memTracked/2), fmtCount(int(capacity)), len(took))
	if pr := svc.problemsSnapshot(); len(pr) > 0 {
		t.note("memory: the service warned: %v", pr)
	}
	return nil
}
