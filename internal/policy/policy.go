// Package policy decides which TCP connections are hung and which of those
// may be destroyed: the per-state thresholds, the port and process filters and
// the protected processes of the hung_connection_killer scripts, plus the
// parsers for their flag values. It does no I/O and keeps no state.
package policy

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// Policy is what a sweep applies to every connection.
type Policy struct {
	Thresholds Thresholds
	// ExcludePorts protects a connection whose local OR remote port is listed.
	ExcludePorts []uint16
	// IncludePorts, when not empty, limits destruction to connections whose
	// local OR remote port is listed. Exclusion wins over inclusion.
	IncludePorts []uint16
	// ExcludeProcesses protects connections of processes with these names
	// (matched with CommMatches), on top of ProtectedProcesses.
	ExcludeProcesses []string
	// ExcludeCgroups protects connections whose owner's cgroup matches one
	// of these globs (CgroupMatches: the path or one of its ancestors).
	// A connection without a known owner (an orphan, a timewait socket)
	// is not excluded by them; an owner whose cgroup is unknown (it could
	// not be read) is kept, since the rule cannot be checked.
	ExcludeCgroups []string
	// IncludeCgroups, when not empty, limits destruction to connections
	// whose owners' cgroups all match one of these globs: a connection
	// without a known owner (an orphan, a timewait socket) or with an
	// owner whose cgroup is unknown is then never destroyed. Exclusion,
	// and the protected processes, win over inclusion.
	IncludeCgroups []string
	// Rules give the connections they match their own thresholds and
	// action: the first that matches decides (see Rule). The filters
	// above, and the protected processes, win over every rule.
	Rules []Rule
}

// Default is the scripts' default policy: DefaultThresholds, port 22
// excluded, every port included, no process excluded beyond the protected ones.
func Default() Policy {
	return Policy{Thresholds: DefaultThresholds(), ExcludePorts: []uint16{22}}
}

// Validate reports the first problem that makes p unusable: a closing state
// without a threshold or with one above MaxDuration, port 0, or a process
// name ParseNames would refuse. A port both included and excluded is not an
// error (the scripts accepted it; exclusion wins): see Warnings.
func (p *Policy) Validate() error {
	if err := p.Thresholds.Validate(); err != nil {
		return err
	}
	if slices.Contains(p.ExcludePorts, 0) {
		return fmt.Errorf("invalid excluded port 0: want a number from 1 to 65535")
	}
	if slices.Contains(p.IncludePorts, 0) {
		return fmt.Errorf("invalid included port 0: want a number from 1 to 65535")
	}
	for _, n := range p.ExcludeProcesses {
		if err := checkName(n); err != nil {
			return err
		}
	}
	for _, g := range append(slices.Clip(p.ExcludeCgroups), p.IncludeCgroups...) {
		if err := checkGlob(g); err != nil {
			return err
		}
	}
	for i := range p.Rules {
		if err := p.Rules[i].Validate(); err != nil {
			return err
		}
		for j := range i {
			if p.Rules[j].Name == p.Rules[i].Name {
				return fmt.Errorf("rule %s: a second rule with this name", p.Rules[i].Name)
			}
		}
	}
	return nil
}

// Warnings lists settings that are valid but probably not what the user
// meant, one line each, for the command to log before it starts.
func (p *Policy) Warnings() []string {
	var w []string
	for _, port := range p.IncludePorts {
		if slices.Contains(p.ExcludePorts, port) {
			w = append(w, fmt.Sprintf("port %d is both included and excluded: excluded wins, its connections are never destroyed", port))
		}
	}
	for _, g := range p.IncludeCgroups {
		if slices.Contains(p.ExcludeCgroups, g) {
			w = append(w, fmt.Sprintf("cgroup glob %s is both included and excluded: excluded wins, its connections are never destroyed", g))
		}
	}
	for _, n := range p.ExcludeProcesses {
		if len(n) > CommLen {
			w = append(w, fmt.Sprintf("process name %q is longer than the kernel's %d-byte comm: it matches %s", n, CommLen, describeComm(n)))
		}
	}
	return w
}

