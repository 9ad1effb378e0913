package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// tmuxPane is one tmux server of the test's own (its own socket, no user
// configuration) running one command in a pane of a fixed size.
type tmuxPane struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T, w, h int, env []string, args ...string) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is needed (apt-get install tmux): the top end-to-end test runs top in it")
	}
	dir, err := os.MkdirTemp("", "hck-tmux-") // a socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "tmux.conf")
	// The pane stays when top exits, so that its exit status can be read.
	if err := os.WriteFile(conf, []byte("set -g remain-on-exit on\nset -g status off\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &tmuxPane{t: t, sock: filepath.Join(dir, "sock")}
	cmdline := "exec env " + strings.Join(env, " ")
	for _, a := range args {
		cmdline += " " + strconv.Quote(a)
	}
	p.run("-f", conf, "new-session", "-d", "-s", "top", "-x", fmt.Sprint(w), "-y", fmt.Sprint(h), cmdline)
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", p.sock, "kill-server").Run() })
	return p
}

func (p *tmuxPane) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is the pane's text now (-e: with its escape codes).
func (p *tmuxPane) screen(escapes bool) string {
	p.t.Helper()
	if escapes {
		return p.run("capture-pane", "-p", "-e", "-t", "top")
	}
	return p.run("capture-pane", "-p", "-t", "top")
}

// keys sends tmux key names (Up, Enter, Escape, Space, or text).
func (p *tmuxPane) keys(keys ...string) {
	p.t.Helper()
	p.run(append([]string{"send-keys", "-t", "top"}, keys...)...)
}

// await polls the screen until ok accepts it, up to a deadline, and
// returns it; it fails the test with the last screen otherwise.
func (p *tmuxPane) await(what string, ok func(screen string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := p.screen(false)
		if ok(s) {
			return s
		}
		if dead, _ := p.dead(); dead || time.Now().After(deadline) {
			p.t.Fatalf("waiting for %s: the screen is:\n%s", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *tmuxPane) awaitText(parts ...string) string {
	p.t.Helper()
	return p.await(strings.Join(parts, " and "), func(s string) bool {
		for _, part := range parts {
			if !strings.Contains(s, part) {
				return false
			}
		}
		return true
	})
}

// dead reports whether the pane's command exited, and its status.
func (p *tmuxPane) dead() (bool, int) {
	p.t.Helper()
	raw := p.run("display-message", "-p", "-t", "top", "#{pane_dead} #{pane_dead_status} #{pane_dead_signal} #{pane_pid}")
	out := strings.Fields(raw)
	if len(out) == 0 || out[0] != "1" {
		return false, 0 // alive
	}
	code := -1
	switch {
	case len(out) >= 3:
		code, _ = strconv.Atoi(out[1])
	case len(out) == 2:
		// Dead, but tmux has not reaped it (seen under qemu): a zombie's
		// /proc/PID/stat still holds its exit code, the last field.
		st, err := os.ReadFile("/proc/" + out[1] + "/stat")
		f := strings.Fields(string(st))
		if err != nil || len(f) < 52 || f[2] != "Z" {
			return false, 0 // its status not known yet
		}
		ws, _ := strconv.Atoi(f[len(f)-1])
		if ws&0x7f != 0 {
			code = 128 + ws&0x7f // killed by a signal
		} else {
			code = ws >> 8
		}
	}
	if code != 0 {
		p.t.Logf("the pane's command ended: %q", raw)
	}
	return true, code
}

// candidateRows are the candidates table's rows on a screen, in order.
func candidateRows(screen string) []string {
	var rows []string
	in := false
	for _, l := range strings.Split(screen, "\n") {
		switch {
		case strings.Contains(l, "STATE") && strings.Contains(l, "LOCAL"):
			in = true
		case in && (strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "> ")) && len(strings.Fields(l)) > 3:
			rows = append(rows, l)
		case in:
			return rows
		}
	}
	return rows
}

// remotePorts are the remote ports of the CLOSE_WAIT rows, in order.
func remotePorts(t *testing.T, screen string) []int {
	var out []int
	for _, r := range candidateRows(screen) {
		f := strings.Fields(strings.TrimPrefix(r, "> "))
		if f[0] != "CLOSE_WAIT" {
			continue
		}
		ap, err := netipAddrPort(f[2])
		if err != nil {
			t.Fatalf("row %q: %v", r, err)
		}
		out = append(out, ap)
	}
	return out
}

func netipAddrPort(s string) (int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return 0, fmt.Errorf("no port in %q", s)
	}
	return strconv.Atoi(s[i+1:])
}

var (
	closeWaitCount = regexp.MustCompile(`CLOSE_WAIT\s+(\d+)\s`)
	colourSGR      = regexp.MustCompile(`\x1b\[[0-9;]*(?:^|;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])(?:;[0-9;]*)?m`)
)

// rowTimes reads the AGE and LEFT ("in 4m59s") of the CLOSE_WAIT row
// whose remote port is port.
func rowTimes(t *testing.T, screen string, port uint16) (age, left time.Duration) {
	t.Helper()
	for _, r := range candidateRows(screen) {
		f := strings.Fields(strings.TrimPrefix(r, "> "))
		if f[0] != "CLOSE_WAIT" || !strings.HasSuffix(f[2], fmt.Sprintf(":%d", port)) || len(f) < 8 || f[len(f)-2] != "in" {
			continue
		}
		var err error
		if age, err = time.ParseDuration(strings.TrimPrefix(f[len(f)-3], "≥")); err != nil {
			t.Fatalf("row %q: age: %v", r, err)
		}
		if left, err = time.ParseDuration(f[len(f)-1]); err != nil {
			t.Fatalf("row %q: left: %v", r, err)
		}
		return age, left
	}
	t.Fatalf("no CLOSE_WAIT row with a countdown for remote port %d:\n%s", port, screen)
	return 0, 0
}

func countOf(screen string) int {
	m := closeWaitCount.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestTopInTmux runs `hck-bpf top --allow-kill` in tmux, at 100×30 with
// NO_COLOR, against a namespace of the test's own where a dry-run
// service tracks three CLOSE_WAIT sockets: it reads the counts and a
// countdown off the screen, sorts, filters, pauses, opens the help,
// destroys one socket with K and y (only that one dies, its process
// lives), and quits with q.
func TestTopInTmux(t *testing.T) {
	const threshold = 300 // seconds: no candidate becomes hung during the test
	h := newE2E(t)
	svc := h.command("run", "--dry-run", "--close-wait-timeout", fmt.Sprint(threshold))
	notify := notifySocket(t)
	svc.Env = notify.env()
	stdout, err := svc.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	svc.Stderr = &stderr
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	logs := watch(stdout)
	t.Cleanup(func() { _ = svc.Process.Kill(); _ = svc.Wait() })
	notify.waitReady(t, 30*time.Second, logs)

	// Three CLOSE_WAIT sockets on known ports; the one K destroys is
	// held by a process of its own.
	var servers []*testnet.Sock
	for _, port := range []uint16{18081, 18082, 18083} {
		s, _ := h.ns.CloseWaitOn(t, "tcp4", port)
		servers = append(servers, s)
	}
	victim := servers[1]
	victimPort := victim.Remote.Port()
	holder := holdAs(t, "topholder", victim, false)

	// NO_COLOR=yes: any value but empty turns colour off (no-color.org);
	// the terminal library alone only reads a boolean (1, true).
	pane := newTmux(t, 100, 30, []string{"NO_COLOR=yes", "TERM=xterm-256color"},
		"nsenter", "--net="+h.ns.Path(), "--", h.bin, "top", "--pin-dir", h.pin, "--allow-kill",
		"--interval", "500ms", "--close-wait-timeout", fmt.Sprint(threshold))

	// Counts and a countdown: 3 sockets in CLOSE_WAIT; each candidate's
	// age plus its time left is the threshold (to the second).
	screen := pane.await("3 CLOSE_WAIT", func(s string) bool { return countOf(s) == 3 && len(remotePorts(t, s)) == 3 })
	age, left := rowTimes(t, screen, victimPort)
	if left <= 0 || left > threshold*time.Second || (age+left-threshold*time.Second).Abs() > time.Second {
		t.Errorf("age %s + left %s is not the %ds threshold:\n%s", age, left, threshold, screen)
	}
	if colour := colourSGR.FindString(pane.screen(true)); colour != "" {
		t.Errorf("NO_COLOR: the screen has colour (%q)", colour)
	}

	// Sort: s twice (left → state → local), once more → remote, in
	// ascending order; S reverses it.
	pane.keys("s", "s", "s")
	screen = pane.awaitText("sort remote", "REMOTE▲")
	if ports := remotePorts(t, screen); !slices.IsSorted(ports) || len(ports) != 3 {
		t.Errorf("sorted by remote: ports %v\n%s", ports, screen)
	}
	pane.keys("S")
	screen = pane.awaitText("sort remote,desc", "REMOTE▼")
	if ports := remotePorts(t, screen); !slices.IsSortedFunc(ports, func(a, b int) int { return b - a }) || len(ports) != 3 {
		t.Errorf("sorted by remote, descending: ports %v\n%s", ports, screen)
	}

	// Filter on the victim's owner: one row, then Esc: all of them.
	pane.keys("/")
	pane.keys("-l", "topholder")
	pane.keys("Enter")
	screen = pane.awaitText("1 of ")
	if ports := remotePorts(t, screen); !slices.Equal(ports, []int{int(victimPort)}) {
		t.Errorf("filter topholder: rows with remote ports %v, want [%d]\n%s", ports, victimPort, screen)
	}
	pane.keys("Escape")
	pane.await("the filter cleared", func(s string) bool { return len(remotePorts(t, s)) == 3 })

	// Pause: a fourth socket is not shown while paused (checked once a
	// separate list shows it tracked, and a few intervals later), and
	// is once resumed.
	pane.keys("Space")
	pane.awaitText("PAUSED")
	frozen := strings.SplitN(pane.screen(false), "\n", 2)[0]
	extra, _ := h.ns.CloseWaitOn(t, "tcp4", 18084)
	deadline := time.Now().Add(30 * time.Second)
	tracked := regexp.MustCompile(fmt.Sprintf(`"cookie":\s*%d\b`, extra.Cookie))
	for !tracked.MatchString(h.mustRun(0, "list", "--json").stdout) {
		if time.Now().After(deadline) {
			t.Fatalf("cookie %d never tracked", extra.Cookie)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // four intervals: a refresh would have shown it
	if s := pane.screen(false); countOf(s) != 3 || strings.SplitN(s, "\n", 2)[0] != frozen {
		t.Errorf("paused, the screen changed:\n%s", s)
	}
	pane.keys("Space")
	screen = pane.await("4 CLOSE_WAIT after resuming", func(s string) bool { return countOf(s) == 4 && !strings.Contains(s, "PAUSED") })
	t.Logf("the screen at 100×30:\n%s", screen)

	// Help.
	pane.keys("?")
	pane.awaitText("KEYS", "destroy the selected connection now")
	pane.keys("?")
	pane.await("the help closed", func(s string) bool { return !strings.Contains(s, "KEYS") })

	// K on the victim (the one row the filter leaves), y: destroyed.
	pane.keys("/")
	pane.keys("-l", "topholder")
	pane.keys("Enter")
	pane.awaitText("1 of ")
	pane.keys("K")
	pane.awaitText(fmt.Sprintf("(cookie %d)? y/N", victim.Cookie))
	pane.keys("y")
	pane.awaitText(fmt.Sprintf("destroyed CLOSE_WAIT"), fmt.Sprintf("(cookie %d)", victim.Cookie))
	if d, ok, err := h.ns.Find(victim.Cookie); err != nil {
		t.Fatal(err)
	} else if ok && d.State != conn.Close {
		t.Errorf("the victim is alive: %v", d)
	}
	for _, s := range append([]*testnet.Sock{servers[0], servers[2], extra}, nil...) {
		if d, ok, err := h.ns.Find(s.Cookie); err != nil || !ok || d.State != conn.CloseWait {
			t.Errorf("cookie %d (not selected): %v, found %v, err %v", s.Cookie, d, ok, err)
		}
	}
	if !holder.running() {
		t.Errorf("the victim's process %d died", holder.pid())
	}
	// (Esc then q at once would read as alt+q: wait for the Esc's effect.)
	pane.keys("Escape")
	pane.await("3 CLOSE_WAIT after the destroy, no filter", func(s string) bool {
		return countOf(s) == 3 && !strings.Contains(s, "filter \"")
	})

	// q quits: the pane's command exits 0.
	pane.keys("q")
	deadline = time.Now().Add(30 * time.Second)
	for {
		if dead, code := pane.dead(); dead {
			if code != 0 {
				t.Errorf("top exited %d", code)
			}
			break
		}
		if time.Now().After(deadline) {
			raw := pane.run("display-message", "-p", "-t", "top", "#{pane_pid} #{pane_dead} #{pane_dead_status} #{pane_dead_signal}")
			f := strings.Fields(raw)
			stat := ""
			if len(f) > 0 {
				b, _ := os.ReadFile("/proc/" + f[0] + "/stat")
				st, _ := os.ReadFile("/proc/" + f[0] + "/wchan")
				stat = string(b) + " wchan " + string(st)
			}
			t.Fatalf("top still running after q: pane %q, process %s:\n%s", raw, stat, pane.screen(false))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTopPlain: without a terminal, --once prints one snapshot (a table,
// or one JSON line with --json) and exits; --json alone prints one JSON
// document per interval until SIGTERM, then exits 0.
func TestTopPlain(t *testing.T) {
	h := newE2E(t)
	h.attach()
	h.ns.CloseWait(t, "tcp4")
	r := h.mustRun(0, "top", "--once", "--json")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 1 || !json.Valid([]byte(lines[0])) {
		t.Errorf("--once --json: want one JSON line, got %q", r.stdout)
	}
	// No terminal, no flag: plain tables every interval, no escape codes.
	cmd := h.command("top", "--interval", "250ms")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var got []string
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			if got = append(got, l); strings.Contains(l, "CLOSE_WAIT") {
				break wait
			}
		case <-timeout:
			break wait
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for l := range lines {
		got = append(got, l)
	}
	err = cmd.Wait()
	if all := strings.Join(got, "\n"); err != nil || !strings.Contains(all, "CLOSE_WAIT") || strings.Contains(all, "\x1b[") {
		t.Errorf("no terminal: exit %v, want 0 and plain tables with CLOSE_WAIT, got %q", err, all)
	}

	cmd = h.command("top", "--json", "--interval", "250ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for i := 0; i < 3; i++ {
		if !sc.Scan() {
			t.Fatalf("--json: %d lines, then %v", i, sc.Err())
		}
		if !json.Valid(sc.Bytes()) {
			t.Errorf("--json line %d is not JSON: %q", i, sc.Text())
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	go func() { _, _ = io.Copy(io.Discard, out) }()
	if err := cmd.Wait(); err != nil {
		t.Errorf("--json after SIGTERM: %v, want exit 0", err)
	}
}

// topJSON runs `top --once --json` with args and decodes its document.
func (h *e2e) topJSON(args ...string) map[string]any {
	h.t.Helper()
	r := h.mustRun(0, append([]string{"top", "--once", "--json"}, args...)...)
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		h.t.Fatalf("top --once --json: %v: %q", err, r.stdout)
	}
	return doc
}

// candidateOf is the candidate with cookie in a top JSON document.
func candidateOf(t *testing.T, doc map[string]any, cookie uint64) map[string]any {
	t.Helper()
	cands, _ := doc["candidates"].([]any)
	for _, c := range cands {
		if m, _ := c.(map[string]any); m != nil && uint64(m["cookie"].(float64)) == cookie {
			return m
		}
	}
	t.Fatalf("cookie %d is no candidate: %v", cookie, doc["candidates"])
	return nil
}

// TestTopFollowsServiceConfig: without --config and without a threshold
// or filter flag, top's countdowns follow the running service's
// configuration, read from its command line (--config PATH): a rule's
// short threshold for one port, and the rule's name; the header (JSON
// "policy") says so. Flags given, or --config, win; a service's file
// gone gives the defaults and a warning.
func TestTopFollowsServiceConfig(t *testing.T) {
	h := newE2E(t)
	cfg := writeConfig(t, "", `close_wait_timeout: 300
rules:
  - name: fast-port
    ports: [7201]
    close_wait_timeout: 45
`)
	svc := h.startService("run", "--config", cfg)
	fast, _ := h.ns.CloseWaitOn(t, "tcp4", 7201)
	slow, _ := h.ns.CloseWaitOn(t, "tcp4", 7202)
	want := func(doc map[string]any, s *testnet.Sock, threshold float64, rule string) {
		t.Helper()
		c := candidateOf(t, doc, s.Cookie)
		if c["threshold_s"] != threshold || (c["rule"] != nil || rule != "") && c["rule"] != rule {
			t.Errorf("policy %q: cookie %d (port %d): threshold_s %v rule %v, want %v %q",
				doc["policy"], s.Cookie, s.Local.Port(), c["threshold_s"], c["rule"], threshold, rule)
		}
	}

	doc := h.topJSON()
	if doc["policy"] != "service's "+cfg || doc["mode"] != "dry-run" {
		t.Errorf("policy %q mode %q, want the service's %s, dry-run", doc["policy"], doc["mode"], cfg)
	}
	want(doc, fast, 45, "fast-port")
	want(doc, slow, 300, "")

	// A threshold flag: the flags (and the defaults under them).
	doc = h.topJSON("--close-wait-timeout", "100")
	if doc["policy"] != "flags" {
		t.Errorf("with a flag: policy %q, want flags", doc["policy"])
	}
	want(doc, fast, 100, "")
	want(doc, slow, 100, "")

	// --config: that file, under the flags given.
	other := writeConfig(t, "", "rules:\n  - name: mine\n    ports: [7202]\n    close_wait_timeout: 20\n")
	doc = h.topJSON("--config", other)
	if doc["policy"] != other {
		t.Errorf("--config: policy %q, want %s", doc["policy"], other)
	}
	want(doc, fast, 60, "")
	want(doc, slow, 20, "mine")

	// The service's file gone: the defaults, and a warning naming it.
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	doc = h.topJSON()
	if doc["policy"] != "defaults" || !strings.Contains(fmt.Sprint(doc["warnings"]), "read config "+cfg) {
		t.Errorf("file gone: policy %q warnings %v, want defaults and a warning", doc["policy"], doc["warnings"])
	}
	want(doc, fast, 60, "")
	svc.stop()
}
