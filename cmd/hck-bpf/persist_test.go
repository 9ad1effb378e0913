package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Persistence end-to-end tests: what the pins keep once the service that
// made them has stopped. Same rules as e2e_test.go: a namespace and a pin
// dir of the test's own, the binary only through h.command (nsenter).

// service is "hck-bpf run" running in the test's namespace.
type service struct {
	t       *testing.T
	cmd     *exec.Cmd
	logs    *logWatch
	stderr  bytes.Buffer
	exited  chan struct{} // closed once the process is reaped; waitErr is then set
	waitErr error
	started string // the "service started" line
}

// startService starts the binary with args (a "run" command line) and
// waits until it is ready: READY=1 on a NOTIFY_SOCKET of the test's own,
// which the service sends once the tracker is attached and its first
// sweep ran. The test's end kills it if it is still running.
func (h *e2e) startService(args ...string) *service {
	h.t.Helper()
	cmd := h.command(args...)
	notify := notifySocket(h.t)
	cmd.Env = notify.env()
	s := startWith(h.t, cmd)
	notify.waitReady(h.t, 30*time.Second, s.logs)
	s.started = s.logs.waitFor(h.t, time.Second, "service started")
	return s
}

// stop sends SIGTERM and fails the test unless the service exits 0 and
// says it stopped.
func (s *service) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.exited:
		if s.waitErr != nil {
			s.t.Fatalf("service exit after SIGTERM: %v\nstderr: %s\nstdout:\n%s", s.waitErr, s.stderr.String(), s.logs.all())
		}
	case <-time.After(10 * time.Second):
		s.t.Fatal("service still running 10s after SIGTERM")
	}
	s.logs.waitFor(s.t, time.Second, "service stopped")
}

// entryTime is the exact CLOCK_BOOTTIME at which s entered its state, read
// from the pinned map (a tracker must be pinned).
func (h *e2e) entryTime(s *testnet.Sock) uint64 {
	h.t.Helper()
	if !tracking.Pinned(h.pin) {
		h.t.Fatalf("no tracker pinned in %s", h.pin) // Open would attach one
	}
	tr, err := tracking.Open(tracking.Options{PinDir: h.pin})
	if err != nil {
		h.t.Fatal(err)
	}
	conns, err := tr.Conns(h.ns.Inode())
	tr.Close()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, c := range conns {
		if c.Cookie == s.Cookie && c.Exact {
			return c.Entered
		}
	}
	h.t.Fatalf("no exact entry for %s in %v", s, conns)
	return 0
}

