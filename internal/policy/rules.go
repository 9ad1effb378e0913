package policy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// RuleAction is what a rule does with the hung connections it matches.
type RuleAction uint8

const (
	// RuleDestroy destroys them (the zero value, the default).
	RuleDestroy RuleAction = iota
	// RuleReport reports them (logged, counted as skipped) and never
	// destroys them.
	RuleReport
)

func (a RuleAction) String() string {
	if a == RuleReport {
		return "report"
	}
	return "destroy"
}

// ParseRuleAction reads "destroy" or "report".
func ParseRuleAction(s string) (RuleAction, error) {
	switch s {
	case "destroy":
		return RuleDestroy, nil
	case "report":
		return RuleReport, nil
	}
	return 0, fmt.Errorf("invalid action %q: want destroy or report", s)
}

// Rule gives the connections it matches their own thresholds and action.
// Its matchers are ANDed: a connection matches when every matcher given
// matches it (a rule with none matches every connection). The first rule
// of Policy.Rules that matches decides; a connection no rule matches gets
// the policy's own thresholds and is destroyed.
type Rule struct {
	Name string
	// Ports matches a connection whose local or remote port is listed.
	Ports []uint16
	// CIDRs matches a connection whose remote address is in one of them.
	CIDRs []netip.Prefix
	// Processes matches a connection whose owner's comm one of these names
	// matches (CommMatches); a connection without a known owner never.
	Processes []string
	// Cgroups matches a connection whose owner's cgroup, or one above it,
	// one of these globs matches (CgroupMatches); without a known owner
	// or cgroup, never.
	Cgroups []string
	// NetNS matches a connection of a network namespace named by one of
	// these: an inode number, or a path.Match glob for the namespace's
	// readable name (internal/scope: an ip netns name, pod:<uid>,
	// container:<id>).
	NetNS []string
	// Thresholds for the states set (> 0); the others inherit the
	// policy's.
	Thresholds Thresholds
	Action     RuleAction
}

// CheckRuleName holds the rules a rule's name obeys: letters, digits and
// . _ - only (it names the rule in logs and in metric labels), and not
// "default", which names the command's own thresholds.
func CheckRuleName(n string) error {
	switch {
	case n == "":
		return fmt.Errorf("invalid rule name %q: empty", n)
	case n == "default":
		return fmt.Errorf("invalid rule name %q: it names the thresholds outside every rule", n)
	case strings.ContainsFunc(n, func(r rune) bool {
		return r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-')
	}):
		return fmt.Errorf("invalid rule name %q: want letters, digits, '.', '_' and '-' only", n)
	}
	return nil
}

// ParseNetNSMatch checks one namespace matcher of a rule: an inode
// number, or a glob for a readable name.
func ParseNetNSMatch(s string) (string, error) {
	t := strings.TrimSpace(s)
	switch {
	case t == "":
		return "", fmt.Errorf("invalid namespace %q: empty", s)
	case allDigits(t):
		if n, err := strconv.ParseUint(t, 10, 32); err != nil || n == 0 {
			return "", fmt.Errorf("invalid namespace inode %q: want a number from 1 to 4294967295", s)
		}
		return t, nil
	case strings.ContainsFunc(t, unicode.IsControl):
		return "", fmt.Errorf("invalid namespace %q: contains a control character", s)
	}
	if _, err := path.Match(t, ""); err != nil {
		return "", fmt.Errorf("invalid namespace glob %q: %w", s, err)
	}
	return t, nil
}

