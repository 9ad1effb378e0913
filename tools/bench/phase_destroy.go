package main

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// destroyPhase destroys p.destroyN CLOSE_WAIT sockets with `hck-bpf scan
// --live` and, on an identical fresh set, with `ss -K state close-wait`,
// p.destroyReps times each, alternating. Both whole processes are timed;
// the tracker is attached for both (it sees every reset either way).
func (b *bench) destroyPhase(ctx context.Context, p plan) error {
	pin := b.pin("destroy")
	if err := b.attach(ctx, pin); err != nil {
		return err
	}
	defer b.unload(pin)
	scanArgs := append([]string{"scan", "--live", "--log-format", "json"}, thresholdArgs("3600", "3600")...)
	scanArgs = append(scanArgs, "--close-wait-timeout", "0.001")

	var hckT, hckTook, ssT []time.Duration
	var hckN, ssN, hckLeft, ssLeft, hckFailed int
	for r := range p.destroyReps {
		b.progress("destroy throughput, round %d: %s CLOSE_WAIT sockets, hck-bpf scan --live", r+1, fmtCount(p.destroyN))
		n, d, left, err := b.destroyOnce(ctx, p.destroyN, func() (time.Duration, error) {
			d, out, err := b.hck(ctx, pin, scanArgs...)
			b.keepLog(fmt.Sprintf("destroy-scan-%d", r+1), out)
			sum, serr := scanSummary(out)
			if serr != nil {
				if err == nil {
					err = serr
				}
				return d, err
			}
			// Exit 1 (some failed) is reported, not fatal.
			hckTook = append(hckTook, time.Duration(sum.TookS*float64(time.Second)))
			hckFailed += sum.Failed
			return d, nil
		})
		if err != nil {
			return err
		}
		hckT, hckN, hckLeft = append(hckT, d), n, hckLeft+left

		b.progress("destroy throughput, round %d: %s CLOSE_WAIT sockets, ss -K", r+1, fmtCount(p.destroyN))
		n, d, left, err = b.destroyOnce(ctx, p.destroyN, func() (time.Duration, error) {
			d, _, err := timed(ctx, "ss", "-K", "state", "close-wait")
			return d, err
		})
		if err != nil {
			return err
		}
		ssT, ssN, ssLeft = append(ssT, d), n, ssLeft+left
	}
	hck, ss, took := median(hckT), median(ssT), median(hckTook)
	hckRate := float64(hckN) / hck.Seconds()
	ssRate := float64(ssN) / ss.Seconds()
	t := b.single()
	t.add(row{What: fmt.Sprintf("destroy %s CLOSE_WAIT: scan --live vs ss -K (processes)", fmtCount(p.destroyN)),
		Hck: fmt.Sprintf("%s (%s)", fmtRate(hckRate), fmtDur(hck)), Cmp: fmt.Sprintf("%s (%s)", fmtRate(ssRate), fmtDur(ss)),
		Ratio: fmtRatio(hckRate / ssRate), Target: "≥ 1× (aim 2×)", Result: verdict(hckRate >= ssRate && hckLeft == 0 && hckFailed == 0)})
	t.info(fmt.Sprintf("destroy %s CLOSE_WAIT: scan's sweep alone (took)", fmtCount(p.destroyN)),
		fmt.Sprintf("%s (%s)", fmtRate(float64(hckN)/took.Seconds()), fmtDur(took)), "", "")
	t.note("destroy: `hck-bpf scan --live --close-wait-timeout 0.001` vs `ss -K state close-wait` on identical fresh sets, tracker attached for both; " +
		"took = reconcile, owners, decide, SOCK_DESTROY, without process start and logging")
	t.note("destroy: medians of %d rounds; sockets left in CLOSE_WAIT afterwards: hck-bpf %d, ss -K %d; hck-bpf failures: %d",
		len(hckT), hckLeft, ssLeft, hckFailed)
	return nil
}

// destroyOnce builds n CLOSE_WAIT sockets, runs kill, and counts what it
// destroyed. It returns the count found before, kill's time and the count
// left after.
func (b *bench) destroyOnce(ctx context.Context, n int, kill func() (time.Duration, error)) (int, time.Duration, int, error) {
	hs, _, err := b.buildSet(ctx, planCloseWait(n))
	if err != nil {
		return 0, 0, 0, err
	}
	defer hs.stop()
	before, err := countState(ctx, "close-wait")
	if err != nil {
		return 0, 0, 0, err
	}
	time.Sleep(10 * time.Millisecond) // older than the 1 ms threshold
	d, err := kill()
	if err != nil {
		return 0, 0, 0, err
	}
	after, err := countState(ctx, "close-wait")
	if err != nil {
		return 0, 0, 0, err
	}
	return before, d, after, nil
}

// countState counts the namespace's sockets in one state (ss names).
func countState(ctx context.Context, state string) (int, error) {
	_, out, err := timed(ctx, "ss", "-Htan", "state", state)
	if err != nil {
		return 0, err
	}
	return bytes.Count(out, []byte("\n")), nil
}
