package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// single is the table of the rows measured at one size.
func (b *bench) single() *table {
	for _, t := range b.tables {
		if t.Title == singleTitle {
			return t
		}
	}
	t := &table{Title: singleTitle}
	b.tables = append(b.tables, t)
	return t
}

const singleTitle = "Single-size rows"

// lagThreshold is the CLOSE_WAIT threshold of the kill-lag service.
const lagThreshold = time.Second

// lagPhase measures kill lag in a quiet namespace: only the sockets that
// are to die.
func (b *bench) lagPhase(ctx context.Context, p plan) error {
	pin := b.pin("lag")
	defer b.unload(pin)
	return b.killLag(ctx, p, pin, 0)
}

// killLag starts a live service on pin (with the sweep phase's pins and
// sockets when background > 0: each sweep then works in a full namespace),
// then a holder half-closes p.lagSockets connections over one second and
// watches each CLOSE_WAIT socket until it is destroyed. Lag is measured
// twice: by the holder (socket seen closed − (FIN sent + threshold)) and by
// the service (age − threshold when it decided).
func (b *bench) killLag(ctx context.Context, p plan, pin string, background int) error {
	where := "quiet namespace"
	if background > 0 {
		where = fmtCount(background) + " sockets around"
	}
	b.progress("kill lag: hck-bpf run --live --close-wait-timeout 1, %s", where)
	args := append([]string{"--live"}, thresholdArgs("3600", "3600")...)
	args = append(args, "--close-wait-timeout", strconv.FormatFloat(lagThreshold.Seconds(), 'f', -1, 64))
	svc, err := b.startService(ctx, fmt.Sprintf("lag-live-%d", background), pin, args...)
	if err != nil {
		return err
	}
	defer svc.stop()
	overdue := len(svc.killsSnapshot()) // the set's CLOSE_WAIT sockets, long overdue

	h, err := b.startHolder("-lag", strconv.Itoa(p.lagSockets), "-spread", "1s", "-port", strconv.Itoa(b.nextPort()))
	if err != nil {
		return err
	}
	defer h.stop()
	if _, err := h.ready(ctx, time.Minute); err != nil {
		return err
	}
	var recs []lagRec
	for {
		l, err := h.next(ctx, time.Minute)
		if err != nil {
			return fmt.Errorf("kill lag: %w", err)
		}
		var done struct{ Done bool }
		if json.Unmarshal(l, &done) == nil && done.Done {
			break
		}
		var r lagRec
		if err := json.Unmarshal(l, &r); err != nil {
			return fmt.Errorf("kill lag: bad line %q", l)
		}
		recs = append(recs, r)
	}
	time.Sleep(200 * time.Millisecond) // the service's last lines
	ours := map[uint64]bool{}
	var seen []time.Duration
	survived := 0
	for _, r := range recs {
		ours[r.Cookie] = true
		if r.DeadNs == 0 {
			survived++
			continue
		}
		seen = append(seen, time.Duration(r.DeadNs-r.ShutNs)-lagThreshold)
	}
	var decided []time.Duration
	for _, k := range svc.killsSnapshot() {
		if ours[k.Cookie] {
			decided = append(decided, time.Duration((k.AgeS-k.ThresholdS)*float64(time.Second)))
		}
	}

	t := b.single()
	pcts := func(ds []time.Duration) string {
		return fmt.Sprintf("%s / %s / %s", fmtDur(percentile(ds, 50)), fmtDur(percentile(ds, 99)), fmtDur(percentile(ds, 100)))
	}
	p99 := percentile(seen, 99)
	t.add(row{What: fmt.Sprintf("kill lag p50/p99/max, socket seen dead (%s)", where),
		Hck: pcts(seen), Target: "p99 ≤ 50 ms", Result: verdict(survived == 0 && len(seen) > 0 && p99 <= 50*time.Millisecond)})
	t.info(fmt.Sprintf("kill lag p50/p99/max, at the decision (%s)", where), pcts(decided), "", "")
	t.note("kill lag (%s): `hck-bpf run --live --close-wait-timeout 1`; %d CLOSE_WAIT sockets entered over 1 s; "+
		"\"seen dead\": the holder's epoll saw the socket closed, minus (just before the client's shutdown() + 1 s), an upper bound; "+
		"\"at the decision\": the service's age − threshold (%d of them logged)", where, len(recs), len(decided))
	if overdue == 0 && len(recs) > 0 && recs[0].DeadNs != 0 {
		t.note("kill lag (%s): the first socket's lag, whose sweep is the service's first with a hung socket (it loads the owners iterator then): %s",
			where, fmtDur(time.Duration(recs[0].DeadNs-recs[0].ShutNs)-lagThreshold))
	}
	if overdue > 0 {
		t.note("kill lag (%s): the service's first sweep destroyed the %d CLOSE_WAIT sockets of the set, long overdue", where, overdue)
	}
	if survived > 0 {
		t.note("kill lag (%s): %d sockets were not destroyed within 20 s", where, survived)
	}
	return nil
}
