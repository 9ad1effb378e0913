package main

import (
	"context"
	"fmt"
	"time"
)

// churnMode is what runs beside the churn: nothing of the bench's, the
// tracker alone (attached by `list`, as a cron `scan` leaves it), or the
// service (`run --dry-run` listening in the bench's namespace: how
// hck-bpf is deployed).
type churnMode int

const (
	churnNone churnMode = iota
	churnTracker
	churnService
)

func (m churnMode) String() string {
	return [...]string{"none", "tracker alone", "service running"}[m]
}

// churnPhase times p.churnN graceful connections (connect, accept, close
// both) without any tracker of the bench, with the tracker alone, and with
// the service running, rotating the order, p.churnReps times each
// (medians); then as many runs of each traced mode with BPF statistics on
// for the kernel cost per transition (statistics slow every program down a
// little, so they are off for the throughput runs).
func (b *bench) churnPhase(ctx context.Context, p plan) error {
	// Capped TIME_WAIT: ports never run out; the kernel drops the excess
	// timewait sockets.
	if err := setNetSysctl("ipv4/tcp_max_tw_buckets", "2000"); err != nil {
		return err
	}
	pin := b.pin("churn")
	port := b.nextPort()
	others := attachedTrackers()
	b.progress("churn: %d × %s connections without the tracker, with it alone, with the service running", p.churnReps, fmtCount(p.churnN))
	if _, err := churn(p.churnN/10, port); err != nil { // warm-up
		return err
	}
	modes := []churnMode{churnNone, churnTracker, churnService}
	took := map[churnMode][]time.Duration{}
	var sent []uint64 // events the tracker sent the service, per service run
	for r := range p.churnReps {
		for i := range modes {
			mode := modes[(i+r)%len(modes)]
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d, events, err := b.churnWith(ctx, mode, pin, p.churnN, port, false)
			if err != nil {
				return err
			}
			took[mode] = append(took[mode], d.Runtime)
			if mode == churnService && events.ok {
				sent = append(sent, events.n)
			}
		}
	}

	costs := map[churnMode][]time.Duration{}
	runs := map[churnMode]uint64{}
	for r := range p.costReps {
		order := []churnMode{churnTracker, churnService}
		if r%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, mode := range order {
			st, _, err := b.churnWith(ctx, mode, pin, p.churnN, port, true)
			if err != nil {
				return err
			}
			costs[mode] = append(costs[mode], st.perRun())
			runs[mode] += st.Count
		}
	}

	rate := func(d time.Duration) float64 { return float64(p.churnN) / d.Seconds() }
	rOff := rate(median(took[churnNone]))
	t := b.single()
	for _, mode := range []churnMode{churnTracker, churnService} {
		r := rate(median(took[mode]))
		t.add(row{What: fmt.Sprintf("churn %s connections: %s vs none", fmtCount(p.churnN), mode),
			Hck: fmtRate(r), Cmp: fmtRate(rOff), Ratio: fmt.Sprintf("%.1f%%", 100*r/rOff),
			Target: "≥ 97%", Result: verdict(r >= 0.97*rOff)})
	}
	for _, mode := range []churnMode{churnTracker, churnService} {
		per := median(costs[mode])
		t.add(row{What: fmt.Sprintf("tracker cost per transition, churn, %s (%s runs)", mode, fmtCount(int(runs[mode]))),
			Hck: fmt.Sprintf("%d ns", per.Nanoseconds()), Target: "≤ 250 ns", Result: verdict(runs[mode] > 0 && per <= 250*time.Nanosecond)})
	}
	spread := func(mode churnMode) string {
		lo, hi := minmax(took[mode])
		return fmtDur(lo) + "–" + fmtDur(hi)
	}
	t.note("churn: medians of %d runs each, the order rotated; none %s, tracker alone %s, service running %s; tcp_max_tw_buckets 2000 in the namespace",
		len(took[churnNone]), spread(churnNone), spread(churnTracker), spread(churnService))
	t.note("churn: \"tracker alone\" is attached by `hck-bpf list` with no service; \"service running\" is `hck-bpf run --dry-run` " +
		"(default thresholds) listening in the bench's namespace, the deployed mode, started before and stopped after each run")
	if len(sent) > 0 {
		t.note("churn, service running: the tracker sent the service %s ring-buffer events per run of %s connections (median)",
			fmtCount(int(medianU64(sent))), fmtCount(p.churnN))
	}
	for _, mode := range []churnMode{churnTracker, churnService} {
		lo, hi := minmax(costs[mode])
		t.note("tracker cost under churn, %s: median of %d runs of %s connections (%d–%d ns)",
			mode, len(costs[mode]), fmtCount(p.churnN), lo.Nanoseconds(), hi.Nanoseconds())
	}
	t.note("tracker cost: run_time_ns / run_cnt of the tracker program with the kernel's BPF statistics on (BPF_ENABLE_STATS, the kernel.bpf_stats_enabled switch), " +
		"every run counted, the transitions it leaves after two compares too; the program sees every namespace's transitions")
	if others > 0 {
		t.note("churn: %d hck_set_state program(s) of other hck-bpf users were loaded on the host during the runs: \"none\" means none of the bench's", others)
	}
	return nil
}

// sentEvents is how many ring-buffer events the tracker sent during a run;
// ok is false when the binary measured does not count them.
type sentEvents struct {
	n  uint64
	ok bool
}

// churnWith sets mode up on pin, churns n connections, and tears it down.
// It returns the wall time of the churn (Runtime; Count 0), or with stats
// the tracker program's run time and count meanwhile, and the events the
// tracker sent.
func (b *bench) churnWith(ctx context.Context, mode churnMode, pin string, n, port int, stats bool) (progStats, sentEvents, error) {
	var ev sentEvents
	if mode == churnNone {
		d, err := churn(n, port)
		return progStats{Runtime: d}, ev, err
	}
	defer b.unload(pin) // runs last: after the service stopped
	switch mode {
	case churnTracker:
		if err := b.attach(ctx, pin); err != nil {
			return progStats{}, ev, err
		}
	case churnService:
		svc, err := b.startService(ctx, "churn-service", pin, "--dry-run")
		if err != nil {
			return progStats{}, ev, err
		}
		defer svc.stop()
	}
	var before progStats
	if stats {
		st, err := enableStats()
		if err != nil {
			return progStats{}, ev, err
		}
		defer st.Close()
		if before, err = trackerStats(pin); err != nil {
			return progStats{}, ev, err
		}
	}
	sent0, ok := eventsSent(pin)
	d, err := churn(n, port)
	if err != nil {
		return progStats{}, ev, err
	}
	if sent1, ok1 := eventsSent(pin); ok && ok1 {
		ev = sentEvents{n: sent1 - sent0, ok: true}
	}
	if !stats {
		return progStats{Runtime: d}, ev, nil
	}
	after, err := trackerStats(pin)
	if err != nil {
		return progStats{}, ev, err
	}
	return after.sub(before), ev, nil
}

func medianU64(xs []uint64) uint64 {
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = time.Duration(x)
	}
	return uint64(median(ds))
}
