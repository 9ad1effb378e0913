package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// Tests of --config: rules decide thresholds and actions in a real
// service, a bad file exits 2 naming its line, SIGHUP reloads. Ports are
// fixed: each test's namespace is its own.

// writeConfig writes a config file in a directory of the test's own.
func writeConfig(t *testing.T, path, src string) string {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "config.yaml")
	}
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// stillAlive fails the test unless s is alive.
func stillAlive(t *testing.T, s *testnet.Sock, why string, logs *logWatch) {
	t.Helper()
	if !s.Alive() {
		t.Fatalf("%s destroyed: %s\noutput:\n%s", s, why, logs.all())
	}
}

// TestConfigRules: a per-port rule kills its port's CLOSE_WAIT on its
// own short threshold while another port's keeps the file's long
// default; a report rule's socket is reported hung and lives.
func TestConfigRules(t *testing.T) {
	h := newE2E(t)
	cfg := writeConfig(t, "", `mode: live
log_format: json
close_wait_timeout: 300
fin_wait_timeout: 300
rules:
  - name: fast-port
    ports: [7101]
    close_wait_timeout: 1.5
  - name: watch-only
    ports: "7103"
    close_wait_timeout: 1
    action: report
`)
	svc := h.startService("run", "--config", cfg)
	if !strings.Contains(svc.started, `"rules":2`) {
		t.Errorf("start line does not count 2 rules: %s", svc.started)
	}
	fast, _ := h.ns.CloseWaitOn(t, "tcp4", 7101)
	slow, _ := h.ns.CloseWaitOn(t, "tcp4", 7102)
	watched, _ := h.ns.CloseWaitOn(t, "tcp6", 7103)

	awaitGone(t, h.ns, fast, 15*time.Second)
	line := svc.logs.waitFor(t, 5*time.Second, `"action":"destroyed"`, fmt.Sprintf(`"cookie":%d`, fast.Cookie))
	if !strings.Contains(line, `"rule":"fast-port"`) || !strings.Contains(line, `"threshold_s":1.5`) {
		t.Errorf("destroy line does not name the rule and its threshold: %s", line)
	}
	// The report rule's socket is hung (1s) by now: reported, alive.
	line = svc.logs.waitFor(t, 10*time.Second, `"action":"report"`, fmt.Sprintf(`"cookie":%d`, watched.Cookie))
	if !strings.Contains(line, `"rule":"watch-only"`) {
		t.Errorf("report line does not name the rule: %s", line)
	}
	// Another sweep or two: still nothing done to either.
	time.Sleep(2 * time.Second)
	stillAlive(t, slow, "port 7102 matches no rule: its threshold is 300s", svc.logs)
	stillAlive(t, watched, "the rule says report", svc.logs)
	if l, ok := svc.logs.find(fmt.Sprintf(`"cookie":%d`, slow.Cookie)); ok {
		t.Errorf("a line about the socket of no rule: %s", l)
	}
	if l, ok := svc.logs.find(`"action":"destroy`, fmt.Sprintf(`"cookie":%d`, watched.Cookie)); ok {
		t.Errorf("the report rule's socket was acted on: %s", l)
	}
	svc.stop()
}

// TestConfigBad: a bad file exits 2 naming file:line, before anything is
// loaded (no pin); a flag given overrides the file.
func TestConfigBad(t *testing.T) {
	h := newE2E(t)
	bad := writeConfig(t, "", "close_wait_timeout: 30\nrules:\n  - name: a\n    ports: [80, 99999]\n")
	for _, cmd := range [][]string{{"run", "--live"}, {"scan", "--dry-run"}} {
		r := h.mustRun(2, append(cmd, "--config", bad)...)
		want := bad + `:4: rules[0].ports: invalid port "99999"`
		if !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: stderr %q, want one line with %q", cmd[0], r.stderr, want)
		}
	}
	if _, err := os.Stat(filepath.Join(h.pin, "hck_set_state_link")); err == nil {
		t.Error("a tracker was pinned despite the bad file")
	}
	// The file says live; --dry-run on the command line wins: the hung
	// socket is only named.
	good := writeConfig(t, "", "mode: live\nclose_wait_timeout: 0.5\nlog_format: json\n")
	h.attach()
	s, _ := h.ns.CloseWait(t, "tcp4")
	time.Sleep(700 * time.Millisecond)
	r := h.mustRun(0, "scan", "--config", good, "--dry-run")
	lineFor(t, jsonLines(t, r.stdout), "would_destroy", s.Cookie)
	if !s.Alive() {
		t.Error("destroyed although --dry-run was given")
	}
	// And a flag's threshold wins over the file's.
	r = h.mustRun(0, "scan", "--config", good, "--close-wait-timeout", "300")
	// (By the cookie field: a fresh kernel's cookies are small numbers,
	// found in any timestamp.)
	named := false
	for _, l := range jsonLines(t, r.stdout) {
		if c, ok := l["cookie"].(float64); ok && uint64(c) == s.Cookie {
			named = true
		}
	}
	if named || !s.Alive() {
		t.Errorf("--close-wait-timeout 300 did not win over the file:\n%s", r.stdout)
	}
}

// TestConfigReload: SIGHUP with a broken file keeps the running rules (a
// socket still dies on them) and logs the file's line; a good file's new
// rule takes effect, and the change is logged.
func TestConfigReload(t *testing.T) {
	h := newE2E(t)
	path := writeConfig(t, "", `mode: live
log_format: json
close_wait_timeout: 300
fin_wait_timeout: 300
rules:
  - name: first
    ports: [7201]
    close_wait_timeout: 1
`)
	svc := h.startService("run", "--config", path)
	hup := func() {
		t.Helper()
		if err := svc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	writeConfig(t, path, "mode: live\nrules:\n  - name: first\n    ports: [7201]\n    close_wait_timeout: 1\n    bogus: 1\n")
	hup()
	line := svc.logs.waitFor(t, 10*time.Second, "Reload failed")
	if !strings.Contains(line, path+`:6: rules[0].bogus: unknown rule key`) || !strings.Contains(line, `"level":"error"`) {
		t.Errorf("reload failure line: %s", line)
	}
	a, _ := h.ns.CloseWaitOn(t, "tcp4", 7201)
	awaitGone(t, h.ns, a, 15*time.Second)

	writeConfig(t, path, `mode: live
log_format: json
close_wait_timeout: 300
fin_wait_timeout: 300
rules:
  - name: first
    ports: [7201]
    close_wait_timeout: 1
  - name: second
    ports: [7202]
    close_wait_timeout: 1.5
`)
	hup()
	line = svc.logs.waitFor(t, 10*time.Second, "Config reloaded: rule second added")
	if !strings.Contains(line, "ports=7202 CLOSE_WAIT=1.5s action=destroy") || !strings.Contains(line, `"level":"info"`) {
		t.Errorf("reload diff line: %s", line)
	}
	if l, ok := svc.logs.find("Config reloaded: rule first"); ok {
		t.Errorf("unchanged rule logged as changed: %s", l)
	}
	b, _ := h.ns.CloseWaitOn(t, "tcp4", 7202)
	awaitGone(t, h.ns, b, 15*time.Second)
	svc.logs.waitFor(t, 5*time.Second, `"action":"destroyed"`, `"rule":"second"`, fmt.Sprintf(`"cookie":%d`, b.Cookie))

	// The same file again: no change.
	hup()
	svc.logs.waitFor(t, 10*time.Second, "Config reloaded from "+path+": no change")
	svc.stop()
}
