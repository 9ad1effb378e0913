package ui

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"github.com/hck-bpf/hck-bpf/internal/top"
)

var update = flag.Bool("update", false, "rewrite the golden screens in testdata/")

// golden compares a screen with testdata/name.golden (-update rewrites it).
func golden(t *testing.T, name, screen string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(screen), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if string(want) != screen {
		t.Errorf("%s differs from %s (rerun with -update if intended)\n--- got\n%s\n--- want\n%s", name, path, screen, want)
	}
}

// plain is a screen without its escape codes (bold, reverse), each line
// checked to fit the width and the whole to be exactly the height.
func plain(t *testing.T, m *Model, w, h int) string {
	t.Helper()
	out := m.View().Content
	lines := strings.Split(out, "\n")
	if len(lines) != h {
		t.Errorf("%d×%d: %d lines, want %d", w, h, len(lines), h)
	}
	for i, l := range lines {
		if n := ansi.StringWidth(l); n > w {
			t.Errorf("%d×%d: line %d is %d wide: %q", w, h, i, n, ansi.Strip(l))
		}
	}
	return ansi.Strip(out)
}

func TestGoldenScreens(t *testing.T) {
	for _, tc := range []struct {
		name string
		w, h int
		keys []string
		opts Options
		snap func() top.Snapshot
	}{
		{name: "80x24", w: 80, h: 24},
		{name: "120x40", w: 120, h: 40, opts: Options{AllowKill: true, SynAlarm: 10}, snap: func() top.Snapshot {
			s := fixture()
			s.Syn.Alarm = true
			return s
		}},
		{name: "tiny-40x10", w: 40, h: 10},
		{name: "80x24-help", w: 80, h: 24, keys: []string{"?"}},
		{name: "80x24-details", w: 80, h: 24, keys: []string{"down", "down", "enter"}},
		{name: "80x24-filter-sort", w: 80, h: 24, keys: []string{"/", "w", "e", "b", "enter", "s", "s", "s", "s", "s", "S"}},
		{name: "100x30-empty", w: 100, h: 30, snap: func() top.Snapshot { return top.Snapshot{At: t0, Namespaces: 1} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := fixture()
			if tc.snap != nil {
				snap = tc.snap()
			}
			tc.opts.Host = "host1"
			m, _ := newTest(snap, tc.w, tc.h, tc.opts)
			press(m, tc.keys...)
			golden(t, tc.name, plain(t, m, tc.w, tc.h))
		})
	}
}

// sgrColour matches an SGR sequence that sets a colour (30-37, 38;…,
// 40-47, 48;…, 90-97, 100-107).
var sgrColour = regexp.MustCompile(`\x1b\[[0-9;]*(?:^|;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])(?:;[0-9;]*)?m`)

// TestNoColor: with NoColor the screen carries no colour at all (bold
// and reverse remain, so the selection and the alarm still show); with
// colour, it does.
func TestNoColor(t *testing.T) {
	s := fixture()
	s.Syn.Alarm = true
	for _, noColor := range []bool{true, false} {
		m, _ := newTest(s, 120, 40, Options{})
		m.st = newStyles(noColor)
		out := m.View().Content
		if got := sgrColour.MatchString(out); got == noColor {
			t.Errorf("NoColor %v: colour escapes present = %v: %q", noColor, got, sgrColour.FindString(out))
		}
		if !strings.Contains(out, "\x1b[") {
			t.Errorf("NoColor %v: no escape at all: the selection is not shown", noColor)
		}
	}
}
