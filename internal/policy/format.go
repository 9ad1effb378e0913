package policy

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// FormatAge renders an age compactly, always truncated (never rounded up), so
// that a shown age is never more than the real one and "60.0s ≥ 60s" is true
// whenever it is printed:
//
//	< 1s      0.250s
//	< 10m     75.3s, 599.9s   (seconds, so they compare at a glance with
//	                           thresholds, which are printed in seconds)
//	< 1h      12m05s
//	< 24h     3h02m05s
//	≥ 24h     2d03h04m
//
// When exact is false the age is a lower bound and is prefixed with "≥".
// Negative durations (an overdue "time left") get a leading "-".
func FormatAge(d time.Duration, exact bool) string {
	s := formatAge(d)
	if !exact {
		return "≥" + s
	}
	return s
}

func formatAge(d time.Duration) string {
	if d < 0 {
		if d == math.MinInt64 {
			d++
		}
		return "-" + formatAge(-d)
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("0.%03ds", d/time.Millisecond)
	case d < 10*time.Minute:
		return fmt.Sprintf("%d.%ds", d/time.Second, d%time.Second/(100*time.Millisecond))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm%02ds", d/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second)
	}
	day := 24 * time.Hour
	return fmt.Sprintf("%dd%02dh%02dm", d/day, d%day/time.Hour, d%time.Hour/time.Minute)
}

// FormatThreshold renders a threshold exactly, in a form ParseDuration reads
// back to the same value: whole or decimal seconds below ten minutes ("60s",
// "120s", "1.5s", "0.25s"), otherwise a Go duration without trailing zero
// units ("15m", "1h30m", "1h0m5s").
func FormatThreshold(d time.Duration) string {
	if d < 0 {
		if d == math.MinInt64 {
			return d.String()
		}
		return "-" + FormatThreshold(-d)
	}
	if d < 10*time.Minute {
		sec, ns := d/time.Second, d%time.Second
		if ns == 0 {
			return fmt.Sprintf("%ds", sec)
		}
		return fmt.Sprintf("%d.%ss", sec, strings.TrimRight(fmt.Sprintf("%09d", ns), "0"))
	}
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}
