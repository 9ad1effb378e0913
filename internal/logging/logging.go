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
	Format string // Text or JSON ("": Text)
	// File is a file to append to as well ("" for none); see openLogFile
	// for what is refused.
	File    string
	Verbose bool // debug lines too
	// Buffered holds written lines for up to FlushDelay (or 64 KiB) and
	// writes them out in one go: a sweep that logs 20,000 lines makes a
	// few dozen write calls instead of 20,000. Output.Flush writes them at
	// once; Close flushes.
	Buffered bool
	// Journal renders the lines for out as the journal wants them (see
	// OnJournal): a syslog priority prefix ("<4>"), and in text no
	// timestamp, the journal keeps its own. The log file's lines keep
	// theirs.
	Journal bool
}

// New returns the logger and its Output. Text lines go to out (stdout,
// like the scripts'); the file gets the same lines. Bad options are an
// error before anything is created.
func New(out io.Writer, opts Options) (zerolog.Logger, *Output, error) {
	var format func(w io.Writer, journal bool) io.Writer
	switch opts.Format {
	case "", Text:
		format = func(w io.Writer, journal bool) io.Writer { return &textWriter{w: w, journal: journal} }
	case JSON:
		format = func(w io.Writer, journal bool) io.Writer { return &jsonWriter{w: w, journal: journal} }
	default:
		return zerolog.Nop(), &Output{}, fmt.Errorf("invalid log format %q: want text or json", opts.Format)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	o := &Output{tee: &tee{out: out}}
	if opts.File != "" {
		f, err := openLogFile(opts.File)
		if err != nil {
			return zerolog.Nop(), &Output{}, err
		}
		o.file, o.tee.file, o.tee.path = f, f, opts.File
		// Told on out, unbuffered, when the file starts failing: the
		// lines it misses are counted, and Close reports them.
		notice := zerolog.New(format(out, opts.Journal)).With().Timestamp().Logger()
		o.tee.notice = func(err error) {
			notice.Error().Err(err).Str("log_file", opts.File).
				Msg("Could not write the log file; its missing lines are counted and reported at exit")
		}
	}
	buffered := func(w io.Writer) io.Writer {
		if !opts.Buffered {
			return w
		}
		b := &bufWriter{w: w}
		o.bufs = append(o.bufs, b)
		return b
	}
	var w io.Writer
	if opts.Journal && opts.File != "" {
		// Two renderings of each event: the journal's for out, the
		// timestamped one for the file.
		w = zerolog.MultiLevelWriter(
			format(buffered(teeSide{o.tee, false}), true),
			format(buffered(teeSide{o.tee, true}), false))
	} else {
		w = format(buffered(o.tee), opts.Journal)
	}
	level := zerolog.InfoLevel
	if opts.Verbose {
		level = zerolog.DebugLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), o, nil
}

// Output is where a logger's lines go: stdout and the log file, through a
// buffer when Options.Buffered. A line that cannot be written is never
// lost silently: it is counted (Lost), and Close reports it.
type Output struct {
	tee  *tee
	bufs []*bufWriter // none unless buffered
	file *os.File     // nil without a log file; guarded by tee.mu
}

// Flush writes the lines held in the buffer now: an audit trail that must
// be on disk before the next step (the service's kill lines).
func (o *Output) Flush() {
	for _, b := range o.bufs {
		_ = b.Flush() // the tee counts errors, never returns them
	}
}

// Reopen opens the log file again by its path and writes to the new file
// from now on (logrotate renamed the old one: SIGUSR1). The new file
// passes the checks the first one did (see openLogFile); when it does not,
// or cannot be opened, the old file is kept and the error says why.
// Without a log file it does nothing.
func (o *Output) Reopen() error {
	if o.tee == nil || o.tee.path == "" {
		return nil
	}
	o.Flush() // the lines so far belong to the old file
	f, err := openLogFile(o.tee.path)
	if err != nil {
		return fmt.Errorf("reopen log file: %w", err)
	}
	o.tee.mu.Lock()
	old := o.file
	if old == nil { // closed meanwhile
		o.tee.mu.Unlock()
		f.Close()
		return nil
	}
	o.file, o.tee.file, o.tee.failing = f, f, false
	o.tee.mu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("close the old log file %s: %w", o.tee.path, err)
	}
	return nil
}

// Loss is what one destination of the log did not get.
type Loss struct {
	Dest  string // "log file PATH" or "standard output"
	Lines uint64
	Err   error // the first write error
}

func (l Loss) Error() string {
	return fmt.Sprintf("%s: %d log lines not written: %v", l.Dest, l.Lines, l.Err)
}

