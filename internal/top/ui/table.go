package ui

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/top"
)

// Column is a column of the candidates table, the sort key.
type Column int

// The candidates table's columns, in screen order.
const (
	ColState Column = iota
	ColLocal
	ColRemote
	ColOwner
	ColNetns
	ColAge
	ColLeft
	numColumns
)

var columnNames = [numColumns]string{"state", "local", "remote", "owner", "netns", "age", "left"}

func (c Column) String() string {
	if c >= 0 && c < numColumns {
		return columnNames[c]
	}
	return fmt.Sprintf("column(%d)", int(c))
}

// Sort is the candidates' order: a column, ascending unless Desc.
type Sort struct {
	Col  Column
	Desc bool
}

// DefaultSort is soonest deadline first.
var DefaultSort = Sort{Col: ColLeft}

func (s Sort) String() string {
	if s.Desc {
		return s.Col.String() + ",desc"
	}
	return s.Col.String()
}

// ParseSort reads --sort: COLUMN[,asc|,desc], COLUMN one of state, local,
// remote, owner, netns, age, left (any case).
func ParseSort(v string) (Sort, error) {
	name, order, _ := strings.Cut(strings.TrimSpace(v), ",")
	s := Sort{Col: -1}
	for i, n := range columnNames {
		if strings.EqualFold(strings.TrimSpace(name), n) {
			s.Col = Column(i)
		}
	}
	if s.Col < 0 {
		return s, fmt.Errorf("unknown column %q: want one of %s", name, strings.Join(columnNames[:], ", "))
	}
	switch strings.ToLower(strings.TrimSpace(order)) {
	case "", "asc":
	case "desc":
		s.Desc = true
	default:
		return s, fmt.Errorf("unknown order %q: want asc or desc", order)
	}
	return s, nil
}

// never sorts after every countdown: excluded candidates and states
// without a threshold.
const never = time.Duration(1<<63 - 1)

// leftKey is a candidate's countdown as a sort key.
func leftKey(c *top.Candidate) time.Duration {
	if c.Excluded != "" || c.Threshold <= 0 {
		return never
	}
	return c.Left
}

// compare orders two candidates by column col (ascending); ties are
// broken by the caller.
func compare(col Column, a, b *top.Candidate) int {
	switch col {
	case ColState:
		return cmp.Compare(a.Conn.State.String(), b.Conn.State.String())
	case ColLocal:
		return a.Conn.Local.Compare(b.Conn.Local)
	case ColRemote:
		return a.Conn.Remote.Compare(b.Conn.Remote)
	case ColOwner:
		return cmp.Compare(Owner(&a.Conn), Owner(&b.Conn))
	case ColNetns:
		if c := cmp.Compare(a.Conn.NetNSName, b.Conn.NetNSName); c != 0 {
			return c
		}
		return cmp.Compare(a.Conn.NetNS, b.Conn.NetNS)
	case ColAge:
		return cmp.Compare(a.Age, b.Age)
	case ColLeft:
		return cmp.Compare(leftKey(a), leftKey(b))
	}
	return 0
}

// Sorted returns the candidates in order s, ties by cookie (ascending
// whatever the order, so that equal rows never swap between refreshes).
func Sorted(cands []top.Candidate, s Sort) []top.Candidate {
	out := slices.Clone(cands)
	slices.SortStableFunc(out, func(a, b top.Candidate) int {
		c := compare(s.Col, &a, &b)
		if s.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
		return cmp.Compare(a.Conn.Cookie, b.Conn.Cookie)
	})
	return out
}

// Matches reports whether a candidate matches a filter: a case-insensitive
// substring of its state, addresses, owner or namespace. An empty filter
// matches everything.
func Matches(c *top.Candidate, filter string) bool {
	f := strings.ToLower(strings.TrimSpace(filter))
	if f == "" {
		return true
	}
	for _, field := range []string{c.Conn.State.String(), c.Conn.Local.String(), c.Conn.Remote.String(),
		Owner(&c.Conn), Netns(&c.Conn), fmt.Sprint(c.Conn.NetNS)} {
		if strings.Contains(strings.ToLower(field), f) {
			return true
		}
	}
	return false
}

// Filtered returns the candidates that match filter.
func Filtered(cands []top.Candidate, filter string) []top.Candidate {
	var out []top.Candidate
	for i := range cands {
		if Matches(&cands[i], filter) {
			out = append(out, cands[i])
		}
	}
	return out
}
