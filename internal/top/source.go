// Package top gathers what `hck-bpf top` shows, as data: per-state counts
// and rates, peers, SYN_RECV pressure, hung candidates with their
// countdowns, and the service's recent kills. The terminal view (ui) and
// the plain outputs (WriteTable, WriteJSON) only present a Snapshot.
package top

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kill"
	"github.com/hck-bpf/hck-bpf/internal/owners"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Options of a Source.
type Options struct {
	PinDir string         // tracking.DefaultPinDir when empty
	Policy *policy.Policy // thresholds, filters and rules: policy.Default() when nil
	Scope  *scope.Scope   // the namespaces shown; the caller keeps and closes it
	// SynAlarm sets SynPressure.Alarm when HalfOpen reaches it (0: never).
	SynAlarm int
	// MaxPeers cuts Snapshot.Peers (0: DefaultMaxPeers).
	MaxPeers int
	// MaxCandidates cuts Snapshot.Candidates, soonest first, and bounds
	// the full decisions (reason, rule, owners) made per refresh (0:
	// DefaultMaxCandidates).
	MaxCandidates int
}

// Defaults of Options.
const (
	DefaultMaxPeers      = 100
	DefaultMaxCandidates = 500
)

// Warnings a Snapshot may carry.
const (
	WarnNotAttached = "tracker not attached: run hck-bpf run (candidates, rates and kills need it; counts and peers come from the kernel's socket tables)"
	WarnNoStates    = "the pinned tracker predates per-state counters: transition rates unknown (hck-bpf unload, then hck-bpf run)"
)

// Source takes Snapshots. Not safe for concurrent use.
type Source struct {
	opts    Options
	view    *tracking.View
	tracked bool // a tracker is pinned
	finder  *owners.Finder
	owners  map[uint64][]conn.Owner // by cookie, asked once per socket
	nss     map[uint32]*nsSource
	prev    *sample
}

// nsSource is what Source keeps open in one namespace: a sock_diag socket
// and its /proc/net/netstat (both bound to the namespace when opened).
type nsSource struct {
	dump    *kill.Dumper
	netstat *os.File
}

// sample is what rates are computed from.
type sample struct {
	at                 time.Time
	entered            [tracking.NStates]uint64
	states             bool // entered was read
	cookies, overflows uint64
	netstat            bool // cookies and overflows were read in every namespace
}

// Open opens the pins of opts.PinDir read-only and the namespaces of
// opts.Scope. Nothing is attached, created or pinned: with no tracker
// pinned, Snapshots say so (WarnNotAttached) and show what the kernel's
// socket tables do.
func Open(opts Options) (*Source, error) {
	if opts.PinDir == "" {
		opts.PinDir = tracking.DefaultPinDir
	}
	if opts.Policy == nil {
		p := policy.Default()
		opts.Policy = &p
	}
	if opts.Scope == nil {
		return nil, errors.New("open top: no scope")
	}
	if opts.MaxPeers <= 0 {
		opts.MaxPeers = DefaultMaxPeers
	}
	if opts.MaxCandidates <= 0 {
		opts.MaxCandidates = DefaultMaxCandidates
	}
	view, ok, err := tracking.OpenView(opts.PinDir)
	if err != nil {
		return nil, fmt.Errorf("open top: %w", err)
	}
	s := &Source{opts: opts, view: view, tracked: ok, owners: map[uint64][]conn.Owner{}, nss: map[uint32]*nsSource{}}
	if ok {
		s.finder = owners.New(opts.PinDir, view.MapSize())
	}
	return s, nil
}

// Close releases everything Open and the Snapshots opened.
func (s *Source) Close() {
	for ino, n := range s.nss {
		n.close()
		delete(s.nss, ino)
	}
	if s.finder != nil {
		s.finder.Close()
	}
	s.view.Close()
}

func (n *nsSource) close() {
	if n.dump != nil {
		n.dump.Close()
	}
	if n.netstat != nil {
		n.netstat.Close()
	}
}

