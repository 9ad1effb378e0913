package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// The results: one table per socket count, one for the single-size rows.
// Each row: what is measured, hck-bpf's figure, the comparison's, their
// ratio, the target and whether it is met (PASS/MISS; empty when the row
// only informs).

type row struct {
	What, Hck, Cmp, Ratio, Target, Result string
}

type table struct {
	Title string
	Rows  []row
	Notes []string
}

func (t *table) add(r row)                    { t.Rows = append(t.Rows, r) }
func (t *table) note(format string, a ...any) { t.Notes = append(t.Notes, fmt.Sprintf(format, a...)) }
func (t *table) info(what, hck, cmp, ratio string) {
	t.add(row{What: what, Hck: hck, Cmp: cmp, Ratio: ratio})
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// legend says how to read the ratio column.
const legend = "ratio: comparison ÷ hck-bpf for times, hck-bpf ÷ comparison for rates (above 1: hck-bpf ahead); " +
	"the flat-sweep row: this size ÷ the first size (1: flat)"

// targetSummary counts the checked targets and names the missed ones.
func targetSummary(tables []*table) string {
	var checked int
	var missed []string
	for _, t := range tables {
		for _, r := range t.Rows {
			switch r.Result {
			case "PASS":
				checked++
			case "MISS":
				checked++
				what := r.What
				if t.Title != singleTitle {
					what += " [" + strings.SplitN(t.Title, ":", 2)[0] + "]"
				}
				missed = append(missed, what)
			}
		}
	}
	if len(missed) == 0 {
		return fmt.Sprintf("Targets: all %d met.", checked)
	}
	return fmt.Sprintf("Targets: %d of %d met; missed:\n  - %s", checked-len(missed), checked, strings.Join(missed, "\n  - "))
}

var header = row{"what", "hck-bpf", "comparison", "ratio", "target", "result"}

func cells(r row) []string { return []string{r.What, r.Hck, r.Cmp, r.Ratio, r.Target, r.Result} }

// renderText prints every table with one set of column widths.
func renderText(w io.Writer, tables []*table) {
	width := make([]int, 6)
	for _, t := range tables {
		for _, r := range append([]row{header}, t.Rows...) {
			for i, c := range cells(r) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	line := func(r row) {
		var b strings.Builder
		for i, c := range cells(r) {
			b.WriteString(c)
			if i < 5 {
				b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	total := 10
	for _, x := range width {
		total += x
	}
	for _, t := range tables {
		fmt.Fprintf(w, "\n%s\n", t.Title)
		line(header)
		fmt.Fprintln(w, strings.Repeat("-", total))
		for _, r := range t.Rows {
			line(r)
		}
		for _, n := range t.Notes {
			fmt.Fprintf(w, "  * %s\n", n)
		}
	}
}

// renderMarkdown writes the same tables as Markdown.
func renderMarkdown(w io.Writer, tables []*table) {
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, t := range tables {
		fmt.Fprintf(w, "\n**%s**\n\n", esc(t.Title))
		fmt.Fprintln(w, "| "+strings.Join(cells(header), " | ")+" |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, r := range t.Rows {
			cs := cells(r)
			for i := range cs {
				cs[i] = esc(cs[i])
				if cs[i] == "" {
					cs[i] = " "
				}
			}
			fmt.Fprintln(w, "| "+strings.Join(cs, " | ")+" |")
		}
		if len(t.Notes) > 0 {
			fmt.Fprintln(w)
			for _, n := range t.Notes {
				fmt.Fprintf(w, "- %s\n", esc(n))
			}
		}
	}
}

// Formatting.

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

func fmtRatio(x float64) string {
	switch {
	case math.IsInf(x, 0) || math.IsNaN(x):
		return "-"
	case x >= 100:
		return fmt.Sprintf("%.0f×", x)
	case x >= 10:
		return fmt.Sprintf("%.1f×", x)
	default:
		return fmt.Sprintf("%.2f×", x)
	}
}

func fmtBytes(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func fmtRate(perSec float64) string {
	if perSec >= 1000 {
		return fmt.Sprintf("%.1fk/s", perSec/1000)
	}
	return fmt.Sprintf("%.0f/s", perSec)
}

func fmtCount(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Statistics.

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

func minmax(ds []time.Duration) (time.Duration, time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return lo, hi
}
