package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/doctor"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// Pin dir end-to-end tests: what unload may remove, who may use a pin
// dir, and what a pin dir must hold. Same rules as e2e_test.go: a
// namespace and a pin dir of the test's own.

// runFor runs cmd, killing it if it is still running after timeout (a
// command that should have refused to start, and did not): exited false.
func (h *e2e) runFor(timeout time.Duration, cmd *exec.Cmd) (r result, exited bool) {
	h.t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
		exited = true
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		err = <-done
	}
	r = result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("%s: %v", cmd, err)
	}
	h.t.Logf("%s: exit %d (exited by itself: %v)", strings.Join(cmd.Args, " "), r.code, exited)
	return r, exited
}

// mustRefuse runs cmd and fails unless it exits by itself with code and a
// stderr holding every part.
func (h *e2e) mustRefuse(code int, cmd *exec.Cmd, parts ...string) result {
	h.t.Helper()
	r, exited := h.runFor(30*time.Second, cmd)
	if !exited {
		h.t.Fatalf("%s: still running after 30s, want exit %d\nstdout:\n%s\nstderr:\n%s", cmd, code, r.stdout, r.stderr)
	}
	h.want(code, r)
	for _, p := range parts {
		if !strings.Contains(r.stderr, p) {
			h.t.Errorf("%s: stderr %q does not say %q", cmd, r.stderr, p)
		}
	}
	return r
}

// at is the binary in the namespace with an explicit pin dir.
func (h *e2e) at(pin string, args ...string) *exec.Cmd {
	return h.ns.Command(h.bin, append(args, "--pin-dir", pin)...)
}

// pinPath is a name in the test's pin dir.
func (h *e2e) pinPath(name string) string { return filepath.Join(h.pin, name) }