// Action is what a sweep does with one connection.
type Action uint8

const (
	// Ignore: not a closing state, or not hung yet. The zero value.
	Ignore Action = iota
	// Destroy: hung and not protected by any filter.
	Destroy
	// Skip: hung, but a filter or the protected list keeps it (see SkipReason).
	Skip
)

func (a Action) String() string {
	switch a {
	case Ignore:
		return "ignore"
	case Destroy:
		return "destroy"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// SkipReason says why a hung connection was kept.
type SkipReason uint8

// Skip reasons, in the order Decide checks them.
const (
	NotSkipped SkipReason = iota
	SkipExcludedPort
	SkipNotIncluded
	SkipProtectedProcess
	SkipExcludedProcess
	SkipExcludedCgroup
	SkipNotIncludedCgroup
	// SkipReportOnly: the rule that decides says action: report.
	SkipReportOnly
)

// SkipReasons lists every reason a hung connection is kept, in a stable
// order for summaries.
var SkipReasons = []SkipReason{SkipExcludedPort, SkipNotIncluded, SkipProtectedProcess, SkipExcludedProcess,
	SkipExcludedCgroup, SkipNotIncludedCgroup, SkipReportOnly}

func (r SkipReason) String() string {
	switch r {
	case NotSkipped:
		return "not skipped"
	case SkipExcludedPort:
		return "excluded port"
	case SkipNotIncluded:
		return "not in included ports"
	case SkipProtectedProcess:
		return "protected process"
	case SkipExcludedProcess:
		return "excluded process"
	case SkipExcludedCgroup:
		return "excluded cgroup"
	case SkipNotIncludedCgroup:
		return "not in included cgroups"
	case SkipReportOnly:
		return "report-only rule"
	}
	return fmt.Sprintf("skip(%d)", uint8(r))
}

// NoDeadline is Verdict.Deadline for a connection that never becomes hung:
// a state a sweep never destroys, or a closing state without a threshold.
const NoDeadline uint64 = 0

// Verdict is Decide's answer for one connection.
type Verdict struct {
	Action Action
	// Hung: the connection has been in a closing state for at least its
	// threshold (true for Destroy and for Skip).
	Hung bool
	// Skip is set when Action is Skip; SkipDetail then says which port or
	// process, e.g. "local port 22 is excluded".
	Skip       SkipReason
	SkipDetail string
	// Threshold for the connection's state; 0 when it has none.
	Threshold time.Duration
	// Age in the state; a lower bound when the Conn is not Exact.
	Age time.Duration
	// Deadline is when the connection becomes (or became) hung, CLOCK_BOOTTIME
	// ns: Entered + Threshold, saturating at math.MaxUint64. NoDeadline (0)
	// when it never does. A service can sleep until the earliest deadline.
	Deadline uint64
	// Rule names the configuration rule whose threshold and action
	// decided, "" for the command's own (the flags' thresholds).
	Rule string
	// Reason is one human line on the connection's age against its threshold,
	// e.g. "CLOSE_WAIT for 75.3s ≥ 60s threshold (peer closed; the
	// application never closed its socket)".
	Reason string
}

// why says, per closing state, what being stuck in it means.
var why = map[conn.State]string{
	conn.CloseWait: "peer closed; the application never closed its socket",
	conn.FinWait1:  "our FIN not acknowledged",
	conn.FinWait2:  "peer never sent its FIN",
	conn.Closing:   "simultaneous close, final ACK missing",
	conn.LastAck:   "final ACK from peer missing",
	conn.TimeWait:  "kept past its threshold",
}

const lowerBound = "age is a lower bound: the socket predates the tracker"

// Decide says what a sweep at now (CLOCK_BOOTTIME ns, like c.Entered) does
// with c. In order: a state that is never destroyed, or not hung yet (age <
// threshold), is ignored; a hung connection is skipped when its local or
// remote port is excluded, when included ports are set and neither port is
// among them, when its owner is protected, when its owner is excluded by
// name or by cgroup, or when included cgroups are set and its owner is in
// none of them; otherwise it is destroyed. An unknown owner (c.Owner nil,
// or empty comm) is not a reason to skip, unless included cgroups are set:
// unlike the scripts, hck-bpf destroys in the kernel and needs no process.
//
// With rules, the first rule that matches c (its owner, c.Owner, included)
// gives the threshold (its own for the state, else the policy's) and
// names itself in Verdict.Rule; a hung connection it matches is skipped as
// SkipReportOnly when its action is report, after every filter above.
// c must not be nil.
func (p *Policy) Decide(c *conn.Conn, now uint64) Verdict {
	v := Verdict{Age: ageAt(c, now)}
	var rule *Rule
	if len(p.Rules) > 0 {
		if rule = p.RuleFor(c); rule != nil {
			v.Rule = rule.Name
		}
	}
	th, ok := p.threshold(rule, c.State)
	if !ok {
		if c.State.Closing() {
			v.Reason = fmt.Sprintf("%s has no threshold: never destroyed", c.State)
		} else {
			v.Reason = fmt.Sprintf("%s is never destroyed", c.State)
		}
		return v
	}
	v.Threshold = th
	v.Deadline = deadlineOf(c.Entered, th)
	age, limit := FormatAge(v.Age, c.Exact), FormatThreshold(th)
	if v.Age < th {
		left := FormatAge(th-v.Age, true)
		if c.Exact {
			v.Reason = fmt.Sprintf("%s for %s < %s threshold (hung in %s)", c.State, age, limit, left)
		} else {
			v.Reason = fmt.Sprintf("%s for %s < %s threshold (hung in at most %s; %s)", c.State, age, limit, left, lowerBound)
		}
		return v
	}
	v.Hung = true
	if c.Exact {
		v.Reason = fmt.Sprintf("%s for %s ≥ %s threshold (%s)", c.State, age, limit, why[c.State])
	} else {
		v.Reason = fmt.Sprintf("%s for %s ≥ %s threshold (%s; %s)", c.State, age, limit, why[c.State], lowerBound)
	}
	v.Skip, v.SkipDetail = p.skip(c)
	if v.Skip == NotSkipped && rule != nil && rule.Action == RuleReport {
		v.Skip, v.SkipDetail = SkipReportOnly, "rule "+rule.Name+" reports only (action: report)"
	}
	if v.Skip != NotSkipped {
		v.Action = Skip
	} else {
		v.Action = Destroy
	}
	return v
}

// Due is Decide's Hung and Deadline without the rest of the verdict, and
// without its cost: no formatting, no allocation. A sweep checks every
// tracked socket with it and decides in full only on the hung ones.
//
// With rules, Due is called before the owners are known: it takes the
// smallest threshold among the rules that may match c with what is known
// (ports, remote address, namespace), so it is never later than Decide;
// Decide, with the owners, then says exactly.
func (p *Policy) Due(c *conn.Conn, now uint64) (hung bool, deadline uint64) {
	var th time.Duration
	var ok bool
	if len(p.Rules) == 0 {
		th, ok = p.Thresholds.For(c.State)
	} else {
		th, ok = p.earliest(c)
	}
	if !ok {
		return false, NoDeadline
	}
	return ageAt(c, now) >= th, deadlineOf(c.Entered, th)
}

// ageAt is c's age at now, saturating rather than wrapping when the two are
// more than 292 years apart.
func ageAt(c *conn.Conn, now uint64) time.Duration {
	if a := c.Age(now); a >= 0 {
		return a
	}
	return math.MaxInt64
}

// deadlineOf is entered + th, saturating at math.MaxUint64; th > 0, so it
// is never NoDeadline.
func deadlineOf(entered uint64, th time.Duration) uint64 {
	d := entered + uint64(th)
	if d < entered {
		return math.MaxUint64
	}
	return d
}

// skip applies the filters to a hung connection, in Decide's order.
func (p *Policy) skip(c *conn.Conn) (SkipReason, string) {
	lp, rp := c.Local.Port(), c.Remote.Port()
	switch {
	case slices.Contains(p.ExcludePorts, lp):
		return SkipExcludedPort, fmt.Sprintf("local port %d is excluded", lp)
	case slices.Contains(p.ExcludePorts, rp):
		return SkipExcludedPort, fmt.Sprintf("remote port %d is excluded", rp)
	case len(p.IncludePorts) > 0 && !slices.Contains(p.IncludePorts, lp) && !slices.Contains(p.IncludePorts, rp):
		return SkipNotIncluded, fmt.Sprintf("neither local port %d nor remote port %d is included", lp, rp)
	}
	if c.Owner == nil {
		if len(p.IncludeCgroups) > 0 {
			return SkipNotIncludedCgroup, "no known process holds it: --include-cgroups destroys only sockets whose owner's cgroup matches"
		}
		return NotSkipped, ""
	}
	return p.Spares(c.Owner)
}

// Spares says why the process o must not be touched, by the rules on
// processes (in Decide's order: protected, excluded by name, excluded by
// cgroup, not in the included cgroups); NotSkipped when none keeps it.
// Decide applies it to a hung connection's owner; --kill-process asks it
// again of the process it is about to signal.
func (p *Policy) Spares(o *conn.Owner) (SkipReason, string) {
	comm := strings.TrimRight(o.Comm, "\x00")
	if name, ok := protectedBy(comm); ok {
		d := fmt.Sprintf("process %s (pid %d) is protected", showComm(comm), o.PID)
		if name != comm {
			d += " as " + name
		}
		return SkipProtectedProcess, d
	}
	if name, ok := excludedBy(p.ExcludeProcesses, comm); ok {
		d := fmt.Sprintf("process %s (pid %d) is excluded", showComm(comm), o.PID)
		if name != comm {
			d += " as " + name
		}
		return SkipExcludedProcess, d
	}
	return p.sparesCgroup(o, comm)
}

// sparesCgroup applies the cgroup globs to o, whose comm is comm.
func (p *Policy) sparesCgroup(o *conn.Owner, comm string) (SkipReason, string) {
	if len(p.ExcludeCgroups) == 0 && len(p.IncludeCgroups) == 0 {
		return NotSkipped, ""
	}
	who := fmt.Sprintf("process %s (pid %d)", showComm(comm), o.PID)
	if o.Cgroup == "" {
		if len(p.ExcludeCgroups) > 0 {
			return SkipExcludedCgroup, who + ": cgroup unknown, kept: --exclude-cgroups cannot be checked"
		}
		return SkipNotIncludedCgroup, who + ": cgroup unknown, so not in --include-cgroups"
	}
	if g, ok := cgroupMatchedBy(p.ExcludeCgroups, o.Cgroup); ok {
		return SkipExcludedCgroup, fmt.Sprintf("%s is in cgroup %s, excluded by %s", who, showComm(o.Cgroup), showComm(g))
	}
	if len(p.IncludeCgroups) > 0 {
		if _, ok := cgroupMatchedBy(p.IncludeCgroups, o.Cgroup); !ok {
			return SkipNotIncludedCgroup, fmt.Sprintf("%s is in cgroup %s, which no --include-cgroups glob matches", who, showComm(o.Cgroup))
		}
	}
	return NotSkipped, ""
}

// showComm prints a comm as is when it is plain, quoted when it holds
// spaces or unprintable bytes (a comm is whatever the process set), so that
// details stay one unambiguous line.
func showComm(comm string) string {
	if !utf8.ValidString(comm) {
		return strconv.Quote(comm)
	}
	for _, r := range comm {
		if r == ' ' || !strconv.IsPrint(r) {
			return strconv.Quote(comm)
		}
	}
	return comm
}
