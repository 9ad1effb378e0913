// Package logging builds hck-bpf's zerolog logger: the scripts' line format
// ("2024-01-15 10:30:45 - WARN - message") for people, JSON for machines.
package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

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
	// Buffered collects lines and writes them in large writes, flushed by
	// the close function: for one-shot commands, whose thousands of lines
	// would otherwise cost a system call each. A service logs unbuffered.
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
		bw := bufio.NewWriterSize(w, 64<<10)
		closeFile := closeFn
		w, closeFn = bw, func() error { return errors.Join(bw.Flush(), closeFile()) }
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
type textWriter struct{ w io.Writer }

var levelNames = map[string]string{
	"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR", "fatal": "FATAL",
}

func (t *textWriter) Write(p []byte) (int, error) {
	var ev map[string]any
	if err := json.Unmarshal(p, &ev); err != nil {
		return t.w.Write(p)
	}
	ts := time.Now()
	if s, ok := ev[zerolog.TimestampFieldName].(string); ok {
		if parsed, err := time.Parse(time.RFC3339Nano, s); err == nil {
			ts = parsed
		}
	}
	if m, _ := ev[Machine].(bool); m {
		return len(p), nil
	}
	lvl, _ := ev[zerolog.LevelFieldName].(string)
	msg, _ := ev[zerolog.MessageFieldName].(string)
	var b strings.Builder
	fmt.Fprintf(&b, "%s - %s - %s", ts.Local().Format("2006-01-02 15:04:05"), levelNames[lvl], msg)
	if lvl == "debug" {
		for k, v := range ev {
			switch k {
			case zerolog.TimestampFieldName, zerolog.LevelFieldName, zerolog.MessageFieldName, Human, Machine:
			default:
				fmt.Fprintf(&b, " %s=%v", k, v)
			}
		}
	}
	if e, ok := ev[zerolog.ErrorFieldName].(string); ok && lvl != "debug" {
		fmt.Fprintf(&b, ": %s", e)
	}
	b.WriteByte('\n')
	if _, err := io.WriteString(t.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}
