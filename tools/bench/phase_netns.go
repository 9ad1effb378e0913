package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/scope"
)

// netnsPhase measures --all-netns: p.namespaces namespaces of p.perNS
// sockets each (1% hung: CLOSE_WAIT, each with its FIN_WAIT2 peer; the
// rest ESTABLISHED), every namespace held by a holder started in a
// namespace of its own, under `hck-bpf run --dry-run --all-netns`; then
// the same sockets, in the same number of holders, all in the bench's
// namespace, under `hck-bpf run --dry-run`. It times the service's own
// sweeps (each reads the map, finds the owners of the hung sockets and
// looks each up from inside its namespace) both ways, and namespace
// discovery (what the service runs before each full walk) on its own.
//
// The service only ever runs dry: --all-netns reaches every namespace of
// the host, whose sockets it judges and looks up, and never destroys.
func (b *bench) netnsPhase(ctx context.Context, p plan) error {
	conns := p.perNS / 2
	hung := max(p.perNS/100, 1)
	spec := holdSpec{Est: conns - hung, CW: hung}
	specs := make([]holdSpec, p.namespaces)
	for i := range specs {
		specs[i] = spec
	}
	// Closing states never due but CLOSE_WAIT (at once); TIME_WAIT 0.2 s
	// for the bench's triggers.
	args := []string{"--dry-run", "--close-wait-timeout", "0.001", "--fin-wait-timeout", "3600", "--closing-timeout", "3600",
		"--last-ack-timeout", "3600", "--time-wait-timeout", "0.2"}
	t := &table{Title: fmt.Sprintf("Namespaces: %d × %s sockets (%d%% hung) vs the same %s sockets in one namespace",
		p.namespaces, fmtCount(spec.sockets()), 100*hung/p.perNS, fmtCount(p.namespaces*spec.sockets()))}

	b.progress("netns: building %d namespaces × %d sockets, one holder in each", p.namespaces, spec.sockets())
	hs, _, err := b.buildSetIn(ctx, true, specs)
	if err != nil {
		return err
	}
	all, err := b.measureNetnsService(ctx, p, "netns-all", append([]string{"--all-netns"}, args...))
	if err != nil {
		hs.stop()
		return err
	}
	disc, found, err := measureDiscovery(p.reps + 2)
	hs.stop()
	if err != nil {
		return err
	}

	b.progress("netns: the same %d holders in the bench's namespace", p.namespaces)
	hs, _, err = b.buildSetIn(ctx, false, specs)
	if err != nil {
		return err
	}
	one, err := b.measureNetnsService(ctx, p, "netns-one", args)
	hs.stop()
	if err != nil {
		return err
	}

	t.add(row{What: "service's sweep: --all-netns vs one namespace (took)",
		Hck: fmtDur(all.took), Cmp: fmtDur(one.took), Ratio: fmtRatio(ratio(all.took, one.took)),
		Target: "≤ 2×", Result: verdict(all.took > 0 && all.took <= 2*one.took)})
	t.info("service's first sweep, a full walk: --all-netns (each namespace) vs one namespace",
		fmtDur(all.first.Took), fmtDur(one.first.Took), fmtRatio(ratio(all.first.Took, one.first.Took)))
	t.info(fmt.Sprintf("namespace discovery (netns.Discover: %d namespaces on the host)", found.namespaces),
		fmtDur(disc.discover), "", "")
	t.info("scope refresh (discovery, opening new ones, naming each by its cgroup or mount)", fmtDur(disc.refresh), "", "")
	t.info("service memory, VmHWM peak: --all-netns vs one namespace", fmtBytes(all.peak), fmtBytes(one.peak), "")
	lo, hi := minmax(all.sweeps)
	olo, ohi := minmax(one.sweeps)
	t.note("`hck-bpf run %s` (--all-netns) and without it; medians of %d sweeps each (--all-netns %s–%s, one namespace %s–%s), "+
		"each started by a TIME_WAIT socket due 0.2 s after it entered", joinArgs(args), len(all.sweeps), fmtDur(lo), fmtDur(hi), fmtDur(olo), fmtDur(ohi))
	t.note("each sweep: --all-netns read %s tracked sockets and judged %s hung, one namespace %s and %s; "+
		"the hung ones' owners found, each looked up (dry run) from inside its namespace: %d destroyers, one",
		fmtCount(all.scanned), fmtCount(all.hung), fmtCount(one.scanned), fmtCount(one.hung), p.namespaces+1)
	t.note("the first sweep walks every namespace, each from inside it, and seeds its sockets (ages from then: none hung yet); "+
		"the kernel's TCP iterator scans the whole established hash table (shared by namespaces unless net.ipv4.tcp_child_ehash_entries "+
		"gave them their own) for each namespace it walks: %s per namespace here, of the host's all", fmtDur(all.first.Took/time.Duration(max(found.namespaces, 1))))
	t.note("--all-netns covers every namespace of the host (%d at the discovery: the bench's %d, its own, and the host's others), "+
		"so sockets of other namespaces may add to its counts", found.namespaces, p.namespaces)
	t.note("discovery: medians of %d runs in the bench process; netns.Discover walks the bind mounts and every thread's "+
		"/proc/PID/task/TID/ns/net (%d threads now); the service runs a scope refresh before each full walk, at least every minute",
		disc.runs, found.threads)
	b.tables = append(b.tables, t)
	return nil
}

