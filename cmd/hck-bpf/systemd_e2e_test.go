package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/systemd"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// waitMsg waits up to timeout for a message starting with prefix at index
// from or later, and returns its index.
func (n *notifier) waitMsg(t *testing.T, timeout time.Duration, from int, prefix string) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n.mu.Lock()
		for i := from; i < len(n.msgs); i++ {
			if strings.HasPrefix(n.msgs[i], prefix) {
				n.mu.Unlock()
				return i
			}
		}
		msgs := slices.Clone(n.msgs)
		n.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %q from message %d on after %v; messages: %q", prefix, from, timeout, msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startWith starts cmd with its stdout watched, killed at the test's end
// if still running.
func startWith(t *testing.T, cmd *exec.Cmd) *service {
	t.Helper()
	s := &service{t: t, cmd: cmd, exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.logs = watch(stdout)
	go func() {
		<-s.logs.done
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
	})
	return s
}

// TestServiceNotifies: the systemd protocol end to end, on a fake
// NOTIFY_SOCKET: READY=1 only after the first sweep (a socket hung before
// the start is already destroyed when it arrives), WATCHDOG=1 again and
// again (WATCHDOG_USEC small), RELOADING=1 with MONOTONIC_USEC then
// READY=1 around a SIGHUP, STOPPING=1 on SIGTERM.
func TestServiceNotifies(t *testing.T) {
	h := newE2E(t)
	h.attach()
	s, _ := h.ns.CloseWait(t, "tcp4")
	time.Sleep(1200 * time.Millisecond) // past its 1 s threshold before the start

	notify := notifySocket(t)
	cmd := h.command("run", "--live", "--close-wait-timeout", "1")
	cmd.Env = append(notify.env(), "WATCHDOG_USEC=300000") // a ping every 150 ms
	svc := startWith(t, cmd)
	ready := notify.waitMsg(t, 30*time.Second, 0, "READY=1")
	if d, ok, err := h.ns.Find(s.Cookie); err != nil || ok && d.State != conn.Close {
		t.Errorf("at READY=1 the hung socket is still there (%v, %v): READY=1 came before the first sweep", d, err)
	}
	// Pings keep coming from the loop.
	at := ready
	for range 3 {
		at = notify.waitMsg(t, 10*time.Second, at+1, "WATCHDOG=1")
	}

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rel := notify.waitMsg(t, 10*time.Second, at+1, "RELOADING=1")
	mono := notify.waitMsg(t, time.Second, rel+1, "MONOTONIC_USEC=")
	if mono != rel+1 {
		t.Errorf("MONOTONIC_USEC not with RELOADING=1: %q", notify.msgs[rel:mono+1])
	}
	notify.waitMsg(t, 10*time.Second, rel+1, "READY=1")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.waitMsg(t, 10*time.Second, rel+1, "STOPPING=1")
	select {
	case <-svc.exited:
		if svc.waitErr != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", svc.waitErr, svc.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
}

// TestLogFileReopenedOnSIGUSR1: logrotate renames the log file and sends
// SIGUSR1: new lines land in a new file at the path, none in the renamed
// one. A path that fails the log file checks (a symlink) is refused on
// reopen: the old file keeps the lines, and the log says why.
func TestLogFileReopenedOnSIGUSR1(t *testing.T) {
	h := newE2E(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "hck.log")
	notify := notifySocket(t)
	cmd := h.command("run", "--log-file", path)
	cmd.Env = notify.env()
	svc := startWith(t, cmd)
	notify.waitMsg(t, 30*time.Second, 0, "READY=1")
	svc.logs.waitFor(t, 5*time.Second, "service started")

	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	svc.logs.waitFor(t, 5*time.Second, "log file reopened")
	// A line after the reopen: SIGHUP logs one.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	svc.logs.waitFor(t, 5*time.Second, "SIGHUP")
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// Written within FlushDelay.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(read(path), "SIGHUP") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := read(path); !strings.Contains(got, "SIGHUP") || !strings.Contains(got, "log file reopened") {
		t.Errorf("new log file lacks the lines after the reopen:\n%s", got)
	}
	if got := read(rotated); strings.Contains(got, "SIGHUP") || !strings.Contains(got, "service started") {
		t.Errorf("rotated file:\n%s\nwant the first lines, none after the reopen", got)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("new log file: %v, mode %v; want 0600", err, st.Mode())
	}

	// A symlink at the path: refused, the current file kept.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), path); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	line := svc.logs.waitFor(t, 5*time.Second, "could not reopen the log file")
	if !strings.Contains(line, "symbolic link") {
		t.Errorf("refusal %q does not say why", line)
	}
	svc.stop()
	if got := read(path + ".2"); !strings.Contains(got, "could not reopen") || !strings.Contains(got, "service stopped") {
		t.Errorf("the kept file lacks the lines after the refused reopen:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "elsewhere")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the symlink's target was created: %v", err)
	}
}