// linkGone fails t unless the link with id is gone within 5s (the kernel
// frees an unpinned link from a work queue).
func (h *e2e) linkGone(id int) {
	h.t.Helper()
	for wait := time.Now().Add(5 * time.Second); ; {
		out, err := exec.Command("bpftool", "link", "show", "id", strconv.Itoa(id)).CombinedOutput()
		if err != nil {
			return
		}
		if time.Now().After(wait) {
			h.t.Fatalf("link %d still exists 5s after unload:\n%s", id, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newArrayMap is a small map that is not hck-bpf's.
func newArrayMap(t *testing.T, name string) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestUnloadRemovesOnlyItsPins: unload removes hck-bpf's pins by name and
// detaches the tracker; a directory, symlinks and another program's pinned
// map planted in the pin dir, some under hck-bpf's pin names, stay and are
// listed, and so does the directory.
func TestUnloadRemovesOnlyItsPins(t *testing.T) {
	h := newE2E(t)
	h.attach()
	id := h.linkID(h.pinPath("hck_set_state_link"))
	planted := map[string]string{ // name -> what
		"keep_d":                       "a directory",
		"hck_owners_iter_000000000000": "a directory", // an old build's iterator name
		"notes":                        "a symlink",
		"hck_want":                     "a symlink",
		"other_map":                    "a pinned map",
		"hck_sockets_iter_old":         "a pinned map", // not an iterator name
	}
	for _, name := range []string{"keep_d", "hck_owners_iter_000000000000"} {
		if err := os.Mkdir(h.pinPath(name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/tmp", h.pinPath("notes")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(h.pinPath("hck_conns"), h.pinPath("hck_want")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"other_map", "hck_sockets_iter_old"} {
		if err := newArrayMap(t, "hck_planted").Pin(h.pinPath(name)); err != nil {
			t.Fatal(err)
		}
	}

	r := h.mustRun(0, "unload")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if lines[0] != "unloaded "+h.pin {
		t.Errorf("unload's first line %q, want %q", lines[0], "unloaded "+h.pin)
	}
	for name := range planted {
		if !strings.Contains(r.stdout, "left "+h.pinPath(name)+": ") {
			t.Errorf("unload does not list %s as left:\n%s", name, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "kept "+h.pin+": not empty") {
		t.Errorf("unload does not say it kept the pin dir:\n%s", r.stdout)
	}
	h.linkGone(id)
	entries, err := os.ReadDir(h.pin)
	if err != nil {
		t.Fatalf("pin dir gone with planted entries in it: %v", err)
	}
	left := map[string]bool{}
	for _, e := range entries {
		left[e.Name()] = true
	}
	for name, what := range planted {
		if !left[name] {
			t.Errorf("unload removed %s (%s) that hck-bpf did not pin", name, what)
			continue
		}
		st, err := os.Lstat(h.pinPath(name))
		if err != nil {
			t.Fatal(err)
		}
		switch what {
		case "a directory":
			if !st.IsDir() {
				t.Errorf("%s is no longer a directory: %v", name, st.Mode())
			}
		case "a symlink":
			if st.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("%s is no longer a symlink: %v", name, st.Mode())
			}
		case "a pinned map":
			m, err := ebpf.LoadPinnedMap(h.pinPath(name), nil)
			if err != nil {
				t.Errorf("%s no longer a pinned map: %v", name, err)
				continue
			}
			m.Close()
		}
	}
	if len(left) != len(planted) {
		t.Errorf("after unload the pin dir holds %v, want only the planted %v", left, planted)
	}
	// Nothing of hck-bpf's left: a second unload says so and fails.
	r = h.mustRun(exitFailure, "unload")
	if strings.Contains(r.stdout, "unloaded") || !strings.Contains(r.stderr, "nothing to unload") {
		t.Errorf("unload with no pin: stdout %q stderr %q", r.stdout, r.stderr)
	}
}

// TestUnloadElsewhere: unload of a directory that is not on bpffs touches
// nothing and exits 2; of a pin dir that does not exist, exits 1 and does
// not say "unloaded".
func TestUnloadElsewhere(t *testing.T) {
	dir := t.TempDir()
	files := []string{"hck_conns", "hck_set_state_link", "hck_sockets_iter_87d6a6c4f001", "data.txt"}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("mine"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("data.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Main([]string{"unload", "--pin-dir", dir}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "not on a bpf filesystem") {
		t.Errorf("unload of %s: exit %d, stderr %q; want %d, not on a bpf filesystem", dir, code, errb.String(), exitUsage)
	}
	if strings.Contains(out.String(), "unloaded") {
		t.Errorf("unload of %s says %q", dir, out.String())
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != len(files)+2 {
		t.Errorf("after unload %s holds %v (%v), want all %d entries", dir, entries, err, len(files)+2)
	}

	testnet.RequireRoot(t)
	missing := testnet.PinDir(t) // never made
	out.Reset()
	errb.Reset()
	code = Main([]string{"unload", "--pin-dir", missing}, &out, &errb)
	if code != exitFailure || strings.Contains(out.String(), "unloaded") ||
		!strings.Contains(errb.String(), "nothing to unload: "+missing+" does not exist") {
		t.Errorf("unload of missing %s: exit %d, stdout %q, stderr %q; want %d, nothing to unload", missing, code, out.String(), errb.String(), exitFailure)
	}
}

// TestPinDirChecked: a --pin-dir not on bpffs is refused with exit 2 by
// every command, before anything is created, with a hint that names
// /sys/fs/bpf and does not suggest mounting over the user's directory.
func TestPinDirChecked(t *testing.T) {
	tmp := t.TempDir()
	deep := filepath.Join(tmp, "a", "b")
	for _, args := range [][]string{{"list"}, {"scan", "--dry-run"}, {"run", "--dry-run"}, {"unload"}} {
		for _, pin := range []string{tmp, deep} {
			var out, errb bytes.Buffer
			code := Main(append(args, "--pin-dir", pin), &out, &errb)
			msg := errb.String()
			if code != exitUsage || !strings.Contains(msg, "not on a bpf filesystem") || !strings.Contains(msg, "/sys/fs/bpf") ||
				strings.Contains(msg, "mount -t bpf") || strings.Count(msg, "\n") != 1 {
				t.Errorf("%q --pin-dir %s: exit %d, stderr %q; want %d and one line naming /sys/fs/bpf", args, pin, code, msg, exitUsage)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused --pin-dir was created: %v", err)
	}
}

// TestEmptyPinDir: --pin-dir "" is bad usage for every command, not the
// default pin dir. Each command runs in a mount namespace of its own with
// a fresh bpffs at /sys/fs/bpf, so that a failure (a tracker attached in
// the default pin dir) dies with it and never reaches the machine's.
func TestEmptyPinDir(t *testing.T) {
	h := newE2E(t)
	for _, args := range [][]string{{"list"}, {"scan", "--dry-run"}, {"run", "--dry-run"}, {"unload"}, {"doctor"}} {
		script := `mount -t bpf bpf /sys/fs/bpf && "$0" "$@"; code=$?; ls -A /sys/fs/bpf | sed 's/^/entry: /' >&2; exit $code`
		cmd := h.ns.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, h.bin},
			append(args, "--pin-dir", "")...)...)
		r := h.mustRefuse(exitUsage, cmd, "pin dir is empty")
		if strings.Contains(r.stderr, "entry: hck-bpf\n") {
			t.Errorf("%q --pin-dir \"\": made the default pin dir: %q", args, r.stderr)
		}
	}
}

// TestWrongPinKinds: a directory, a symlink or a BPF object of the wrong
// kind under one of hck-bpf's pin names is refused with exit 2 and a
// message naming it, and nothing is loaded or pinned.
func TestWrongPinKinds(t *testing.T) {
	h := newE2E(t)
	other := testnet.PinDir(t)
	h.want(0, h.runCmd(h.at(other, "list")))
	otherLink, err := link.LoadPinnedLink(filepath.Join(other, "hck_set_state_link"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer otherLink.Close()
	if err := os.Mkdir(h.pin, 0o700); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, what string
		plant      func(path string) error
	}{
		{"hck_conns", "is a directory, not hck-bpf's pinned map", func(p string) error { return os.Mkdir(p, 0o700) }},
		{"hck_netns", "is a symlink, not hck-bpf's pinned map", func(p string) error { return os.Symlink(filepath.Join(other, "hck_netns"), p) }},
		{"hck_conns", "is a pinned link, not hck-bpf's pinned map", otherLink.Pin},
		{"hck_set_state_link", "is a pinned map, not hck-bpf's pinned link", newArrayMap(t, "hck_planted").Pin},
		{"hck_set_state_link", "is a directory, not hck-bpf's pinned link", func(p string) error { return os.Mkdir(p, 0o700) }},
	}
	for _, c := range cases {
		path := h.pinPath(c.name)
		if err := c.plant(path); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"list"}, {"scan", "--dry-run"}} {
			h.mustRefuse(exitUsage, h.command(args...), path+" "+c.what)
		}
		entries, _ := os.ReadDir(h.pin)
		if len(entries) != 1 {
			t.Errorf("%s %s: the pin dir holds %d entries after the refusals, want only it", path, c.what, len(entries))
		}
		// (otherLink.Pin moved the other pin dir's link here: removed,
		// it is detached once otherLink is closed.)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// pinForeign pins l in the test's pin dir as hck_set_state_link.
func (h *e2e) pinForeign(l link.Link) {
	h.t.Helper()
	if err := os.MkdirAll(h.pin, 0o700); err != nil {
		h.t.Fatal(err)
	}
	_ = os.Remove(h.pinPath("hck_set_state_link"))
	if err := l.Pin(h.pinPath("hck_set_state_link")); err != nil {
		h.t.Fatal(err)
	}
}

// refusesForeign: list, scan and run refuse the pin dir, naming the
// reason, and doctor fails its bpffs check for it.
func (h *e2e) refusesForeign(reason string) {
	h.t.Helper()
	for _, args := range [][]string{{"list"}, {"scan", "--dry-run"}, {"run", "--dry-run"}} {
		h.mustRefuse(exitUsage, h.command(args...), "hck_set_state_link is not hck-bpf's tracker", reason)
	}
	r := h.runCmd(h.command("doctor", "--json"))
	var checks []doctor.Check
	if err := json.Unmarshal([]byte(r.stdout), &checks); err != nil {
		h.t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
	}
	for _, c := range checks {
		if c.Name == doctor.CheckBPFFS && (c.Status != doctor.Fail || !strings.Contains(c.Detail, reason)) {
			h.t.Errorf("doctor's %s check: %s %q, want a failure saying %q", c.Name, c.Status, c.Detail, reason)
		}
	}
	if r.code != exitFailure {
		h.t.Errorf("doctor with a foreign link: exit %d, want %d", r.code, exitFailure)
	}
}

// TestForeignLink: a link pinned as hck_set_state_link that is not this
// pin dir's tracker is refused: an iterator's link, another program on
// inet_sock_set_state, and the tracker of another pin dir.
func TestForeignLink(t *testing.T) {
	h := newE2E(t)

	iterProg, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "hck_foreign", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: "tcp",
		License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer iterProg.Close()
	it, err := link.AttachIter(link.IterOptions{Program: iterProg})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	h.pinForeign(it)
	h.refusesForeign("its link type is iter, not raw_tracepoint")

	tpProg, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "hck_foreign", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "inet_sock_set_state",
		License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tpProg.Close()
	tp, err := link.AttachTracing(link.TracingOptions{Program: tpProg, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	h.pinForeign(tp)
	h.refusesForeign(`its program is Tracing "hck_foreign", not the tracing program "hck_set_state"`)

	// hck-bpf's own tracker, but another pin dir's: it writes that dir's
	// hck_conns, and this pin dir's maps would never see a socket.
	other := testnet.PinDir(t)
	h.want(0, h.runCmd(h.at(other, "list")))
	_ = os.Remove(h.pinPath("hck_set_state_link"))
	h.attach() // this pin dir's maps and tracker
	theirs, err := link.LoadPinnedLink(filepath.Join(other, "hck_set_state_link"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	h.pinForeign(theirs)
	h.refusesForeign("does not write this pin dir's hck_conns")
	// unload removes what is pinned under the name, as any pin of its own.
	// (Pin moved the other pin dir's link here.) unload removes what is
	// pinned under the name, as any pin of its own.
	h.mustRun(0, "unload")
	h.want(0, h.runCmd(h.at(other, "unload")))
}

// TestOneServicePerPinDir: a second service on a pin dir refuses to start
// (exit 1, naming the first's pid); list and scan --live run beside the
// service; the service keeps destroying on time, its notifications on.
func TestOneServicePerPinDir(t *testing.T) {
	const threshold = 2 * time.Second
	h := newE2E(t)
	first := h.startService("run", "--live", "--close-wait-timeout", "2", "--log-format", "json")
	pid := first.cmd.Process.Pid
	h.mustRefuse(exitFailure, h.command("run", "--live", "--close-wait-timeout", "2"),
		fmt.Sprintf("is locked by pid %d", pid), "one 'hck-bpf run' per pin dir")
	h.mustRefuse(exitFailure, h.command("run", "--dry-run"), fmt.Sprintf("is locked by pid %d", pid))
	h.mustRun(0, "list")
	h.mustRun(0, "scan", "--live", "--close-wait-timeout", "2")

	s, _ := h.ns.CloseWait(t, "tcp4")
	ent := h.entryTime(s)
	deadline := ent + uint64(threshold)
	samples := h.sampleUntil(s, deadline+uint64(5*time.Second))
	checkDeadline(t, s, samples, ent, deadline, 2*time.Second)
	first.logs.waitFor(t, 5*time.Second, `"action":"destroyed"`, fmt.Sprintf(`"cookie":%d`, s.Cookie))
	first.stop()
}

// notify reads whether the tracker's event notifications are on.
func (h *e2e) notify() bool {
	h.t.Helper()
	m, err := ebpf.LoadPinnedMap(h.pinPath("hck_config"), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer m.Close()
	var cfg bpf.TrackerHckCfg
	if err := m.Lookup(uint32(0), &cfg); err != nil {
		h.t.Fatal(err)
	}
	return cfg.Notify != 0
}

// TestKilledServiceEvents: a service killed with SIGKILL leaves its
// notifications on, which nobody reads; the next command that finds no
// service running switches them off. One that finds a service leaves them.
func TestKilledServiceEvents(t *testing.T) {
	h := newE2E(t)
	svc := h.startService("run", "--dry-run")
	h.mustRun(0, "list")
	if !h.notify() {
		t.Fatal("notifications off while the service runs")
	}
	if err := svc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-svc.exited
	if !h.notify() {
		t.Fatal("notifications off after SIGKILL: nothing to test")
	}
	h.mustRun(0, "list")
	if h.notify() {
		t.Error("notifications still on after list found no service")
	}
}

// TestUnloadUnderService: unload refuses while a service runs on the pin
// dir (exit 1, naming its pid) and changes nothing; --force stops the
// service (which exits cleanly) and unloads.
func TestUnloadUnderService(t *testing.T) {
	h := newE2E(t)
	svc := h.startService("run", "--dry-run", "--log-format", "json")
	pid := svc.cmd.Process.Pid
	id := h.linkID(h.pinPath("hck_set_state_link"))

	r := h.mustRefuse(exitFailure, h.command("unload"), fmt.Sprintf("is locked by pid %d", pid), "--force")
	if strings.Contains(r.stdout, "unloaded") {
		t.Errorf("refused unload says %q", r.stdout)
	}
	for _, name := range []string{"hck_set_state_link", "hck_conns", "hck_netns", "hck_counters", "hck_events", "hck_config"} {
		if _, err := os.Stat(h.pinPath(name)); err != nil {
			t.Errorf("refused unload removed %s: %v", name, err)
		}
	}
	select {
	case <-svc.exited:
		t.Fatalf("service exited after a refused unload: %v", svc.waitErr)
	default:
	}

	r = h.mustRun(0, "unload", "--force")
	if !strings.Contains(r.stdout, fmt.Sprintf("stopped the service, pid %d\nunloaded %s\n", pid, h.pin)) {
		t.Errorf("unload --force says %q", r.stdout)
	}
	select {
	case <-svc.exited:
		if svc.waitErr != nil {
			t.Errorf("service stopped by unload --force: %v\n%s", svc.waitErr, svc.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("service still running after unload --force")
	}
	svc.logs.waitFor(t, time.Second, "service stopped")
	if _, err := os.Stat(h.pin); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pin dir after unload --force: %v", err)
	}
	h.linkGone(id)
}

// TestRunLiveNeedsNetAdmin: run --live without CAP_NET_ADMIN, which
// SOCK_DESTROY needs, refuses to start (exit 1, naming it) before it
// attaches anything.
func TestRunLiveNeedsNetAdmin(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs util-linux setpriv to drop capabilities")
	}
	h := newE2E(t)
	cmd := h.ns.Command("setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
		h.bin, "run", "--live", "--pin-dir", h.pin)
	h.mustRefuse(exitFailure, cmd, "CAP_NET_ADMIN")
	if _, err := os.Stat(h.pin); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run --live without CAP_NET_ADMIN made its pin dir: %v", err)
	}
}

// TestCapabilityMessages: without CAP_PERFMON (and CAP_SYS_ADMIN), which
// loading the tracker needs, list fails naming the capabilities that are
// needed, and neither it nor doctor blames RLIMIT_MEMLOCK or asks for
// CAP_SYS_RESOURCE, which this kernel does not need.
func TestCapabilityMessages(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs util-linux setpriv to drop capabilities")
	}
	h := newE2E(t)
	only := func(caps string, args ...string) *exec.Cmd {
		return h.ns.Command("setpriv", append([]string{"--inh-caps=-all", "--bounding-set=-all," + caps, h.bin},
			append(args, "--pin-dir", h.pin)...)...)
	}
	r := h.mustRefuse(exitFailure, only("+bpf,+net_admin", "list"), "CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN")
	for _, wrong := range []string{"MEMLOCK", "CAP_SYS_RESOURCE"} {
		if strings.Contains(r.stderr, wrong) {
			t.Errorf("list without CAP_PERFMON blames %s: %q", wrong, r.stderr)
		}
	}
	for caps, missing := range map[string]string{"+bpf,+net_admin": "CAP_PERFMON", "+bpf,+perfmon": "CAP_NET_ADMIN"} {
		r := h.runCmd(only(caps, "doctor", "--json"))
		var checks []doctor.Check
		if err := json.Unmarshal([]byte(r.stdout), &checks); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, r.stdout)
		}
		for _, c := range checks {
			if c.Name == doctor.CheckCapabilities && (c.Status != doctor.Fail || !strings.Contains(c.Detail, "missing "+missing)) {
				t.Errorf("doctor with %s: %s check %s %q, want a failure naming %s", caps, c.Name, c.Status, c.Detail, missing)
			}
			for _, wrong := range []string{"MEMLOCK", "CAP_SYS_RESOURCE"} {
				if strings.Contains(c.Detail, wrong) {
					t.Errorf("doctor with %s: %s check blames %s: %q", caps, c.Name, wrong, c.Detail)
				}
			}
		}
	}
}

// TestMapSizeFromPins: list, scan and run use the size of the pinned map
// whatever --map-size's default; an explicit --map-size that differs from
// it is refused with exit 2, naming both.
func TestMapSizeFromPins(t *testing.T) {
	h := newE2E(t)
	h.mustRun(0, "list", "--map-size", "1000")
	size := func() uint32 {
		m, err := ebpf.LoadPinnedMap(h.pinPath("hck_conns"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		return m.MaxEntries()
	}
	if got := size(); got != 1000 {
		t.Fatalf("pinned map size %d, want 1000", got)
	}
	h.mustRun(0, "list")
	h.mustRun(0, "list", "--map-size", "1000")
	h.mustRun(0, "scan", "--dry-run")
	h.startService("run", "--dry-run").stop()
	for _, args := range [][]string{{"list"}, {"scan", "--dry-run"}, {"run", "--dry-run"}} {
		h.mustRefuse(exitUsage, h.command(append(args, "--map-size", "2000")...), "--map-size 2000", "holds 1000")
	}
	if got := size(); got != 1000 {
		t.Errorf("pinned map size %d after the refusals, want 1000", got)
	}
	h.mustRun(0, "unload")
	h.mustRun(0, "list", "--map-size", "2000")
	if got := size(); got != 2000 {
		t.Errorf("pinned map size %d after unload and --map-size 2000, want 2000", got)
	}
}