// netnsRun is what one service of the netns phase did.
type netnsRun struct {
	first         sweepLine
	sweeps        []time.Duration
	took          time.Duration // median of sweeps
	scanned, hung int
	peak          uint64
}

// measureNetnsService starts `hck-bpf run` with args on a pin dir of its
// own, lets it sweep once more (its first hung sockets: the owners
// iterator loads), then times p.sweeps + 2 sweeps.
func (b *bench) measureNetnsService(ctx context.Context, p plan, name string, args []string) (netnsRun, error) {
	var r netnsRun
	pin := b.pin(name)
	b.progress("netns: hck-bpf run %s (pins in %s)", joinArgs(args), pin)
	svc, err := b.startService(ctx, name, pin, args...)
	if err != nil {
		return r, err
	}
	defer b.unload(pin)
	defer svc.stop()
	r.first = svc.first
	if _, err := b.serviceSweep(ctx, svc); err != nil {
		return r, err
	}
	for range p.sweeps + 2 {
		l, err := b.serviceSweep(ctx, svc)
		if err != nil {
			return r, err
		}
		r.sweeps, r.scanned, r.hung = append(r.sweeps, l.Took), l.Scanned, l.Hung
	}
	r.took = median(r.sweeps)
	_, r.peak, _ = svc.rss()
	return r, nil
}

type discoveryTimes struct {
	discover, refresh time.Duration
	runs              int
}

type discovered struct{ namespaces, threads int }

// measureDiscovery times netns.Discover and a --all-netns scope's Refresh,
// n times each (medians), in this process.
func measureDiscovery(n int) (discoveryTimes, discovered, error) {
	d := discoveryTimes{runs: n}
	var found discovered
	var ds, rs []time.Duration
	for range n {
		start := time.Now()
		fs := netns.Discover()
		ds = append(ds, time.Since(start))
		found.namespaces = len(fs)
	}
	sc, err := scope.All()
	if err != nil {
		return d, found, err
	}
	defer sc.Close()
	for range n {
		start := time.Now()
		sc.Refresh()
		rs = append(rs, time.Since(start))
	}
	d.discover, d.refresh = median(ds), median(rs)
	found.threads = countThreads()
	return d, found, nil
}

// joinArgs renders a command line's arguments.
func joinArgs(args []string) string { return strings.Join(args, " ") }

// countThreads counts the host's threads, as discovery sees them.
func countThreads() int {
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*")
	return len(tasks)
}
