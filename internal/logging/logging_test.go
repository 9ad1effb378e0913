package logging

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
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

// syncBuffer is a bytes.Buffer safe to read while the flush timer writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBufferedFlushes(t *testing.T) {
	var b syncBuffer
	log, out, err := New(&b, Options{Format: JSON, Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("one")
	if b.String() != "" {
		t.Fatalf("buffered line written at once: %q", b.String())
	}
	deadline := time.Now().Add(10 * FlushDelay)
	for !strings.Contains(b.String(), `"one"`) {
		if time.Now().After(deadline) {
			t.Fatalf("line not written %s after it was logged", 10*FlushDelay)
		}
		time.Sleep(FlushDelay / 10)
	}
	// A full buffer is written without waiting; close writes the rest.
	n := 2 * bufSize / len(`{"level":"info","time":"2006-01-02T15:04:05.999999999Z","message":"two"}`)
	for range n {
		log.Info().Msg("two")
	}
	if got := strings.Count(b.String(), `"two"`); got == 0 || got == n {
		t.Errorf("after %d lines %d were written: want a full buffer's worth", n, got)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(b.String(), `"two"`); got != n {
		t.Errorf("after close %d of %d lines were written", got, n)
	}
}
