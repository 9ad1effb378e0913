package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// holder is a process named as the test chose, holding a socket.
type holder struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *holder) pid() int { return p.cmd.Process.Pid }

// running reports whether the holder has not exited.
func (p *holder) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// endedBy waits for the holder to exit and returns the signal that ended it.
func (p *holder) endedBy(t *testing.T) syscall.Signal {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("holder %d still running", p.pid())
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		t.Fatalf("holder %d exited with %v, not by a signal", p.pid(), ws)
	}
	return ws.Signal()
}

// holdAs is holdIn with a handle on the process: a copy of sleep named
// name holds s, the test's descriptor closed; deaf makes it ignore
// SIGTERM (an ignored signal stays ignored across exec).
func holdAs(t *testing.T, name string, s *testnet.Sock, deaf bool) *holder {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep(1) to make a process with a chosen name")
	}
	img, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, img, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(s.FD)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "socket")
	cmd := exec.Command(path, "3600")
	if deaf {
		cmd = exec.Command("sh", "-c", `trap "" TERM; exec "$0" 3600`, path)
	}
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &holder{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	s.Close()
	for range 200 { // until sh has exec'd: comm is name
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		if err == nil && string(comm) == name+"\n" {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("holder %d never became %q", cmd.Process.Pid, name)
	return nil
}

// processLines are the --kill-process lines about pid.
func processLines(lines []map[string]any, pid int) []map[string]any {
	var out []map[string]any
	for _, m := range lines {
		if a, _ := m["action"].(string); len(a) > 8 && a[:8] == "process_" && m["pid"] == json.Number(strconv.Itoa(pid)) {
			out = append(out, m)
		}
	}
	return out
}

// TestKillProcess: with --kill-process, a socket whose destroy fails (the
// binary runs without CAP_NET_ADMIN: SOCK_DESTROY answers EPERM) has its
// owner sent SIGTERM; one that ignores SIGTERM gets SIGKILL after
// --kill-grace. A protected process (a copy of sleep named sshd) and an
// excluded one are never signalled, and without --kill-process, or when
// the destroy succeeds, nobody is.
func TestKillProcess(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs util-linux setpriv to drop CAP_NET_ADMIN")
	}
	h := newE2E(t)
	h.attach()
	var socks [5]*testnet.Sock
	for i := range socks {
		socks[i], _ = h.ns.CloseWait(t, "tcp4")
	}
	polite := holdAs(t, "polite", socks[0], false)
	deaf := holdAs(t, "deaf", socks[1], true)
	sshd := holdAs(t, "sshd", socks[2], false)
	kept := holdAs(t, "keepme", socks[3], false)
	fine := holdAs(t, "fine", socks[4], false)
	time.Sleep(1200 * time.Millisecond)
	noNetAdmin := func(args ...string) result {
		// nsenter enters the namespace, then setpriv drops CAP_NET_ADMIN
		// for good and runs hck-bpf.
		cmd := h.ns.Command("setpriv", append([]string{"--inh-caps=-net_admin", "--bounding-set=-net_admin", h.bin,
			"--live", "--close-wait-timeout", "1", "--exclude-processes", "keepme", "--log-format", "json", "-v", "--pin-dir", h.pin}, args...)...)
		return h.want(exitFailure, h.runCmd(cmd))
	}

	// Without --kill-process: failures, and nobody signalled.
	lines := jsonLines(t, noNetAdmin().stdout)
	if n := len(cookiesWith(t, lines, "failed")); n != 3 { // polite's, deaf's, fine's
		t.Errorf("%d failed, want 3", n)
	}
	for _, p := range []*holder{polite, deaf, sshd, kept, fine} {
		if l := processLines(lines, p.pid()); len(l) != 0 || !p.running() {
			t.Errorf("without --kill-process: pid %d: %v (running %v)", p.pid(), l, p.running())
		}
	}

	// Only fine's socket may be destroyed by a run that can.
	lines = jsonLines(t, h.mustRun(0, "--live", "--kill-process", "--close-wait-timeout", "1", "--include-ports",
		strconv.Itoa(int(socks[4].Local.Port())), "--log-format", "json").stdout)
	if got := cookiesWith(t, lines, "destroyed"); !got[socks[4].Cookie] || len(got) != 1 {
		t.Fatalf("destroyed %v, want only %d", sorted(got), socks[4].Cookie)
	}
	if l := processLines(lines, fine.pid()); len(l) != 0 || !fine.running() {
		t.Errorf("destroy succeeded, yet its owner: %v (running %v)", l, fine.running())
	}

	// With it: SIGTERM, then SIGKILL for the deaf one.
	lines = jsonLines(t, noNetAdmin("--kill-process", "--kill-grace", "0.5").stdout)
	for _, c := range []struct {
		p      *holder
		action string
		sig    syscall.Signal
	}{{polite, "process_terminated", syscall.SIGTERM}, {deaf, "process_killed", syscall.SIGKILL}} {
		l := processLines(lines, c.p.pid())
		if len(l) != 1 || l[0]["action"] != c.action || l[0]["cookie"] == nil {
			t.Errorf("pid %d: lines %v, want one %s", c.p.pid(), l, c.action)
		}
		if sig := c.p.endedBy(t); sig != c.sig {
			t.Errorf("pid %d ended by %v, want %v", c.p.pid(), sig, c.sig)
		}
	}
	for _, p := range []*holder{sshd, kept} {
		if l := processLines(lines, p.pid()); len(l) != 0 || !p.running() {
			t.Errorf("protected or excluded pid %d: %v (running %v)", p.pid(), l, p.running())
		}
	}
	sum := summary(t, lines)
	if sum["processes_terminated"] != json.Number("1") || sum["processes_killed"] != json.Number("1") {
		t.Errorf("summary %v, want 1 process terminated, 1 killed", sum)
	}
	h.ns.Await(t, socks[2].In(conn.CloseWait), socks[3].In(conn.CloseWait))
}

// TestKillCommandKillProcess: `kill --kill-process` signals the owners of
// the connections it failed to destroy (run without CAP_NET_ADMIN, so every
// SOCK_DESTROY answers EPERM): SIGTERM, then SIGKILL for one that ignores
// it. A protected owner (sshd) is never signalled, even with --force, which
// only lets kill try its connection. The filter picks the server ends only
// (--local-port): the client ends belong to the test itself.
func TestKillCommandKillProcess(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs util-linux setpriv to drop CAP_NET_ADMIN")
	}
	h := newE2E(t)
	var servers [3]*testnet.Sock
	var ports []string
	for i := range servers {
		_, servers[i] = h.ns.Established(t, "tcp4")
		ports = append(ports, "--local-port", strconv.Itoa(int(servers[i].Local.Port())))
	}
	polite := holdAs(t, "polite", servers[0], false)
	deaf := holdAs(t, "deaf", servers[1], true)
	sshd := holdAs(t, "sshd", servers[2], false)
	args := append([]string{"--inh-caps=-net_admin", "--bounding-set=-net_admin", h.bin, "kill", "--live", "--force",
		"--kill-process", "--kill-grace", "0.5", "--log-format", "json", "--pin-dir", h.pin}, ports...)
	r := h.want(exitFailure, h.runCmd(h.ns.Command("setpriv", args...)))
	lines := jsonLines(t, r.stdout)
	if n := len(cookiesWith(t, lines, "failed")); n != 3 {
		t.Errorf("%d failed, want the 3 server ends:\n%s", n, r.stdout)
	}
	for _, c := range []struct {
		p      *holder
		action string
		sig    syscall.Signal
	}{{polite, "process_terminated", syscall.SIGTERM}, {deaf, "process_killed", syscall.SIGKILL}} {
		l := processLines(lines, c.p.pid())
		if len(l) != 1 || l[0]["action"] != c.action {
			t.Errorf("pid %d: lines %v, want one %s", c.p.pid(), l, c.action)
		}
		if sig := c.p.endedBy(t); sig != c.sig {
			t.Errorf("pid %d ended by %v, want %v", c.p.pid(), sig, c.sig)
		}
	}
	if l := processLines(lines, sshd.pid()); len(l) != 0 || !sshd.running() {
		t.Errorf("protected pid %d: %v (running %v)", sshd.pid(), l, sshd.running())
	}
	var sum map[string]any
	for _, m := range lines {
		if m["summary"] == "kill" {
			sum = m
		}
	}
	if sum["processes_terminated"] != json.Number("1") || sum["processes_killed"] != json.Number("1") {
		t.Errorf("summary %v, want 1 process terminated, 1 killed", sum)
	}
	// --kill-grace alone is a usage error, as for scan.
	h.mustRun(exitUsage, "kill", "--dry-run", "--state", "established", "--kill-grace", "1")
}