// ParseCIDR reads a remote-address matcher: a prefix (10.0.0.0/8,
// fd00::/8) or one address (its /32 or /128).
func ParseCIDR(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	if strings.Contains(t, "/") {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want an address/bits prefix such as 10.0.0.0/8 or fd00::/8", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(t)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want an address/bits prefix such as 10.0.0.0/8 or fd00::/8", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// SortPrefixes sorts ps by address, then prefix length, and drops the
// duplicates: one order for every list of prefixes (rules, kill's peers).
func SortPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(ps)
}

// Validate reports the first problem of r: a bad name or matcher, a
// threshold out of range.
func (r *Rule) Validate() error {
	if err := CheckRuleName(r.Name); err != nil {
		return err
	}
	if slices.Contains(r.Ports, 0) {
		return fmt.Errorf("rule %s: invalid port 0: want a number from 1 to 65535", r.Name)
	}
	for _, n := range r.Processes {
		if err := checkName(n); err != nil {
			return fmt.Errorf("rule %s: %w", r.Name, err)
		}
	}
	for _, g := range r.Cgroups {
		if err := checkGlob(g); err != nil {
			return fmt.Errorf("rule %s: %w", r.Name, err)
		}
	}
	for _, n := range r.NetNS {
		if _, err := ParseNetNSMatch(n); err != nil {
			return fmt.Errorf("rule %s: %w", r.Name, err)
		}
	}
	for _, s := range conn.ClosingStates {
		if d := *r.Thresholds.field(s); d != 0 {
			if err := checkThreshold(s, d); err != nil {
				return fmt.Errorf("rule %s: %w", r.Name, err)
			}
		}
	}
	if r.Action > RuleReport {
		return fmt.Errorf("rule %s: invalid action %d", r.Name, r.Action)
	}
	return nil
}

// ownerMatchers reports whether r needs the owner to match: only a sweep
// that read the owners can tell.
func (r *Rule) ownerMatchers() bool { return len(r.Processes) > 0 || len(r.Cgroups) > 0 }

// matchesKnown applies the matchers that need no owner: ports, CIDRs,
// namespaces.
func (r *Rule) matchesKnown(c *conn.Conn) bool {
	if len(r.Ports) > 0 && !slices.Contains(r.Ports, c.Local.Port()) && !slices.Contains(r.Ports, c.Remote.Port()) {
		return false
	}
	if len(r.CIDRs) > 0 {
		a := c.Remote.Addr()
		in := false
		for _, p := range r.CIDRs {
			b := a
			if p.Addr().Is4() && b.Is4In6() {
				b = b.Unmap()
			}
			if p.Contains(b) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if len(r.NetNS) > 0 && !r.matchesNetNS(c) {
		return false
	}
	return true
}

func (r *Rule) matchesNetNS(c *conn.Conn) bool {
	for _, m := range r.NetNS {
		if allDigits(m) {
			if n, err := strconv.ParseUint(m, 10, 32); err == nil && uint32(n) == c.NetNS {
				return true
			}
			continue
		}
		if c.NetNSName != "" {
			if ok, _ := path.Match(m, c.NetNSName); ok {
				return true
			}
		}
	}
	return false
}

// matchesOwner applies the matchers on the owner o (nil: unknown).
func (r *Rule) matchesOwner(o *conn.Owner) bool {
	if !r.ownerMatchers() {
		return true
	}
	if o == nil {
		return false
	}
	if len(r.Processes) > 0 {
		if _, ok := excludedBy(r.Processes, o.Comm); !ok {
			return false
		}
	}
	if len(r.Cgroups) > 0 {
		if _, ok := cgroupMatchedBy(r.Cgroups, o.Cgroup); !ok {
			return false
		}
	}
	return true
}

// Matches reports whether every matcher of r matches c, its owner
// (c.Owner) included.
func (r *Rule) Matches(c *conn.Conn) bool { return r.matchesKnown(c) && r.matchesOwner(c.Owner) }

// threshold is the threshold r gives state s, inheriting def's.
func (r *Rule) threshold(s conn.State, def *Thresholds) (time.Duration, bool) {
	if d, ok := r.Thresholds.For(s); ok {
		return d, true
	}
	return def.For(s)
}

// RuleFor returns the first rule that matches c, its owner included; nil
// when none does.
func (p *Policy) RuleFor(c *conn.Conn) *Rule {
	for i := range p.Rules {
		if p.Rules[i].Matches(c) {
			return &p.Rules[i]
		}
	}
	return nil
}

// threshold is the threshold of c's state under the rule that decides it
// (nil: the policy's own).
func (p *Policy) threshold(r *Rule, s conn.State) (time.Duration, bool) {
	if r == nil {
		return p.Thresholds.For(s)
	}
	return r.threshold(s, &p.Thresholds)
}

// earliest is the smallest threshold c's state may have, with c's owner
// not known yet: the first rule whose known matchers match c decides if
// it needs no owner; a rule that needs one may or may not match, so its
// threshold counts and the search goes on. A socket that cannot have an
// owner (timewait, orphan) matches no rule that needs one.
func (p *Policy) earliest(c *conn.Conn) (time.Duration, bool) {
	var best time.Duration
	found := false
	take := func(d time.Duration, ok bool) {
		if ok && (!found || d < best) {
			best, found = d, true
		}
	}
	owned := c.MayHaveOwner()
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.matchesKnown(c) {
			continue
		}
		if !r.ownerMatchers() {
			take(r.threshold(c.State, &p.Thresholds))
			return best, found
		}
		if owned {
			take(r.threshold(c.State, &p.Thresholds))
		}
	}
	take(p.Thresholds.For(c.State))
	return best, found
}

// MinThresholds is, per closing state, the smallest threshold any
// connection may have: the policy's own or one of a rule's. The service's
// kernel wakes use it, so that a rule's short threshold wakes it on time.
func (p *Policy) MinThresholds() Thresholds {
	t := p.Thresholds
	for i := range p.Rules {
		for _, s := range conn.ClosingStates {
			if d, ok := p.Rules[i].Thresholds.For(s); ok {
				if f := t.field(s); *f <= 0 || d < *f {
					*f = d
				}
			}
		}
	}
	return t
}

// UsesNetNSNames reports whether a rule matches namespaces by name: the
// sweep must then give every connection its namespace's name before Due.
func (p *Policy) UsesNetNSNames() bool {
	for i := range p.Rules {
		for _, m := range p.Rules[i].NetNS {
			if !allDigits(m) {
				return true
			}
		}
	}
	return false
}

// String describes r in one line, for logs and diffs.
func (r *Rule) String() string {
	var parts []string
	if len(r.Ports) > 0 {
		ps := make([]string, len(r.Ports))
		for i, p := range r.Ports {
			ps[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, "ports="+strings.Join(ps, ","))
	}
	if len(r.CIDRs) > 0 {
		cs := make([]string, len(r.CIDRs))
		for i, p := range r.CIDRs {
			cs[i] = p.String()
		}
		parts = append(parts, "cidrs="+strings.Join(cs, ","))
	}
	if len(r.Processes) > 0 {
		parts = append(parts, "processes="+FormatNames(r.Processes))
	}
	if len(r.Cgroups) > 0 {
		parts = append(parts, "cgroups="+FormatNames(r.Cgroups))
	}
	if len(r.NetNS) > 0 {
		parts = append(parts, "netns="+FormatNames(r.NetNS))
	}
	for _, s := range conn.ClosingStates {
		if d, ok := r.Thresholds.For(s); ok {
			parts = append(parts, s.String()+"="+FormatThreshold(d))
		}
	}
	parts = append(parts, "action="+r.Action.String())
	return strings.Join(parts, " ")
}
