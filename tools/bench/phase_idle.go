package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// idleExtraArgs are added to the idle service's command line: the
// service as deployed, with everything that may cost while it waits: a
// webhook (a dry run destroys nothing, so it is never called; its
// notifier, queue and HTTP client are there all the same).
var idleExtraArgs = []string{"--webhook", "slack=http://127.0.0.1:9/hck-bench"}

const (
	idleWindow      = time.Minute      // how long the idle service is measured
	idleScrapeEvery = 15 * time.Second // Prometheus's usual scrape interval
)

// idlePhase measures the service doing nothing, as on most hosts most of
// the time: 60k sockets around (p.sizes' largest, mostly ESTABLISHED, a
// few in closing states, none due: thresholds of an hour), metrics on and
// scraped every 15 s, over one minute. CPU is utime+stime from
// /proc/PID/stat (every thread, exited ones too), in clock ticks; memory
// the peak resident set (VmHWM).
func (b *bench) idlePhase(ctx context.Context, p plan) error {
	return b.idleRun(ctx, p, idleExtraArgs)
}

func (b *bench) idleRun(ctx context.Context, p plan, extra []string) error {
	hs, counts, total, err := b.buildLargest(ctx, p, "idle")
	if err != nil {
		return err
	}
	defer hs.stop()
	pin := b.pin("idle")
	port := b.nextPort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{"--dry-run", "--metrics-addr", addr}, thresholdArgs("3600", "3600")...)
	args = append(args, extra...)
	b.progress("idle: hck-bpf run %s, measured for %s", strings.Join(args, " "), idleWindow)
	svc, err := b.startService(ctx, "idle", pin, args...)
	if err != nil {
		return err
	}
	defer b.unload(pin)
	defer svc.stop()
	pid := svc.cmd.Process.Pid
	url := "http://" + addr + "/metrics"
	if _, _, err := scrapeOnce(url); err != nil { // the first scrape builds the registry's caches
		return err
	}
	time.Sleep(time.Second) // past the start's work: the first sweep, its log

	svc.drain()
	start := time.Now()
	cpu0, err := procCPUTicks(pid)
	if err != nil {
		return err
	}
	sweeps0 := -1.0
	var took []time.Duration
	var size int
	// Ticks at each scrape's start, and spent during scrapes: where the
	// minute's CPU went.
	marks := []uint64{cpu0}
	var scrapeTicks uint64
	for i := 0; ; i++ {
		before, err := procCPUTicks(pid)
		if err != nil {
			return err
		}
		if i > 0 {
			marks = append(marks, before)
		}
		d, body, err := scrapeOnce(url)
		if err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond) // the scrape's garbage, if collected at once
		after, err := procCPUTicks(pid)
		if err != nil {
			return err
		}
		scrapeTicks += after - before
		took, size = append(took, d), len(body)
		if sweeps0 < 0 {
			sweeps0 = metricValue(body, "hck_sweeps_total")
		}
		next := start.Add(time.Duration(i+1) * idleScrapeEvery)
		if next.After(start.Add(idleWindow)) {
			break
		}
		select {
		case <-time.After(time.Until(next)):
		case <-ctx.Done():
			return ctx.Err()
		case <-svc.done:
			return fmt.Errorf("the idle service exited")
		}
	}
	cpu1, err := procCPUTicks(pid)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	marks = append(marks, cpu1)
	var intervals []string
	for i := 1; i < len(marks); i++ {
		intervals = append(intervals, fmtDur(time.Duration(marks[i]-marks[i-1])*time.Second/clockTicks))
	}
	_, body, err := scrapeOnce(url)
	if err != nil {
		return err
	}
	sweeps := metricValue(body, "hck_sweeps_total") - sweeps0
	_, peak, err := svc.rss()
	if err != nil {
		return err
	}
	cpu := time.Duration(cpu1-cpu0) * time.Second / time.Duration(clockTicks)
	pct := 100 * cpu.Seconds() / elapsed.Seconds()

	t := b.single()
	t.add(row{What: fmt.Sprintf("idle service, %s sockets around, metrics scraped every %s: CPU over %s", fmtCount(total), idleScrapeEvery, idleWindow.Round(time.Second)),
		Hck: fmt.Sprintf("%.3f%% of a core", pct), Cmp: fmt.Sprintf("%s CPU in %s", fmtDur(cpu), elapsed.Round(100*time.Millisecond)),
		Target: "< 0.1%", Result: verdict(pct < 0.1)})
	t.add(row{What: "idle service memory with metrics on: VmHWM peak", Hck: fmtBytes(peak),
		Target: "≤ 40 MiB", Result: verdict(peak <= 40<<20)})
	t.info("a scrape of /metrics (whole request, from the bench)", fmtDur(median(took)), fmt.Sprintf("%d bytes", size), "")
	t.note("idle: `hck-bpf run --dry-run --metrics-addr %s` (thresholds 3600 s: nothing due)%s beside %s sockets (%s); CPU = utime+stime of /proc/PID/stat, %d Hz ticks (±%s), over %s after the first sweep; %d scrapes, %.0f sweeps in the window (the one-minute backstop's full walk)",
		addr, extraText(extra), fmtCount(total), stateSummary(counts), clockTicks, fmtDur(time.Second/time.Duration(clockTicks)),
		elapsed.Round(100*time.Millisecond), len(took), sweeps)
	var sweepTook []string
	for {
		select {
		case l := <-svc.sweeps:
			sweepTook = append(sweepTook, fmtDur(l.Took))
			continue
		default:
		}
		break
	}
	t.note("idle: CPU per %s interval: %s; during the %d scrapes (each request and 50 ms after it): %s; the sweeps in the window took (wall): %s",
		idleScrapeEvery, strings.Join(intervals, ", "), len(took), fmtDur(time.Duration(scrapeTicks)*time.Second/clockTicks),
		strings.Join(sweepTook, ", "))
	if pr := svc.problemsSnapshot(); len(pr) > 0 {
		t.note("idle: the service warned: %v", pr)
	}
	return nil
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times
// (100 on every Linux architecture hck-bpf builds for).
const clockTicks = 100

// procCPUTicks is utime+stime of process pid, in clock ticks: every
// thread's, the exited ones' too.
func procCPUTicks(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	n, err := statTicks(string(raw))
	if err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return n, nil
}

// statTicks is utime+stime of a /proc/PID/stat line. The command name, in
// parentheses, may hold spaces and parentheses: fields count from after
// the last ")". utime and stime are fields 14 and 15.
func statTicks(s string) (uint64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name", len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q, stime %q", f[11], f[12])
	}
	return ut + st, nil
}

// scrapeOnce GETs url and returns how long the whole request took.
func scrapeOnce(url string) (time.Duration, []byte, error) {
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	d := time.Since(start)
	if err != nil {
		return d, nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return d, nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return d, body, nil
}

// metricValue is the value of an unlabelled sample name in a /metrics
// body; -1 when absent.
func metricValue(body []byte, name string) float64 {
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func extraText(extra []string) string {
	if len(extra) == 0 {
		return ""
	}
	return " " + strings.Join(extra, " ")
}
