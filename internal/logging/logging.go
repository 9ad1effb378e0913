// Package logging builds hck-bpf's zerolog logger: the scripts' line format
// ("2024-01-15 10:30:45 - WARN - message") for people, JSON for machines.
package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/rs/zerolog"
)

// Format names accepted by --log-format.
const (
	Text = "text"
	JSON = "json"
)

// Options of the logger.
type Options struct {
	Format  string // Text or JSON
	File    string // also append to this file ("" for none)
	Verbose bool   // debug lines too
	// Buffered holds written lines for up to FlushDelay (or 64 KiB) and
	// writes them out in one go: a sweep that logs 20,000 lines makes a
	// few dozen write calls instead of 20,000. The close function flushes.
	Buffered bool
}

// New returns the logger and a close function for the log file. Text lines
// go to stderr-free stdout like the scripts'; the file gets the same format.
func New(out io.Writer, opts Options) (zerolog.Logger, func() error, error) {
	closeFn := func() error { return nil }
	w := out
	if opts.File != "" {
		f, err := os.OpenFile(opts.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return zerolog.Nop(), closeFn, fmt.Errorf("open log file: %w", err)
		}
		w = io.MultiWriter(out, f)
		closeFn = f.Close
	}
	if opts.Buffered {
		bw := &bufWriter{w: w}
		w = bw
		closeFile := closeFn
		closeFn = func() error { return errors.Join(bw.Flush(), closeFile()) }
	}
	switch opts.Format {
	case "", Text:
		w = &textWriter{w: w}
	case JSON:
		w = &jsonWriter{w: w}
	default:
		return zerolog.Nop(), closeFn, fmt.Errorf("invalid --log-format %q: want text or json", opts.Format)
	}
	level := zerolog.InfoLevel
	if opts.Verbose {
		level = zerolog.DebugLevel
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), closeFn, nil
}

// Human marks an event that only makes sense to a person (rules, the
// summary's text lines): JSON output leaves it out.
const Human = "human"

// Machine marks an event for programs only (a structured summary whose
// text lines are logged separately): text output leaves it out.
const Machine = "machine"

// jsonWriter drops the events marked Human.
type jsonWriter struct{ w io.Writer }

var humanMark = []byte(`"` + Human + `":true`)

func (j *jsonWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, humanMark) {
		return len(p), nil
	}
	return j.w.Write(p)
}

// textWriter renders zerolog's JSON events as the scripts' lines. Fields
// other than time, level and message are appended as key=value only at
// debug level, so the default output matches the scripts'.
type textWriter struct {
	w   io.Writer
	buf []byte // reused for each line
}

var levelNames = map[string]string{
	"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR", "fatal": "FATAL",
}

func (t *textWriter) Write(p []byte) (int, error) {
	line, ok := fastText(p, t.buf[:0])
	if !ok {
		line, ok = slowText(p)
	}
	if !ok {
		return t.w.Write(p) // not an event: pass it on
	}
	if len(line) > 0 {
		t.buf = line[:0]
		if _, err := t.w.Write(line); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// slowText renders one event by decoding it whole; it is the reference for
// fastText, and renders what fastText declines (debug lines, which carry
// every field). Debug lines get every other field as key=value, in the
// event's order, numbers exactly as written (a uint64 cookie keeps all its
// digits), strings quoted when they hold a space, '=' or a quote. An empty
// line: the event is for programs only.
func slowText(p []byte) ([]byte, bool) {
	fields, ok := decodeFields(p)
	if !ok {
		return nil, false
	}
	// Later duplicates win, as they would decoding into a map.
	var ts time.Time
	var lvl, msg, errMsg string
	var hasErr, machine bool
	for _, f := range fields {
		switch f.key {
		case zerolog.TimestampFieldName:
			ts = time.Time{}
			if s, ok := jsonString(f.raw); ok {
				ts, _ = time.Parse(time.RFC3339Nano, s)
			}
		case zerolog.LevelFieldName:
			lvl, _ = jsonString(f.raw)
		case zerolog.MessageFieldName:
			msg, _ = jsonString(f.raw)
		case zerolog.ErrorFieldName:
			errMsg, hasErr = jsonString(f.raw)
		case Machine:
			machine = string(f.raw) == "true"
		}
	}
	if machine {
		return nil, true
	}
	if ts.IsZero() {
		ts = time.Now()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s - %s - %s", ts.Local().Format("2006-01-02 15:04:05"), levelNames[lvl], msg)
	if lvl == "debug" {
		for _, f := range fields {
			switch f.key {
			case zerolog.TimestampFieldName, zerolog.LevelFieldName, zerolog.MessageFieldName, Human, Machine:
			default:
				b.WriteByte(' ')
				b.WriteString(f.key)
				b.WriteByte('=')
				b.WriteString(fieldText(f.raw))
			}
		}
	}
	if hasErr && lvl != "debug" {
		fmt.Fprintf(&b, ": %s", errMsg)
	}
	b.WriteByte('\n')
	return []byte(b.String()), true
}

// field is one top-level member of an event, its value undecoded.
type field struct {
	key string
	raw []byte
}

// decodeFields splits the JSON object p into its members, in order; false
// when p is not exactly one JSON object.
func decodeFields(p []byte) ([]field, bool) {
	if !json.Valid(p) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var fields []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		fields = append(fields, field{key, raw})
	}
	return fields, true
}

// fieldText renders one value of a debug line: a string as itself, quoted
// when it would not read back as one word; anything else (numbers, true,
// null, arrays, objects) as its JSON.
func fieldText(raw []byte) string {
	s, ok := jsonString(raw)
	if !ok {
		return string(raw)
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r == '=' || r == '"' || unicode.IsSpace(r) || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(s)
	}
	return s
}

// FlushDelay is the longest a buffered line waits before it is written.
const FlushDelay = 100 * time.Millisecond

// bufSize is how many bytes a buffered logger holds before writing them.
const bufSize = 64 << 10

// bufWriter holds whole lines (zerolog writes one event per call) and
// writes them out when bufSize is reached, FlushDelay after the first
// unwritten one, or on Flush. A write error is returned by the next Write
// or Flush.
type bufWriter struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	timer *time.Timer
	err   error
}

func (b *bufWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.err; err != nil {
		b.err = nil
		return 0, err
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= bufSize {
		b.flushLocked()
	} else if b.timer == nil {
		b.timer = time.AfterFunc(FlushDelay, func() { _ = b.Flush() })
	}
	return len(p), nil
}

// Flush writes out what is held.
func (b *bufWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	err := b.err
	b.err = nil
	return err
}

func (b *bufWriter) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil && b.err == nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}