// sampleUntil looks at s every 20ms until CLOCK_BOOTTIME until has passed
// or s is gone (or CLOSE), and returns what it saw.
func (h *e2e) sampleUntil(s *testnet.Sock, until uint64) []sample {
	h.t.Helper()
	var samples []sample
	for {
		start := conn.Now()
		d, ok, err := h.ns.Find(s.Cookie)
		end := conn.Now()
		if err != nil {
			h.t.Fatal(err)
		}
		alive := ok && d.State != conn.Close
		samples = append(samples, sample{start, end, alive})
		if !alive || end > until {
			return samples
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkDeadline fails t unless s was alive in every sample that ended
// before deadline and gone within late of it.
func checkDeadline(t *testing.T, s *testnet.Sock, samples []sample, ent, deadline uint64, late time.Duration) {
	t.Helper()
	for _, x := range samples {
		if !x.alive && x.end < deadline {
			t.Fatalf("%s gone in a look that ended %v before its deadline (%v after entering)", s,
				time.Duration(deadline-x.end), time.Duration(x.end-ent))
		}
	}
	last := samples[len(samples)-1]
	if last.alive {
		t.Fatalf("%s still alive %v after its deadline", s, time.Duration(last.end-deadline))
	}
	if last.start > deadline && time.Duration(last.start-deadline) > late {
		t.Errorf("%s still alive %v after its deadline", s, time.Duration(last.start-deadline))
	}
	t.Logf("%d looks; alive until %v after entering, gone at %v (deadline %v)", len(samples),
		time.Duration(samples[max(0, len(samples)-2)].end-ent), time.Duration(last.end-ent), time.Duration(deadline-ent))
}

// jsonLine decodes one --log-format json line.
func jsonLine(t *testing.T, l string) map[string]any {
	t.Helper()
	lines := jsonLines(t, l)
	if len(lines) != 1 {
		t.Fatalf("%d JSON lines in %q, want 1", len(lines), l)
	}
	return lines[0]
}

func number(t *testing.T, m map[string]any, key string) float64 {
	t.Helper()
	n, ok := m[key].(json.Number)
	if !ok {
		t.Fatalf("line without %s: %v", key, m)
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRestartKeepsDeadline: a CLOSE_WAIT's deadline survives a restart of
// the service. The first service sees the socket enter CLOSE_WAIT and is
// stopped before the deadline; nothing destroys the socket while no service
// runs; the second service reuses the pinned tracker, reads the same entry
// time and destroys the socket at entry + threshold, not before, not a
// full threshold after its own start.
func TestRestartKeepsDeadline(t *testing.T) {
	const threshold = 4 * time.Second
	h := newE2E(t)
	args := []string{"run", "--live", "--close-wait-timeout", "4", "--log-format", "json"}

	first := h.startService(args...)
	if m := jsonLine(t, first.started); m["attached"] != true {
		t.Errorf("first service did not attach the tracker: %s", first.started)
	}
	s, _ := h.ns.CloseWait(t, "tcp4")
	ent := h.entryTime(s)
	deadline := ent + uint64(threshold)

	samples := h.sampleUntil(s, ent+uint64(1500*time.Millisecond))
	first.stop()
	for _, pin := range []string{"hck_conns", "hck_set_state_link"} {
		if _, err := os.Stat(filepath.Join(h.pin, pin)); err != nil {
			t.Fatalf("pin %s gone after SIGTERM: %v", pin, err)
		}
	}
	// No service runs until E+2.5s: nothing may destroy the socket.
	samples = append(samples, h.sampleUntil(s, ent+uint64(2500*time.Millisecond))...)
	if !samples[len(samples)-1].alive {
		t.Fatalf("%s destroyed while no service ran (%v after entering)", s, time.Duration(conn.Now()-ent))
	}

	second := h.startService(args...)
	started := jsonLine(t, second.started)
	if started["attached"] != false {
		t.Errorf("restarted service attached a new tracker instead of reusing the pinned one: %s", second.started)
	}
	if got := h.entryTime(s); got != ent {
		t.Errorf("entry time after restart %d, want %d (before the restart)", got, ent)
	}
	samples = append(samples, h.sampleUntil(s, deadline+uint64(5*time.Second))...)
	checkDeadline(t, s, samples, ent, deadline, 2*time.Second)

	line := second.logs.waitFor(t, 5*time.Second, `"action":"destroyed"`, fmt.Sprintf(`"cookie":%d`, s.Cookie))
	m := jsonLine(t, line)
	msg := fmt.Sprint(m["message"])
	if !strings.Contains(msg, "Terminated: ") || !strings.Contains(msg, fmt.Sprintf("(socket cookie %d)", s.Cookie)) {
		t.Errorf("kill line's message %q", msg)
	}
	if age := number(t, m, "age_s"); age < threshold.Seconds() {
		t.Errorf("terminated at age %.3fs, below the %v threshold", age, threshold)
	}
	if m["age_exact"] != true {
		t.Errorf("kill line's age not exact: %s", line)
	}
	if _, ok := first.logs.find(`"action":"destroyed"`); ok {
		t.Errorf("first service destroyed something:\n%s", first.logs.all())
	}
	second.stop()
}

// linkID is the id of the link pinned at path, from bpftool.
func (h *e2e) linkID(path string) int {
	h.t.Helper()
	out, err := h.ns.Command("bpftool", "-j", "link", "show", "pinned", path).Output()
	if err != nil {
		h.t.Fatalf("bpftool link show pinned %s: %v", path, err)
	}
	var l struct {
		ID int `json:"id"`
	}
	if err := json.Unmarshal(out, &l); err != nil || l.ID == 0 {
		h.t.Fatalf("bpftool link show pinned %s: %q: %v", path, out, err)
	}
	return l.ID
}

// TestScanOverStoppedServicePins: scan, run after the service stopped,
// uses the service's pinned tracker: exact ages of sockets that entered
// CLOSE_WAIT while the service ran, no new tracker; live destroys exactly
// those. unload then detaches the link and removes the pin dir, after
// which scan attaches a tracker of its own and says so.
func TestScanOverStoppedServicePins(t *testing.T) {
	h := newE2E(t)
	svc := h.startService("run", "--dry-run", "--log-format", "json")

	before := conn.Now()
	cw4, _ := h.ns.CloseWait(t, "tcp4")
	cw6, _ := h.ns.CloseWait(t, "tcp6")
	after := conn.Now()
	ec, es := h.ns.Established(t, "tcp4")
	hung := []named{{"CLOSE_WAIT/tcp4", cw4, conn.CloseWait}, {"CLOSE_WAIT/tcp6", cw6, conn.CloseWait}}
	healthy := []named{{"ESTABLISHED client", ec, conn.Established}, {"ESTABLISHED server", es, conn.Established}}
	ents := map[uint64]uint64{}
	want := map[uint64]bool{}
	for _, n := range hung {
		e := h.entryTime(n.s)
		if e < before || e > after {
			t.Errorf("%s entered at %d, outside the build [%d, %d]", n.s, e, before, after)
		}
		ents[n.s.Cookie] = e
		want[n.s.Cookie] = true
	}
	svc.stop()
	check(t, h.ns, "after the service stopped", append(hung, healthy...)...)

	// A second past the 1s threshold.
	if now := conn.Now(); now < after+uint64(2*time.Second) {
		time.Sleep(time.Duration(after + uint64(2*time.Second) - now))
	}
	scanArgs := []string{"--close-wait-timeout", "1", "--log-format", "json"}

	start := conn.Now()
	dry := h.mustRun(0, append([]string{"scan", "--dry-run"}, scanArgs...)...)
	end := conn.Now()
	lines := jsonLines(t, dry.stdout)
	if planned := cookiesWith(t, lines, "would_destroy"); !maps.Equal(planned, want) {
		t.Errorf("dry run would destroy %v, want the CLOSE_WAIT sockets %v\n%s", sorted(planned), sorted(want), dry.stdout)
	}
	for _, m := range lines {
		if m["action"] != "would_destroy" {
			continue
		}
		c, err := strconv.ParseUint(fmt.Sprint(m["cookie"]), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := ents[c]
		if !ok {
			continue // reported above
		}
		age := number(t, m, "age_s")
		// The sweep's clock is read between start and end.
		lo, hi := time.Duration(start-e).Seconds(), time.Duration(end-e).Seconds()
		if m["age_exact"] != true || age < 1 || age < lo-1e-6 || age > hi+1e-6 {
			t.Errorf("socket %d: age %.6fs (exact %v), want exact, ≥ 1s and in [%.6f, %.6f]s", c, age, m["age_exact"], lo, hi)
		}
	}
	if strings.Contains(dry.stdout+dry.stderr, "No tracker was pinned") {
		t.Errorf("dry scan attached a new tracker over the stopped service's pins:\n%s", dry.stdout)
	}
	check(t, h.ns, "after dry run", append(hung, healthy...)...)

	live := h.mustRun(0, append([]string{"scan", "--live"}, scanArgs...)...)
	liveLines := jsonLines(t, live.stdout)
	if destroyed := cookiesWith(t, liveLines, "destroyed"); !maps.Equal(destroyed, want) {
		t.Errorf("live destroyed %v, want the CLOSE_WAIT sockets %v\n%s", sorted(destroyed), sorted(want), live.stdout)
	}
	if sum := summary(t, liveLines); sum["terminated"] != json.Number("2") || sum["failed"] != json.Number("0") {
		t.Errorf("live summary %v, want 2 terminated, 0 failed", sum)
	}
	if strings.Contains(live.stdout+live.stderr, "No tracker was pinned") {
		t.Errorf("live scan attached a new tracker over the stopped service's pins:\n%s", live.stdout)
	}
	h.ns.Await(t, cw4.Gone(), cw6.Gone())
	check(t, h.ns, "after live scan", healthy...)

	// unload detaches the link, not only its pin.
	linkPath := filepath.Join(h.pin, "hck_set_state_link")
	id := h.linkID(linkPath)
	if r := h.mustRun(0, "unload"); strings.TrimSpace(r.stdout) != "unloaded "+h.pin {
		t.Errorf("unload says %q", r.stdout)
	}
	if _, err := os.Stat(h.pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir after unload: %v", err)
	}
	// The kernel frees an unpinned link from a work queue: give it time.
	for wait := time.Now().Add(5 * time.Second); ; {
		out, err := h.ns.Command("bpftool", "link", "show", "id", strconv.Itoa(id)).CombinedOutput()
		if err != nil {
			break
		}
		if time.Now().After(wait) {
			t.Fatalf("link %d still exists 5s after unload:\n%s", id, out)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Nothing pinned any more: scan attaches a tracker of its own and says so.
	r := h.mustRun(0, "scan", "--dry-run", "--close-wait-timeout", "1")
	if !strings.Contains(r.stdout, "No tracker was pinned in "+h.pin+": attached one now") {
		t.Errorf("scan over an empty pin dir does not say it attached a tracker:\n%s", r.stdout)
	}
	if !tracking.Pinned(h.pin) {
		t.Errorf("scan over an empty pin dir left no tracker pinned in %s", h.pin)
	}
	h.mustRun(0, "unload")
}