// ns opens (once) what Source reads in namespace ino.
func (s *Source) ns(ino uint32) (*nsSource, error) {
	if n := s.nss[ino]; n != nil {
		return n, nil
	}
	h, err := s.opts.Scope.Dup(ino)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	n := &nsSource{}
	if n.dump, err = kill.OpenDumper(h); err != nil {
		return nil, err
	}
	// /proc/thread-self/net is the calling thread's namespace's, fixed
	// when opened: the file reads this namespace's counters from then on.
	err = h.Do(func() error {
		n.netstat, err = os.Open("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		n.close()
		return nil, fmt.Errorf("open netstat of network namespace %d: %w", ino, err)
	}
	s.nss[ino] = n
	return n, nil
}

// Snapshot takes one refresh. Partial failures (a namespace gone, a map
// unreadable) are Warnings; the error is for none of it working.
func (s *Source) Snapshot() (Snapshot, error) {
	now := time.Now()
	boot := conn.Now()
	snap := Snapshot{At: now, Service: tracking.ServicePID(s.opts.PinDir) != 0}
	if snap.Service {
		snap.Mode = serviceMode(tracking.ServicePID(s.opts.PinDir))
	}
	cur := &sample{at: now}
	if !s.tracked {
		snap.Warnings = append(snap.Warnings, WarnNotAttached)
	} else {
		var err error
		cur.entered, cur.states, err = s.view.Entered()
		if err != nil {
			snap.Warnings = append(snap.Warnings, err.Error())
			cur.states = false
		} else if !cur.states {
			snap.Warnings = append(snap.Warnings, WarnNoStates)
		}
		if c, err := s.view.Counters(); err == nil && c.Overflow > 0 {
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("map full: the tracker refused %d sockets (--map-size %d): they are not tracked", c.Overflow, s.view.MapSize()))
		}
	}

	inScope := map[uint32]bool{}
	for _, ino := range s.opts.Scope.Inodes() {
		inScope[ino] = true
	}
	for ino, n := range s.nss { // namespaces gone from the scope
		if !inScope[ino] {
			n.close()
			delete(s.nss, ino)
		}
	}
	snap.Namespaces = len(inScope)

	// The kernel's socket tables: counts, peers, half-open; TcpExt.
	var counts [tracking.NStates]int
	countsOK := true
	peers := map[netip.Addr]*Peer{}
	cur.netstat = true
	for ino := range inScope {
		n, err := s.ns(ino)
		if err == nil {
			err = n.dump.Dump(allStates, func(so *kill.Socket) {
				counts[int(so.State)&(tracking.NStates-1)]++
				if so.State == conn.Listen {
					return
				}
				a := so.Remote.Addr().Unmap()
				if !a.IsValid() || a.IsUnspecified() {
					return
				}
				if p := peers[a]; p != nil {
					p.Conns++
				} else {
					peers[a] = &Peer{Addr: a, Conns: 1}
				}
			})
		}
		if err != nil {
			countsOK = false
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("read sockets of network namespace %d: %v", ino, err))
			continue
		}
		ext, err := readTcpExt(n.netstat)
		if err != nil {
			cur.netstat = false
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("network namespace %d: %v", ino, err))
			continue
		}
		cur.cookies += ext["SyncookiesSent"]
		cur.overflows += ext["ListenOverflows"]
	}
	snap.Syn = SynPressure{HalfOpen: counts[conn.SynRecv], CookiesSent: cur.cookies, ListenOverflows: cur.overflows}
	if !countsOK {
		snap.Syn.HalfOpen = -1
	}
	snap.Syn.Alarm = s.opts.SynAlarm > 0 && snap.Syn.HalfOpen >= s.opts.SynAlarm

	// Candidates: the tracked sockets in scope, by the policy.
	if s.tracked {
		cands, err := s.candidates(inScope, boot, peers)
		if err != nil {
			snap.Warnings = append(snap.Warnings, err.Error())
		}
		snap.Candidates = cands
		if kills, err := s.view.Recent(); err != nil {
			snap.Warnings = append(snap.Warnings, err.Error())
		} else {
			for _, k := range kills {
				if inScope[k.Conn.NetNS] {
					k.Conn.NetNSName = s.opts.Scope.Name(k.Conn.NetNS)
					snap.Kills = append(snap.Kills, Kill{At: k.At, Conn: k.Conn, Age: k.Age, Reason: k.Reason, Rule: k.Rule})
				}
			}
		}
	}

	// Rates over the interval since the previous snapshot.
	var perSec [tracking.NStates]float64
	if p := s.prev; p != nil && now.After(p.at) {
		snap.Interval = now.Sub(p.at)
		secs := snap.Interval.Seconds()
		if cur.states && p.states {
			for i := range cur.entered {
				perSec[i] = rate(p.entered[i], cur.entered[i], secs)
				if conn.State(i) != conn.TimeWait { // also counted as CLOSE
					snap.Transitions += perSec[i]
				}
			}
		}
		if cur.netstat && p.netstat {
			snap.Syn.CookiesPerSec = rate(p.cookies, cur.cookies, secs)
			snap.Syn.OverflowsPerSec = rate(p.overflows, cur.overflows, secs)
		}
	}
	s.prev = cur
	for st := conn.Established; st <= conn.NewSynRecv; st++ {
		c := counts[st]
		if !countsOK {
			c = -1
		}
		if c == 0 && perSec[st] == 0 && !(cur.states && cur.entered[st] > 0) {
			continue
		}
		snap.States = append(snap.States, StateCount{State: st, Count: c, PerSec: perSec[st]})
	}
	snap.Peers = sortPeers(peers, s.opts.MaxPeers)
	if len(inScope) > 0 && !countsOK && len(snap.States) == 0 {
		return snap, errors.New("read sockets: no namespace answered")
	}
	return snap, nil
}

// allStates asks a dump for every TCP state.
const allStates = ^uint32(0)

// rate is the change from prev to cur over secs, per second; 0 when the
// counter went back (the tracker was unloaded and attached again, or the
// namespace's counters are new): the interval's rate is unknown, not
// negative, and the next one is right again.
func rate(prev, cur uint64, secs float64) float64 {
	if cur < prev || secs <= 0 {
		return 0
	}
	return float64(cur-prev) / secs
}

