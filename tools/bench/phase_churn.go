package main

import (
	"context"
	"fmt"
	"time"
)

// churnPhase times p.churnN graceful connections (connect, accept, close
// both) without any tracker of the bench and with one attached and
// watching the namespace, alternating, p.churnReps times each (medians),
// then as many traced runs with BPF statistics on for the kernel cost per
// transition (statistics slow every program down a little, so they are
// off for the throughput runs).
func (b *bench) churnPhase(ctx context.Context, p plan) error {
	// Capped TIME_WAIT: ports never run out; the kernel drops the excess
	// timewait sockets.
	if err := setNetSysctl("ipv4/tcp_max_tw_buckets", "2000"); err != nil {
		return err
	}
	pin := b.pin("churn")
	port := b.nextPort()
	others := attachedTrackers()
	b.progress("churn: %d × %s connections without and with the tracker", p.churnReps, fmtCount(p.churnN))
	if _, err := churn(p.churnN/10, port); err != nil { // warm-up
		return err
	}
	var off, on []time.Duration
	for r := range p.churnReps {
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, traced := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if traced {
				if err := b.attach(ctx, pin); err != nil {
					return err
				}
			}
			d, err := churn(p.churnN, port)
			if traced {
				if uerr := b.unload(pin); uerr != nil && err == nil {
					err = uerr
				}
			}
			if err != nil {
				return err
			}
			if traced {
				on = append(on, d)
			} else {
				off = append(off, d)
			}
		}
	}

	var costs []time.Duration
	var runs uint64
	for range p.costReps {
		c, err := b.churnCost(ctx, pin, p.churnN, port)
		if err != nil {
			return err
		}
		costs, runs = append(costs, c.perRun()), runs+c.Count
	}

	rate := func(d time.Duration) float64 { return float64(p.churnN) / d.Seconds() }
	rOn, rOff := rate(median(on)), rate(median(off))
	t := b.single()
	t.add(row{What: fmt.Sprintf("churn %s connections: tracker attached vs none", fmtCount(p.churnN)),
		Hck: fmtRate(rOn), Cmp: fmtRate(rOff), Ratio: fmt.Sprintf("%.1f%%", 100*rOn/rOff),
		Target: "≥ 97%", Result: verdict(rOn >= 0.97*rOff)})
	per := median(costs)
	t.add(row{What: fmt.Sprintf("tracker cost per transition, churn (%s runs)", fmtCount(int(runs))),
		Hck: fmt.Sprintf("%d ns", per.Nanoseconds()), Target: "≤ 250 ns", Result: verdict(runs > 0 && per <= 250*time.Nanosecond)})
	lo1, hi1 := minmax(on)
	lo0, hi0 := minmax(off)
	t.note("churn: medians of %d runs each, alternating; traced %s–%s, untraced %s–%s; tcp_max_tw_buckets 2000 in the namespace",
		len(on), fmtDur(lo1), fmtDur(hi1), fmtDur(lo0), fmtDur(hi0))
	lo2, hi2 := minmax(costs)
	t.note("tracker cost under churn: median of %d runs of %s connections (%d–%d ns)", len(costs), fmtCount(p.churnN), lo2.Nanoseconds(), hi2.Nanoseconds())
	t.note("tracker cost: run_time_ns / run_cnt of the tracker program with the kernel's BPF statistics on (BPF_ENABLE_STATS, the kernel.bpf_stats_enabled switch), " +
		"every run counted, the transitions it leaves after two compares too; the program sees every namespace's transitions")
	if others > 0 {
		t.note("churn: %d hck_set_state program(s) of other hck-bpf users were loaded on the host during the runs: \"none\" means none of the bench's", others)
	}
	return nil
}

// churnCost attaches a tracker, churns n connections with the kernel's BPF
// statistics on, and returns what the tracker's program cost meanwhile.
func (b *bench) churnCost(ctx context.Context, pin string, n, port int) (progStats, error) {
	if err := b.attach(ctx, pin); err != nil {
		return progStats{}, err
	}
	defer b.unload(pin)
	st, err := enableStats()
	if err != nil {
		return progStats{}, err
	}
	defer st.Close()
	before, err := trackerStats(pin)
	if err != nil {
		return progStats{}, err
	}
	if _, err := churn(n, port); err != nil {
		return progStats{}, err
	}
	after, err := trackerStats(pin)
	if err != nil {
		return progStats{}, err
	}
	return after.sub(before), nil
}
