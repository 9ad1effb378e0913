package logging

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// events are zerolog's own output for the shapes hck-bpf logs.
func events(t testing.TB) [][]byte {
	var b bytes.Buffer
	log := zerolog.New(&b).With().Timestamp().Logger()
	log.Warn().Str("state", "CLOSE_WAIT").Str("local", "127.0.0.1:80").Uint64("cookie", 42).Float64("age_s", 1.5).
		Bool("age_exact", true).Int("pid", 7).Str("process", "nginx \"x\"\t").Str("action", "detect").
		Msgf("Hung connection detected: tcp CLOSE_WAIT 127.0.0.1:80 -> 10.0.0.1:5 (PID: 7, Process: nginx)")
	log.Warn().Bool(Human, true).Msg("  Reason: CLOSE_WAIT for 1.5s ≥ 1s threshold")
	log.Error().Err(errors.New("destroy x: no such file")).Str("action", "failed").Msg("Failed to terminate: x")
	log.Info().Bool(Machine, true).Int("scanned", 3).Dur("took", 5).Msg("Summary")
	log.Info().Strs("list", []string{"a", "b}"}).Interface("obj", map[string]any{"k": []int{1, 2}}).Msg("nested {}")
	log.Info().Msg("")
	log.Info().Msg("\x01 control, é, \xff invalid")
	log.Debug().Str("skip", "excluded port").Msg("Skipping x")
	return bytes.SplitAfter(bytes.TrimSuffix(b.Bytes(), []byte("\n")), []byte("\n"))
}

// TestFastTextMatchesSlow: the fast renderer writes exactly what decoding
// the whole event writes, or declines.
func TestFastTextMatchesSlow(t *testing.T) {
	declined := 0
	for _, ev := range events(t) {
		fast, ok := fastText(ev, nil)
		slow, sok := slowText(ev)
		if !ok {
			declined++
			continue
		}
		if !sok || !bytes.Equal(fast, slow) {
			t.Errorf("event %s\nfast %q\nslow %q (%v)", ev, fast, slow, sok)
		}
	}
	if declined != 1 { // the debug line
		t.Errorf("declined %d events, want only the debug one", declined)
	}
}

func FuzzFastText(f *testing.F) {
	for _, ev := range events(f) {
		f.Add(ev)
	}
	f.Add([]byte(`{"level":"info","message":"a","message":"b","machine":false,"machine":true}`))
	f.Add([]byte(`{"mess\u0061ge":"x","level":"warn"}`))
	f.Add([]byte(`{"level":1,"message":"x"}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, ev []byte) {
		fast, ok := fastText(ev, nil)
		if !ok {
			return
		}
		// Without a valid time both use time.Now(): compare from the level on.
		slow, sok := slowText(ev)
		if !sok {
			t.Fatalf("fast rendered %q, slow refused %q", fast, ev)
		}
		cut := func(b []byte) []byte { return b[min(len(b), len("2006-01-02 15:04:05")):] }
		if !bytes.Equal(cut(fast), cut(slow)) {
			t.Fatalf("event %q\nfast %q\nslow %q", ev, fast, slow)
		}
	})
}

func BenchmarkText(b *testing.B) {
	ev := events(b)[0]
	b.Run("fast", func(b *testing.B) {
		var dst []byte
		for range b.N {
			dst, _ = fastText(ev, dst[:0])
		}
	})
	b.Run("slow", func(b *testing.B) {
		for range b.N {
			slowText(ev)
		}
	})
}

// TestDebugLineFields: a -v line lists every field in the order it was
// logged, numbers exactly as logged (a cookie keeps all its digits, never
// 2.985277e+06), strings quoted only when they would not read as one word.
func TestDebugLineFields(t *testing.T) {
	var b bytes.Buffer
	log, _, err := New(&b, Options{Format: Text, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // a map's order would differ between lines
		log.Debug().Str("state", "CLOSE_WAIT").Uint64("cookie", 2985277).Uint64("big", 1<<63+1).
			Float64("age_s", 61.25).Bool("age_exact", true).Str("process", "my proc").Str("skip", "").
			Int("pid", -7).Strs("list", []string{"a", "b"}).Msg("Skipping x")
	}
	want := ` - DEBUG - Skipping x state=CLOSE_WAIT cookie=2985277 big=9223372036854775809 age_s=61.25 ` +
		`age_exact=true process="my proc" skip="" pid=-7 list=["a","b"]`
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 20 {
		t.Fatalf("got %d lines, want 20:\n%s", len(lines), b.String())
	}
	for _, l := range lines {
		if len(l) < len("2006-01-02 15:04:05") || l[len("2006-01-02 15:04:05"):] != want {
			t.Fatalf("debug line\n%q\nwant (after the time)\n%q", l, want)
		}
	}
}