// Lost flushes, and returns the lines each destination could not take so
// far; nil when nothing was lost.
func (o *Output) Lost() []Loss {
	if o.tee == nil {
		return nil
	}
	o.Flush()
	return o.tee.lost()
}

// LostLines is the total of Lost.
func (o *Output) LostLines() uint64 {
	var n uint64
	for _, l := range o.Lost() {
		n += l.Lines
	}
	return n
}

// Close flushes and closes the log file. Its error reports every line
// lost (one Loss per destination) and a failed close.
func (o *Output) Close() error {
	var errs []error
	for _, l := range o.Lost() {
		errs = append(errs, l)
	}
	for _, b := range o.bufs {
		b.stop()
	}
	if o.tee != nil {
		o.tee.mu.Lock()
		f := o.file
		o.file, o.tee.file = nil, nil // a line logged after Close goes to out only
		o.tee.mu.Unlock()
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close log file %s: %w", f.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// tee writes every line to out and to the log file. It never fails: a
// destination's failed lines are counted and its first error kept.
type tee struct {
	mu     sync.Mutex
	out    io.Writer
	file   io.Writer // nil without a log file
	path   string
	notice func(error) // the file started failing; nil without a file
	// Lines lost, and the first error, per destination.
	outLost, fileLost uint64
	outErr, fileErr   error
	failing           bool // the file's last write failed
}

func (t *tee) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writeOut(p)
	t.writeFile(p)
	return len(p), nil
}

// teeSide writes to one of the tee's destinations (the file when file):
// where out and the file get different lines (Options.Journal).
type teeSide struct {
	t    *tee
	file bool
}

func (s teeSide) Write(p []byte) (int, error) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.file {
		s.t.writeFile(p)
	} else {
		s.t.writeOut(p)
	}
	return len(p), nil
}

// writeOut and writeFile write p to out and to the file, counting what is
// lost. t.mu is held.
func (t *tee) writeOut(p []byte) {
	if n, err := t.out.Write(p); err != nil {
		t.outLost += linesIn(p[n:])
		if t.outErr == nil {
			t.outErr = err
		}
	}
}

func (t *tee) writeFile(p []byte) {
	if t.file != nil {
		n, err := t.file.Write(p)
		switch {
		case err != nil:
			t.fileLost += linesIn(p[n:])
			if t.fileErr == nil {
				t.fileErr = err
			}
			if !t.failing && t.notice != nil {
				t.notice(err)
			}
			t.failing = true
		default:
			t.failing = false
		}
	}
}

func (t *tee) lost() []Loss {
	t.mu.Lock()
	defer t.mu.Unlock()
	var l []Loss
	if t.fileLost > 0 {
		l = append(l, Loss{Dest: "log file " + t.path, Lines: t.fileLost, Err: t.fileErr})
	}
	if t.outLost > 0 {
		l = append(l, Loss{Dest: "standard output", Lines: t.outLost, Err: t.outErr})
	}
	return l
}

// linesIn counts the lines of p, a partial last one included.
func linesIn(p []byte) uint64 {
	n := uint64(bytes.Count(p, []byte{'\n'}))
	if len(p) > 0 && p[len(p)-1] != '\n' {
		n++
	}
	return n
}

// Human marks an event that only makes sense to a person (rules, the
// summary's text lines): JSON output leaves it out.
const Human = "human"

// Machine marks an event for programs only (a structured summary whose
// text lines are logged separately): text output leaves it out.
const Machine = "machine"

// jsonWriter drops the events marked Human; with journal, it prefixes
// each event with its syslog priority.
type jsonWriter struct {
	w       io.Writer
	journal bool
}

var humanMark = []byte(`"` + Human + `":true`)

func (j *jsonWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, humanMark) {
		return len(p), nil
	}
	if j.journal {
		if _, err := j.w.Write(append(journalJSON(p), p...)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return j.w.Write(p)
}

// textWriter renders zerolog's JSON events as the scripts' lines. Fields
// other than time, level and message are appended as key=value only at
// debug level, so the default output matches the scripts'.
type textWriter struct {
	w       io.Writer
	buf     []byte // reused for each line
	journal bool   // journalText: a priority prefix, no timestamp
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
		if t.journal {
			line = journalText(line)
		}
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
	// closed: the Output was closed; lines are written unbuffered so that
	// none is left behind in a buffer nobody flushes.
	closed bool
}

func (b *bufWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.err; err != nil {
		b.err = nil
		return 0, err
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= bufSize || b.closed {
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

// stop flushes and stops the timer for good: lines written after it go
// out at once.
func (b *bufWriter) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
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
