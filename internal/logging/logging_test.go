package logging

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestTextLinesAreTheScripts(t *testing.T) {
	var b bytes.Buffer
	log, _, err := New(&b, Options{Format: Text})
	if err != nil {
		t.Fatal(err)
	}
	log.Warn().Str("state", "CLOSE_WAIT").Msg("Hung connection detected: tcp CLOSE_WAIT a -> b")
	log.Info().Bool(Human, true).Msg("Summary:")
	log.Debug().Msg("hidden without -v")
	log.Info().Bool(Machine, true).Msg("for programs only")
	want := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - (WARN|INFO) - (Hung connection detected: tcp CLOSE_WAIT a -> b|Summary:)$`)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), b.String())
	}
	for _, l := range lines {
		if !want.MatchString(l) {
			t.Errorf("line %q is not in the scripts' form", l)
		}
	}
}

func TestJSONLeavesOutHumanLines(t *testing.T) {
	var b bytes.Buffer
	log, _, err := New(&b, Options{Format: JSON})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Bool(Human, true).Msg("====")
	log.Info().Int("scanned", 3).Msg("summary")
	out := b.String()
	if strings.Contains(out, "====") || !strings.Contains(out, `"scanned":3`) || strings.Count(out, "\n") != 1 {
		t.Fatalf("json output %q: want only the structured event", out)
	}
}

func TestBadFormat(t *testing.T) {
	if _, _, err := New(&bytes.Buffer{}, Options{Format: "xml"}); err == nil {
		t.Fatal("format xml accepted")
	}
}
