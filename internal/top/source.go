// Package top gathers what `hck-bpf top` shows, as data: per-state counts
// and rates, peers, SYN_RECV pressure, hung candidates with their
// countdowns, and the service's recent kills. The terminal view (ui) and
// the plain outputs (WriteTable, WriteJSON) only present a Snapshot.
package top

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

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
	// PolicyFrom says where Policy comes from, for Snapshot.Policy
	// ("flags", "/etc/hck-bpf/config.yaml + flags"; "defaults" when empty).
	PolicyFrom string
	// FollowService: while a service holds the pin dir, the countdowns
	// follow its policy (its --config file and policy flags, read from
	// its command line) instead of Policy.
	FollowService bool
	Scope         *scope.Scope // the namespaces shown; the caller keeps and closes it
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
	svc     *servicePolicy // the service's, when FollowService
	buf     []byte         // for /proc/net files

	// Peers: connections per remote address, counted by a full dump of
	// the namespaces peersNS at peersAt; the next one is due at peersNext.
	peers     map[netip.Addr]int
	peersAt   time.Time
	peersNext time.Time
	peersNS   map[uint32]bool
	peersCost time.Duration // CPU of the last full dump, all namespaces

	// estabCW: the kernel's CurrEstab counts CLOSE_WAIT sockets too
	// (Linux 6.10 and the stable kernels that took the fix; before, it
	// counts ESTABLISHED only). Guessed from the kernel's version, then
	// learnt from each full dump that tells the two apart.
	estabCW bool
}