// unitCaps is the unit's capability set, read from the unit itself, in
// setpriv's spelling (CAP_NET_ADMIN -> net_admin). Both of the unit's
// sets must be the same.
func unitCaps(t *testing.T) []string {
	t.Helper()
	d, err := systemd.Directives(systemd.Unit("/usr/bin/hck-bpf"))
	if err != nil {
		t.Fatal(err)
	}
	bound, amb := d["Service"]["CapabilityBoundingSet"], d["Service"]["AmbientCapabilities"]
	if len(bound) != 1 || !slices.Equal(bound, amb) {
		t.Fatalf("unit: CapabilityBoundingSet %q, AmbientCapabilities %q: want one and the same", bound, amb)
	}
	var caps []string
	for _, c := range strings.Fields(bound[0]) {
		caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	return caps
}

// underCaps runs args (hck-bpf's) in h's namespace as uid 0 with exactly
// caps: setpriv clears the inheritable, ambient and bounding sets but for
// caps, so that exec gives root those alone (as systemd does with the
// unit's CapabilityBoundingSet).
func (h *e2e) underCaps(caps []string, args ...string) *exec.Cmd {
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	return h.ns.Command("setpriv", append([]string{"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set,
		"--", h.bin}, args...)...)
}

// TestServiceUnderUnitCapabilities: `run --live` under exactly the unit's
// capability set (parsed from Unit()) attaches, is ready and destroys a
// hung socket. Without any one of them it cannot start, and doctor names
// what is missing.
func TestServiceUnderUnitCapabilities(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs util-linux setpriv")
	}
	h := newE2E(t)
	caps := unitCaps(t)

	notify := notifySocket(t)
	cmd := h.underCaps(caps, "run", "--live", "--close-wait-timeout", "1", "--pin-dir", h.pin)
	cmd.Env = notify.env()
	svc := startWith(t, cmd)
	notify.waitMsg(t, 30*time.Second, 0, "READY=1")
	s, _ := h.ns.CloseWait(t, "tcp4")
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, ok, err := h.ns.Find(s.Cookie)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || d.State == conn.Close {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hung socket alive 15s after it entered CLOSE_WAIT; service output:\n%s\n%s", svc.logs.all(), svc.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	svc.logs.waitFor(t, 5*time.Second, "Terminated: ", fmt.Sprintf("(socket cookie %d)", s.Cookie))
	svc.stop()

	for _, miss := range caps {
		less := slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == miss })
		name := "CAP_" + strings.ToUpper(miss)
		t.Run("without "+name, func(t *testing.T) {
			// A fresh pin dir: everything must be loaded under the set.
			pin := testnet.PinDir(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := h.underCaps(less, "run", "--live", "--pin-dir", pin)
			c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
			var out bytes.Buffer
			c.Stdout, c.Stderr = &out, &out
			err := c.Run()
			if ctx.Err() != nil {
				t.Fatalf("run --live without %s still running after 30s: it is not needed?\n%s", name, out.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
				t.Errorf("run --live without %s: %v, want exit 1\n%s", name, err, out.String())
			}
			t.Logf("without %s: %s", name, strings.TrimSpace(out.String()))

			r := h.runCmd(h.underCaps(less, "doctor", "--json", "--pin-dir", pin))
			var checks []struct{ Name, Status, Detail string }
			if err := json.Unmarshal([]byte(r.stdout), &checks); err != nil {
				t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
			}
			found := false
			for _, c := range checks {
				if c.Name == "capabilities" {
					found = true
					if c.Status != "fail" || !strings.Contains(c.Detail, "missing") || !strings.Contains(c.Detail, name) {
						t.Errorf("doctor's capabilities check without %s: %s %q", name, c.Status, c.Detail)
					}
				}
			}
			if !found || r.code != exitFailure {
				t.Errorf("doctor without %s: exit %d, capabilities check found %v", name, r.code, found)
			}
		})
	}
}

// TestJournalLines: with its stdout the stream JOURNAL_STREAM names, as
// systemd sets it, hck-bpf's lines carry a priority and no timestamp; the
// same run with stdout elsewhere keeps the timestamps.
func TestJournalLines(t *testing.T) {
	h := newE2E(t)
	out, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(out.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	cmd := h.command("scan", "--dry-run")
	cmd.Env = append(os.Environ(), fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("scan: %v\n%s", err, errb.String())
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("scan wrote %q", b)
	}
	for _, l := range lines {
		if !regexp.MustCompile(`^<[0-7]>(DEBUG|INFO|WARN|ERROR) - `).MatchString(l) {
			t.Errorf("journal line %q", l)
		}
	}
	// The variable alone (a pipe, not the journal's stream): timestamps.
	r := h.runCmd(cmd2(h, cmd.Env, "scan", "--dry-run"))
	if strings.HasPrefix(r.stdout, "<") || !regexp.MustCompile(`^\d{4}-\d\d-\d\d `).MatchString(r.stdout) {
		t.Errorf("not the journal's stream, yet %q", r.stdout)
	}
}

// cmd2 is h.command(args...) with env.
func cmd2(h *e2e, env []string, args ...string) *exec.Cmd {
	c := h.command(args...)
	c.Env = env
	return c
}
