package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// hck-bpf as the bench runs it: the service (`run`, read through its JSON
// log) and one-shot commands (`scan`, `list`, `unload`), always with the
// bench's own --pin-dir, always inside the bench's namespace.

// sweepLine is the service's debug "Sweep: ..." line.
type sweepLine struct {
	Took    time.Duration
	Scanned int
	Hung    int
}

// killLine is one "destroyed" line of the service.
type killLine struct {
	Cookie     uint64
	Local      string
	AgeS       float64
	ThresholdS float64
}

type service struct {
	cmd      *exec.Cmd
	first    sweepLine // the first sweep, at start: a full walk
	sweeps   chan sweepLine
	mu       sync.Mutex
	kills    []killLine
	problems []string // warn/error lines, for the notes
	done     chan struct{}
	stopped  sync.Once
}

// thresholdArgs sets every threshold: closing states to other, TIME_WAIT
// to timeWait. The sweep's "hung" set is then exactly what the bench wants.
func thresholdArgs(other, timeWait string) []string {
	return []string{"--close-wait-timeout", other, "--fin-wait-timeout", other, "--closing-timeout", other,
		"--last-ack-timeout", other, "--time-wait-timeout", timeWait}
}

// startService starts `hck-bpf run -v --log-format json` with pinDir and
// args, and waits for its first sweep (it sweeps once at start). With
// -logs, its log is kept as DIR/<n>-<name>.jsonl.
func (b *bench) startService(ctx context.Context, name, pinDir string, args ...string) (*service, error) {
	full := append([]string{"run", "-v", "--log-format", "json", "--pin-dir", pinDir}, args...)
	cmd := exec.Command(b.bin, full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Stderr = prefixWriter("hck-bpf run: ")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	b.pins[pinDir] = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", b.bin, err)
	}
	s := &service{cmd: cmd, sweeps: make(chan sweepLine, 4096), done: make(chan struct{})}
	b.services = append(b.services, s)
	var keep *os.File
	if b.logs != "" {
		keep, err = os.Create(filepath.Join(b.logs, fmt.Sprintf("%d-%s.jsonl", len(b.services), name)))
		if err != nil {
			s.stop()
			return nil, err
		}
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			s.line(sc.Bytes())
			if keep != nil {
				keep.Write(append(sc.Bytes(), '\n'))
			}
		}
		if keep != nil {
			keep.Close()
		}
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	if s.first, err = s.nextSweep(ctx, 60*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("hck-bpf run: no first sweep: %w", err)
	}
	return s, nil
}

func (s *service) line(l []byte) {
	var ev struct {
		Level      string   `json:"level"`
		Message    string   `json:"message"`
		Action     string   `json:"action"`
		TookS      *float64 `json:"took_s"`
		Scanned    int      `json:"scanned"`
		Hung       int      `json:"hung"`
		Cookie     uint64   `json:"cookie"`
		Local      string   `json:"local"`
		AgeS       float64  `json:"age_s"`
		ThresholdS float64  `json:"threshold_s"`
	}
	if err := json.Unmarshal(l, &ev); err != nil {
		return
	}
	switch {
	case strings.HasPrefix(ev.Message, "Sweep:") && ev.TookS != nil:
		select {
		case s.sweeps <- sweepLine{Took: time.Duration(*ev.TookS * float64(time.Second)), Scanned: ev.Scanned, Hung: ev.Hung}:
		default:
		}
	case ev.Action == "destroyed":
		s.mu.Lock()
		s.kills = append(s.kills, killLine{Cookie: ev.Cookie, Local: ev.Local, AgeS: ev.AgeS, ThresholdS: ev.ThresholdS})
		s.mu.Unlock()
	case ev.Action != "":
		// A socket's own line ("Hung connection detected" is a warning):
		// what the service is for, not a problem.
	case ev.Level == "warn" || ev.Level == "error":
		s.mu.Lock()
		if len(s.problems) < 20 {
			s.problems = append(s.problems, ev.Message)
		}
		s.mu.Unlock()
	}
}