// candidates are the tracked sockets of scope in closing states, soonest
// deadline first, decided as a sweep would; hung ones are counted into
// peers too.
func (s *Source) candidates(scope map[uint32]bool, now uint64, peers map[netip.Addr]*Peer) ([]Candidate, error) {
	type due struct {
		c        conn.Conn
		deadline uint64
	}
	var all []due
	err := s.view.Walk(func(c *conn.Conn) {
		if !scope[c.NetNS] || !c.State.Closing() {
			return
		}
		hung, deadline := s.opts.Policy.Due(c, now)
		if hung {
			if p := peers[c.Remote.Addr().Unmap()]; p != nil {
				p.Hung++
			}
		}
		all = append(all, due{c: *c, deadline: deadline})
		all[len(all)-1].c.NetNSName = s.opts.Scope.Name(c.NetNS)
	})
	// Soonest first; sockets that never become hung (no threshold) last.
	slices.SortFunc(all, func(a, b due) int {
		da, db := a.deadline, b.deadline
		if da == policy.NoDeadline {
			da = ^uint64(0)
		}
		if db == policy.NoDeadline {
			db = ^uint64(0)
		}
		switch {
		case da < db:
			return -1
		case da > db:
			return 1
		}
		return cmp.Compare(a.c.Cookie, b.c.Cookie)
	})
	all = all[:min(len(all), s.opts.MaxCandidates)]
	cs := make([]*conn.Conn, len(all))
	for i := range all {
		cs[i] = &all[i].c
	}
	if oerr := s.lookupOwners(cs); oerr != nil && err == nil {
		err = oerr
	}
	out := make([]Candidate, 0, len(all))
	for _, d := range all {
		out = append(out, candidate(s.opts.Policy, d.c, s.owners[d.c.Cookie], now))
	}
	if err != nil {
		return out, err
	}
	return out, nil
}

// lookupOwners asks the owners iterator once for the sockets of cs it was
// never asked about (a walk of every process's files: not every refresh),
// and forgets the sockets no longer shown.
func (s *Source) lookupOwners(cs []*conn.Conn) error {
	shown := make(map[uint64]bool, len(cs))
	var ask []*conn.Conn
	for _, c := range cs {
		shown[c.Cookie] = true
		if _, ok := s.owners[c.Cookie]; !ok && c.File != 0 && c.MayHaveOwner() {
			ask = append(ask, c)
		}
	}
	for cookie := range s.owners {
		if !shown[cookie] {
			delete(s.owners, cookie)
		}
	}
	if len(ask) == 0 || s.finder == nil {
		return nil
	}
	found, err := s.finder.Owners(ask)
	if err != nil {
		return fmt.Errorf("find owners: %w", err)
	}
	for _, c := range ask {
		s.owners[c.Cookie] = found[c.Cookie] // nil: asked, none
	}
	return nil
}

// candidate decides c at now as a sweep would, and at its deadline for
// why it would be spared (a filter applies to hung sockets only).
func candidate(p *policy.Policy, c conn.Conn, owners []conn.Owner, now uint64) Candidate {
	v := sweep.Decide(p, c, owners, now)
	cd := Candidate{Conn: c, Age: v.Age, Threshold: v.Threshold, Rule: v.Rule}
	if len(owners) > 0 {
		cd.Conn.Owner = &owners[0]
	}
	if v.Deadline == policy.NoDeadline {
		cd.Excluded = "no threshold for " + c.State.String()
		return cd
	}
	cd.Left = left(v.Deadline, now)
	if !v.Hung {
		v = sweep.Decide(p, c, owners, v.Deadline)
	}
	if v.Action == policy.Skip {
		cd.Excluded = v.SkipDetail
		if cd.Excluded == "" {
			cd.Excluded = v.Skip.String()
		}
	}
	return cd
}

// left is deadline - now, both CLOCK_BOOTTIME ns, saturating.
func left(deadline, now uint64) time.Duration {
	if deadline >= now {
		return time.Duration(min(deadline-now, math.MaxInt64))
	}
	return -time.Duration(min(now-deadline, math.MaxInt64))
}

// sortPeers orders peers by connections, then hung ones, then address,
// and keeps the first max.
func sortPeers(m map[netip.Addr]*Peer, max int) []Peer {
	out := make([]Peer, 0, len(m))
	for _, p := range m {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Peer) int {
		if a.Conns != b.Conns {
			return b.Conns - a.Conns
		}
		if a.Hung != b.Hung {
			return b.Hung - a.Hung
		}
		return a.Addr.Compare(b.Addr)
	})
	return out[:min(len(out), max)]
}

// serviceMode reads the service's mode from its command line: "live" with
// --live, "dry-run" with --dry-run or with neither and no --config; ""
// when a configuration file may say.
func serviceMode(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	args := strings.Split(string(b), "\x00")
	switch {
	case slices.Contains(args, "--live"):
		return "live"
	case slices.Contains(args, "--dry-run"):
		return "dry-run"
	case slices.ContainsFunc(args, func(a string) bool { return a == "--config" || strings.HasPrefix(a, "--config=") }):
		return ""
	}
	return "dry-run"
}