// nsSource is what Source keeps open in one namespace: a sock_diag socket
// and its /proc/net/netstat, snmp and sockstat (all bound to the
// namespace when opened).
type nsSource struct {
	dump                    *kill.Dumper
	netstat, snmp, sockstat *os.File
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
	if opts.PolicyFrom == "" {
		opts.PolicyFrom = "defaults"
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
	s := &Source{opts: opts, view: view, tracked: ok, owners: map[uint64][]conn.Owner{}, nss: map[uint32]*nsSource{}, buf: make([]byte, procBuf),
		estabCW: kernelAtLeast(6, 10)}
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
	for _, f := range []*os.File{n.netstat, n.snmp, n.sockstat} {
		if f != nil {
			f.Close()
		}
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
	// when opened: the files read this namespace's counters from then on.
	err = h.Do(func() error {
		for _, f := range []struct {
			name string
			to   **os.File
		}{{"netstat", &n.netstat}, {"snmp", &n.snmp}, {"sockstat", &n.sockstat}} {
			if *f.to, err = os.Open("/proc/thread-self/net/" + f.name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		n.close()
		return nil, fmt.Errorf("open /proc/net of network namespace %d: %w", ino, err)
	}
	s.nss[ino] = n
	return n, nil
}

// Snapshot takes one refresh. Partial failures (a namespace gone, a map
// unreadable) are Warnings; the error is for none of it working.
func (s *Source) Snapshot() (Snapshot, error) {
	now := time.Now()
	boot := conn.Now()
	pid := tracking.ServicePID(s.opts.PinDir)
	snap := Snapshot{At: now, Service: pid != 0, Policy: s.opts.PolicyFrom}
	pol := s.opts.Policy
	if snap.Service {
		sp := s.followService(pid)
		snap.Mode = sp.mode
		if s.opts.FollowService {
			pol, snap.Policy = &sp.pol, sp.from
			snap.Warnings = append(snap.Warnings, sp.warnings...)
		}
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

	// Peers: from a full dump of each namespace when due (see
	// refreshPeers), which counts its states too.
	var full map[uint32]*[tracking.NStates]int
	if s.peersDue(now, inScope) {
		var warnings []string
		full, warnings = s.refreshPeers(now, inScope)
		snap.Warnings = append(snap.Warnings, warnings...)
	}

	// Counts per state and half-open, without a walk of every socket
	// (but where the full dump just did): the few states from a dump
	// filtered by state, ESTABLISHED from CurrEstab, TIME_WAIT from
	// sockstat's tw; TcpExt.
	var counts [tracking.NStates]int
	countsOK, estOK, twOK := true, true, true
	cur.netstat = true
	for ino := range inScope {
		n, err := s.ns(ino)
		if err != nil {
			countsOK = false
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("read sockets of network namespace %d: %v", ino, err))
			continue
		}
		if fc := full[ino]; fc != nil {
			for st, k := range fc {
				counts[st] += k
			}
		} else if err := s.cheapCounts(n, &counts, &estOK, &twOK, &snap.Warnings); err != nil {
			countsOK = false
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("read sockets of network namespace %d: %v", ino, err))
			continue
		}
		ext, err := readTcpExt(n.netstat, s.buf)
		if err != nil {
			cur.netstat = false
			snap.Warnings = append(snap.Warnings, fmt.Sprintf("network namespace %d: %v", ino, err))
			continue
		}
		cur.cookies += ext["SyncookiesSent"]
		cur.overflows += ext["ListenOverflows"]
	}
	snap.PeersAt = s.peersAt
	peers := make(map[netip.Addr]*Peer, len(s.peers))
	for a, n := range s.peers {
		peers[a] = &Peer{Addr: a, Conns: n}
	}
	snap.Syn = SynPressure{HalfOpen: counts[conn.SynRecv], CookiesSent: cur.cookies, ListenOverflows: cur.overflows}
	if !countsOK {
		snap.Syn.HalfOpen = -1
	}
	snap.Syn.Alarm = s.opts.SynAlarm > 0 && snap.Syn.HalfOpen >= s.opts.SynAlarm

	// Candidates: the tracked sockets in scope, by the policy.
	if s.tracked {
		cands, err := s.candidates(pol, inScope, boot, peers)
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
		if !countsOK || st == conn.Established && !estOK || st == conn.TimeWait && !twOK {
			c = -1
		}
		if c == 0 && perSec[st] == 0 && !(cur.states && cur.entered[st] > 0) {
			continue
		}
		snap.States = append(snap.States, StateCount{State: st, Count: c, PerSec: perSec[st]})
	}
	for _, p := range peers { // a hung connection is one, counted since
		p.Conns = max(p.Conns, p.Hung)
	}
	snap.Peers = sortPeers(peers, s.opts.MaxPeers)
	if len(inScope) > 0 && !countsOK && len(snap.States) == 0 {
		return snap, errors.New("read sockets: no namespace answered")
	}
	return snap, nil
}

// States of dumps (masks of 1<<state).
const (
	// allStates: every TCP state of the established and listening
	// tables (not TCP_BOUND_INACTIVE: bound sockets that are no
	// connection, which ss does not show either).
	allStates = 1<<(conn.NewSynRecv+1) - 1
	// fewStates: all but ESTABLISHED and TIME_WAIT, the states of most
	// sockets on a busy host, counted from /proc/net instead. The kernel
	// tests a socket's state under its hash bucket's lock and skips the
	// others before it writes anything: the dump costs the walk of the
	// hash table and the few sockets it returns. A timewait socket is
	// returned under its substate: FIN_WAIT2 ones (an orphan's FIN_WAIT2
	// the kernel turned into a timewait socket) come with this mask.
	fewStates = allStates &^ (1<<conn.Established | 1<<conn.TimeWait)
)

// nsCounts is what the filtered dump of one namespace counted.
type nsCounts struct {
	few [tracking.NStates]int // sockets per state (fewStates only)
	// finWait2Timewait: FIN_WAIT2 timewait sockets, which sockstat's tw
	// counts too.
	finWait2Timewait int
}

// cheapCounts adds n's counts to counts: the filtered dump's states,
// ESTABLISHED (unknown: *estOK = false) and TIME_WAIT (*twOK) from
// /proc/net; the error is the dump's.
func (s *Source) cheapCounts(n *nsSource, counts *[tracking.NStates]int, estOK, twOK *bool, warnings *[]string) error {
	c, err := n.counts()
	if err != nil {
		return err
	}
	for st, k := range c.few {
		counts[st] += k
	}
	if est, err := readCurrEstab(n.snmp, s.buf); err != nil {
		*estOK = false
		*warnings = append(*warnings, err.Error())
	} else {
		// CurrEstab counts CLOSE_WAIT too (s.estabCW); read a moment
		// apart from the dump, the two may disagree by a transition or two.
		if s.estabCW {
			est -= c.few[conn.CloseWait]
		}
		counts[conn.Established] += max(est, 0)
	}
	if tw, err := readTimewait(n.sockstat, s.buf); err != nil {
		*twOK = false
		*warnings = append(*warnings, err.Error())
	} else {
		counts[conn.TimeWait] += max(tw-c.finWait2Timewait, 0)
	}
	return nil
}

// counts dumps the namespace's sockets in fewStates and counts them.
func (n *nsSource) counts() (nsCounts, error) {
	var c nsCounts
	err := n.dump.Dump(fewStates, func(so *kill.Socket) {
		c.few[int(so.State)&(tracking.NStates-1)]++
		if so.State == conn.FinWait2 && so.Timewait {
			c.finWait2Timewait++
		}
	})
	return c, err
}

// PeersEvery is how often at most peers are counted again (a full dump
// of every namespace's sockets: about 45 ms of CPU beside 60k sockets);
// PeersBudget stretches it so that the dumps' CPU stays under that share
// of a core (half a percent: the filtered dump of each refresh, about
// 10 ms at 60k sockets, takes another one at a 1 s interval).
const (
	PeersEvery  = 10 * time.Second
	PeersBudget = 0.005
)

// peersDue tells whether peers must be counted again: never counted, the
// namespaces in scope changed, or peersNext passed.
func (s *Source) peersDue(now time.Time, scope map[uint32]bool) bool {
	if s.peersAt.IsZero() || !now.Before(s.peersNext) || len(scope) != len(s.peersNS) {
		return true
	}
	for ino := range scope {
		if !s.peersNS[ino] {
			return true
		}
	}
	return false
}

// refreshPeers counts connections per remote address by a full dump of
// every namespace in scope, and sets when the next is due from its CPU
// time. It returns the sockets per state of each namespace that answered,
// and the warnings of those that did not.
func (s *Source) refreshPeers(now time.Time, scope map[uint32]bool) (full map[uint32]*[tracking.NStates]int, warnings []string) {
	// The thread's CPU (its syscalls: the kernel's walk and fill are
	// most of it) is the dump's cost.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	peers := make(map[netip.Addr]int, len(s.peers))
	full = map[uint32]*[tracking.NStates]int{}
	for ino := range scope {
		n, err := s.ns(ino)
		var c [tracking.NStates]int
		if err == nil {
			err = n.dump.Dump(allStates, func(so *kill.Socket) {
				c[int(so.State)&(tracking.NStates-1)]++
				if so.State == conn.Listen {
					return
				}
				if a := so.Remote.Addr().Unmap(); a.IsValid() && !a.IsUnspecified() {
					peers[a]++
				}
			})
		}
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("count peers of network namespace %d: %v", ino, err))
			continue
		}
		full[ino] = &c
		if est, err := readCurrEstab(n.snmp, s.buf); err == nil {
			s.estabCW = learnEstabCW(s.estabCW, est, c[conn.Established], c[conn.CloseWait])
		}
	}
	s.peersCost = threadCPU() - cpu0
	s.peers, s.peersAt = peers, now
	s.peersNS = maps.Clone(scope)
	s.peersNext = peersNext(now, s.peersCost)
	return full, warnings
}

// peersNext is when peers are due again after a full dump at now that
// cost cpu: PeersEvery, or later so that it costs under PeersBudget.
func peersNext(now time.Time, cpu time.Duration) time.Time {
	return now.Add(max(PeersEvery, time.Duration(float64(cpu)/PeersBudget)))
}

// learnEstabCW tells whether CurrEstab counts CLOSE_WAIT sockets, from
// curr read just after a full dump counted est ESTABLISHED and cw
// CLOSE_WAIT sockets: prev when they do not tell (no CLOSE_WAIT socket,
// or a socket changed state between the two reads).
func learnEstabCW(prev bool, curr, est, cw int) bool {
	switch {
	case cw == 0:
		return prev
	case curr == est+cw:
		return true
	case curr == est:
		return false
	}
	return prev
}

// kernelAtLeast tells whether the running kernel's version is at least
// major.minor (false when unknown).
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// threadCPU is the calling thread's user and system CPU time so far.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
func (s *Source) candidates(pol *policy.Policy, scope map[uint32]bool, now uint64, peers map[netip.Addr]*Peer) ([]Candidate, error) {
	type due struct {
		c        conn.Conn
		deadline uint64
	}
	var all []due
	err := s.view.Walk(func(c *conn.Conn) {
		if !scope[c.NetNS] || !c.State.Closing() {
			return
		}
		hung, deadline := pol.Due(c, now)
		if hung {
			a := c.Remote.Addr().Unmap()
			if p := peers[a]; p != nil {
				p.Hung++
			} else if a.IsValid() && !a.IsUnspecified() {
				peers[a] = &Peer{Addr: a, Hung: 1}
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
		out = append(out, candidate(pol, d.c, s.owners[d.c.Cookie], now))
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
