package ui

import (
	"fmt"
	"strings"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/top"
)

// elapsed is how long after the snapshot's time now is (never negative): a
// candidate's age grows and its countdown shrinks by it between refreshes.
func elapsed(s *top.Snapshot, now time.Time) time.Duration {
	if s.At.IsZero() || now.Before(s.At) {
		return 0
	}
	return now.Sub(s.At)
}

// PeersAge says how old the peers' connection counts are at now (they are
// counted by a full dump, every top.PeersEvery or less often):
// "(counted 4s ago)", "(not counted yet)".
func PeersAge(s *top.Snapshot, now time.Time) string {
	if s.PeersAt.IsZero() {
		return "(not counted yet)"
	}
	d := max(0, s.At.Sub(s.PeersAt)+elapsed(s, now)).Truncate(time.Second)
	if d < time.Second {
		return "(counted just now)"
	}
	return "(counted " + Short(d) + " ago)"
}

// AgeAt is a candidate's age at now, d after its snapshot was taken.
func AgeAt(c *top.Candidate, d time.Duration) time.Duration { return c.Age + d }

// LeftAt is a candidate's time left before it is hung, d after its
// snapshot was taken (<= 0: hung).
func LeftAt(c *top.Candidate, d time.Duration) time.Duration { return c.Left - d }

// Countdown is the LEFT column: "in 45s", "now", "overdue 12s", "-" for a
// state without a threshold, or "excluded: reason".
func Countdown(c *top.Candidate, d time.Duration) string {
	switch {
	case c.Excluded != "":
		return "excluded: " + strings.TrimPrefix(c.Excluded, "excluded ")
	case c.Threshold <= 0:
		return "-"
	}
	left := LeftAt(c, d)
	switch {
	case left > 0:
		return "in " + Short(ceilSecond(left))
	case left > -time.Second:
		return "now"
	}
	return "overdue " + Short(-left)
}

// ceilSecond rounds d up to a whole second, so a countdown reaches 0s only
// when the time is up.
func ceilSecond(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		return d - r + time.Second
	}
	return d
}

// Short renders a countdown or an age of a kill to the second: 45s, 4m05s,
// 2h03m, 3d04h. Negative durations render as 0s.
func Short(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Truncate(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%02dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

// Rate renders a per-second rate; "-" when it is unknown (the first
// snapshot has no interval).
func Rate(v float64, known bool) string {
	switch {
	case !known:
		return "-"
	case v <= 0:
		return "0/s"
	case v < 10:
		return fmt.Sprintf("%.1f/s", v)
	case v < 10000:
		return fmt.Sprintf("%.0f/s", v)
	}
	return fmt.Sprintf("%.1fk/s", v/1000)
}

// Age is the AGE column: the project's age format, "≥" when a lower bound.
func Age(c *top.Candidate, d time.Duration) string {
	return policy.FormatAge(AgeAt(c, d), c.Conn.Exact)
}

// Owner is "comm[pid]", or "-" when no process is known to hold it.
func Owner(c *conn.Conn) string {
	if c.Owner == nil || c.Owner.PID == 0 {
		if c.Owner != nil && c.Owner.Comm != "" {
			return c.Owner.Comm
		}
		return "-"
	}
	return fmt.Sprintf("%s[%d]", c.Owner.Comm, c.Owner.PID)
}

// Netns is a namespace's name, or its inode when it has none.
func Netns(c *conn.Conn) string {
	if c.NetNSName != "" {
		return c.NetNSName
	}
	if c.NetNS == 0 {
		return "-"
	}
	return fmt.Sprintf("%d", c.NetNS)
}

// Reason is the details view's reason line: why the candidate will, or
// will not, be destroyed, and when.
func Reason(c *top.Candidate, d time.Duration) string {
	st := c.Conn.State
	rule := ""
	if c.Rule != "" {
		rule = " (rule " + c.Rule + ")"
	}
	switch {
	case c.Excluded != "":
		return fmt.Sprintf("%s for %s: never destroyed: %s", st, Age(c, d), c.Excluded)
	case c.Threshold <= 0:
		return fmt.Sprintf("%s has no threshold%s: never destroyed", st, rule)
	}
	th := policy.FormatThreshold(c.Threshold)
	if left := LeftAt(c, d); left > 0 {
		bound := ""
		if !c.Conn.Exact {
			bound = " at most"
		}
		return fmt.Sprintf("%s for %s < %s threshold%s: hung in%s %s, then destroyed at the service's next sweep",
			st, Age(c, d), th, rule, bound, Short(ceilSecond(left)))
	}
	return fmt.Sprintf("%s for %s ≥ %s threshold%s: hung, destroyed at the service's next sweep", st, Age(c, d), th, rule)
}
