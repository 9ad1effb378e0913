package policy

import (
	"math"
	"testing"
	"time"
)

func TestFormatAge(t *testing.T) {
	tests := []struct {
		d     time.Duration
		exact bool
		want  string
	}{
		{0, true, "0.000s"},
		{999 * time.Microsecond, true, "0.000s"},
		{250 * time.Millisecond, true, "0.250s"},
		{999999999, true, "0.999s"},
		{time.Second, true, "1.0s"},
		{75300 * time.Millisecond, true, "75.3s"},
		{75399 * time.Millisecond, true, "75.3s"}, // truncated, never rounded up
		{59999 * time.Millisecond, true, "59.9s"},
		{60 * time.Second, true, "60.0s"},
		{125300 * time.Millisecond, true, "125.3s"},
		{10*time.Minute - 1, true, "599.9s"},
		{10 * time.Minute, true, "10m00s"},
		{12*time.Minute + 5*time.Second + 900*time.Millisecond, true, "12m05s"},
		{time.Hour - 1, true, "59m59s"},
		{time.Hour, true, "1h00m00s"},
		{3*time.Hour + 2*time.Minute + 5*time.Second, true, "3h02m05s"},
		{24*time.Hour - 1, true, "23h59m59s"},
		{24 * time.Hour, true, "1d00h00m"},
		{51*time.Hour + 4*time.Minute + 59*time.Second, true, "2d03h04m"},
		{400 * 24 * time.Hour, true, "400d00h00m"},
		{75300 * time.Millisecond, false, "≥75.3s"},
		{3 * 24 * time.Hour, false, "≥3d00h00m"},
		{-1500 * time.Millisecond, true, "-1.5s"},
		{math.MinInt64, true, "-106751d23h47m"},
		{math.MaxInt64, true, "106751d23h47m"},
	}
	for _, tc := range tests {
		if got := FormatAge(tc.d, tc.exact); got != tc.want {
			t.Errorf("FormatAge(%v, %v) = %q, want %q", tc.d, tc.exact, got, tc.want)
		}
	}
}

func TestFormatThreshold(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{60 * time.Second, "60s"},
		{120 * time.Second, "120s"},
		{1500 * time.Millisecond, "1.5s"},
		{250 * time.Millisecond, "0.25s"},
		{500 * time.Microsecond, "0.0005s"},
		{time.Nanosecond, "0.000000001s"},
		{599 * time.Second, "599s"},
		{10 * time.Minute, "10m"},
		{15 * time.Minute, "15m"},
		{90 * time.Minute, "1h30m"},
		{time.Hour, "1h"},
		{time.Hour + 5*time.Second, "1h0m5s"},
		{10*time.Minute + 500*time.Millisecond, "10m0.5s"},
		{48 * time.Hour, "48h"},
		{MaxDuration, "876000h"},
		{-60 * time.Second, "-60s"},
	}
	for _, tc := range tests {
		got := FormatThreshold(tc.d)
		if got != tc.want {
			t.Errorf("FormatThreshold(%v) = %q, want %q", tc.d, got, tc.want)
		}
		if tc.d <= 0 {
			continue
		}
		if back, err := ParseDuration(got); err != nil || back != tc.d {
			t.Errorf("ParseDuration(FormatThreshold(%v) = %q) = %v, %v", tc.d, got, back, err)
		}
	}
}
