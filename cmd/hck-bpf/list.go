package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

type listOpts struct {
	states  []string
	json    bool
	mapSize uint32
	scope   scopeFlags
}

func newList(g *globals) *cobra.Command {
	f := &listOpts{}
	cmd := &cobra.Command{
		Use:   "list [--state S] [--json] [--netns NS | --all-netns]",
		Short: "Tracked sockets in this network namespace (or others), with exact ages",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("map-size") {
				f.mapSize = 0 // the pinned map's size, or the default
			} else if f.mapSize == 0 {
				return usagef("--map-size: must be at least 1")
			}
			return list(g, f, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringArrayVar(&f.states, "state", nil, "only these states (close-wait, FIN_WAIT2, ...; repeat or comma-separate)")
	cmd.Flags().BoolVar(&f.json, "json", false, "one JSON array, for scripts")
	cmd.Flags().Uint32Var(&f.mapSize, "map-size", tracking.DefaultMapSize, "sockets the kernel tracker can hold, if list attaches it (a pinned map keeps its size)")
	f.scope.register(cmd.Flags())
	return cmd
}

type listEntry struct {
	Cookie    uint64  `json:"cookie"`
	State     string  `json:"state"`
	Local     string  `json:"local"`
	Remote    string  `json:"remote"`
	AgeS      float64 `json:"age_s"`
	AgeExact  bool    `json:"age_exact"`
	EnteredNs uint64  `json:"entered_ns"`
	NetNS     uint32  `json:"netns"`
	NetNSName string  `json:"netns_name,omitempty"`
	Timewait  bool    `json:"timewait"`
	PID       int     `json:"pid,omitempty"`
	Process   string  `json:"process,omitempty"`
	// The owner's cgroup, and what its path shows (see internal/cgroup).
	Cgroup      string `json:"cgroup,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	PodUID      string `json:"pod_uid,omitempty"`

	age time.Duration
}

func list(g *globals, f *listOpts, stderr io.Writer) error {
	want := map[conn.State]bool{}
	for _, v := range f.states {
		// An empty value would list every state: refuse it, as a typo.
		names := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		if len(names) == 0 {
			return usagef("--state: no state in %q: want states such as close-wait or FIN_WAIT2", v)
		}
		for _, n := range names {
			s, err := conn.ParseState(n)
			if err != nil {
				return usagef("--state: %v", err)
			}
			want[s] = true
		}
	}
	scope, err := g.openScope(&f.scope)
	if err != nil {
		return err
	}
	defer scope.Close()
	tr, err := g.openTracker(f.mapSize, false, scope)
	if err != nil {
		return err
	}
	defer tr.Close()
	names := scope.Names()
	// A walk of a namespace only when the map may be missing something
	// there: never seeded, or a socket the map may be wrong about
	// (conn.MayBeStale, the rule a sweep uses too).
	now := conn.Now()
	walked := map[uint32]bool{}
	var unseeded []uint32
	for _, ns := range scope.Inodes() {
		if !tr.Seeded(ns) {
			unseeded, walked[ns] = append(unseeded, ns), true
		}
	}
	if len(unseeded) > 0 {
		if _, err := tr.Reconcile(unseeded); err != nil {
			return err
		}
	}
	conns, err := scoped(tr, names)
	if err != nil {
		return err
	}
	var stale []uint32
	for _, c := range conns {
		if !walked[c.NetNS] && c.MayBeStale(now) {
			stale, walked[c.NetNS] = append(stale, c.NetNS), true
		}
	}
	if len(stale) > 0 {
		if _, err := tr.Reconcile(stale); err != nil {
			return err
		}
		if conns, err = scoped(tr, names); err != nil {
			return err
		}
	}
	ask := make([]*conn.Conn, len(conns))
	for i := range conns {
		ask[i] = &conns[i]
	}
	owners, err := tr.Owners(ask)
	if err != nil {
		return err
	}
	now = conn.Now()
	entries := []listEntry{}
	for _, c := range conns {
		if len(want) > 0 && !want[c.State] {
			continue
		}
		e := listEntry{Cookie: c.Cookie, State: c.State.String(), Local: c.Local.String(), Remote: c.Remote.String(),
			AgeS: c.Age(now).Seconds(), AgeExact: c.Exact, EnteredNs: c.Entered, NetNS: c.NetNS, NetNSName: names[c.NetNS],
			Timewait: c.Timewait, age: c.Age(now)}
		if o := owners[c.Cookie]; len(o) > 0 {
			e.PID, e.Process = o[0].PID, o[0].Comm
			e.Cgroup, e.ContainerID, e.PodUID = o[0].Cgroup, o[0].ContainerID, o[0].PodUID
		}
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].EnteredNs < entries[j].EnteredNs })
	full := ""
	if c, err := tr.Counters(); err == nil && c.Overflow > 0 {
		full = fmt.Sprintf("the tracker's map was full %d times (--map-size %d): sockets it refused are not tracked, not listed and not destroyed",
			c.Overflow, tr.MapSize())
	}
	if f.json {
		if full != "" {
			fmt.Fprintf(stderr, "hck-bpf: warning: %s\n", full)
		}
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if tr.Attached {
		fmt.Fprintf(g.stdout, "# no tracker was pinned in %s: attached one now; sockets are tracked from now on\n", g.pinDir)
	}
	if full != "" {
		fmt.Fprintf(g.stdout, "# warning: %s\n", full)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tLOCAL\tREMOTE\tAGE\tPROCESS\tCOOKIE\tNETNS")
	for _, e := range entries {
		proc := "-"
		if e.PID != 0 {
			proc = fmt.Sprintf("%s[%d]", e.Process, e.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.State, e.Local, e.Remote,
			policy.FormatAge(e.age, e.AgeExact), proc, e.Cookie, report.NetNS(e.NetNS, e.NetNSName))
	}
	return tw.Flush()
}

// scoped returns the tracked sockets of the namespaces in scope.
func scoped(tr *tracking.Tracker, scope map[uint32]string) ([]conn.Conn, error) {
	var out []conn.Conn
	err := tr.Walk(0, func(c *conn.Conn) {
		if _, ok := scope[c.NetNS]; ok {
			out = append(out, *c)
		}
	})
	return out, err
}