// drain forgets the sweeps logged so far.
func (s *service) drain() {
	for {
		select {
		case <-s.sweeps:
		default:
			return
		}
	}
}

func (s *service) nextSweep(ctx context.Context, timeout time.Duration) (sweepLine, error) {
	select {
	case l := <-s.sweeps:
		return l, nil
	case <-s.done:
		return sweepLine{}, errors.New("the service exited")
	case <-time.After(timeout):
		return sweepLine{}, fmt.Errorf("no sweep in %s", timeout)
	case <-ctx.Done():
		return sweepLine{}, ctx.Err()
	}
}

func (s *service) problemsSnapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

func (s *service) killsSnapshot() []killLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]killLine(nil), s.kills...)
}

// rss reads the service's resident set now and its peak (VmRSS, VmHWM).
func (s *service) rss() (cur, peak uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = kb * 1024
		case "VmHWM:":
			peak = kb * 1024
		}
	}
	return cur, peak, nil
}

// stop sends SIGTERM (the service stops cleanly, pins stay) and waits.
func (s *service) stop() {
	s.stopped.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// timed runs a command to completion and returns its wall time, from
// fork to exit, and its stdout.
func timed(ctx context.Context, name string, args ...string) (time.Duration, []byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out, errb bytes.Buffer
	out.Grow(1 << 20)
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return d, out.Bytes(), nil
}

// hck runs a one-shot hck-bpf command, timed.
func (b *bench) hck(ctx context.Context, pinDir string, args ...string) (time.Duration, []byte, error) {
	b.pins[pinDir] = true
	return timed(ctx, b.bin, append(args, "--pin-dir", pinDir)...)
}

// attach pins a tracker in pinDir watching the bench's namespace
// (`hck-bpf list` attaches one when none is pinned).
func (b *bench) attach(ctx context.Context, pinDir string) error {
	_, _, err := b.hck(ctx, pinDir, "list")
	return err
}

// unload detaches the tracker pinned in pinDir and removes the pins.
func (b *bench) unload(pinDir string) error {
	_, _, err := timed(context.Background(), b.bin, "unload", "--pin-dir", pinDir)
	if err == nil {
		delete(b.pins, pinDir)
	}
	return err
}

// keepLog keeps a one-shot command's output in the -logs directory.
func (b *bench) keepLog(name string, out []byte) {
	if b.logs != "" {
		_ = os.WriteFile(filepath.Join(b.logs, name+".jsonl"), out, 0o644)
	}
}

// summaryLine is the machine summary a scan logs at the end (JSON).
type summaryLine struct {
	Summary    string  `json:"summary"`
	Scanned    int     `json:"scanned"`
	Hung       int     `json:"hung"`
	Terminated int     `json:"terminated"`
	Gone       int     `json:"gone"`
	Failed     int     `json:"failed"`
	TookS      float64 `json:"took_s"`
	// Where took went (see sweep.Steps).
	WalkS   float64 `json:"took_walk_s"`
	ReadS   float64 `json:"took_read_s"`
	OwnersS float64 `json:"took_owners_s"`
	ActS    float64 `json:"took_act_s"`
}

// steps renders where a scan's sweep went.
func (s summaryLine) steps() string {
	d := func(f float64) string { return fmtDur(time.Duration(f * float64(time.Second))) }
	return fmt.Sprintf("walk %s, read %s, owners %s, look up or destroy %s", d(s.WalkS), d(s.ReadS), d(s.OwnersS), d(s.ActS))
}

func scanSummary(out []byte) (summaryLine, error) {
	var s summaryLine
	for _, l := range bytes.Split(out, []byte("\n")) {
		if !bytes.Contains(l, []byte(`"summary"`)) {
			continue
		}
		if err := json.Unmarshal(l, &s); err == nil && s.Summary == "sweep" {
			return s, nil
		}
	}
	return s, errors.New("no summary line in the scan's output")
}

// prefixWriter writes each line to stderr with a prefix.
type prefixWriter string

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			fmt.Fprint(os.Stderr, string(p)+l)
		}
	}
	return len(b), nil
}
