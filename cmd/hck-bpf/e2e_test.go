package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// End-to-end tests: the hck-bpf binary, built once, run inside a network
// namespace of the test's own with nsenter (ns.Command), always with a pin
// dir of the test's own. The binary's default scope is the namespace it
// runs in, so --live only ever reaches the sockets the test built there.

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// hckBPF builds the binary the first time a privileged test asks for it.
// HCK_BPF_TEST_BIN names one built beforehand instead: the kernel matrix
// (make test-kernels) builds it on the host, since its guests have no
// writable build cache and compile slowly under qemu.
func hckBPF(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HCK_BPF_TEST_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("HCK_BPF_TEST_BIN: %v", err)
		}
		return p
	}
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		if binDir, binErr = os.MkdirTemp("", "hck-bpf-e2e-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "hck-bpf")
		out, err := exec.Command(goBin, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// e2e is one namespace, one pin dir and the binary.
type e2e struct {
	t   *testing.T
	ns  *testnet.NS
	bin string
	pin string
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	ns := testnet.New(t) // skips unless root
	return &e2e{t: t, ns: ns, bin: hckBPF(t), pin: testnet.PinDir(t)}
}

type result struct {
	stdout, stderr string
	code           int
}

// command is the binary in the namespace, with the test's pin dir.
func (h *e2e) command(args ...string) *exec.Cmd {
	return h.ns.Command(h.bin, append(args, "--pin-dir", h.pin)...)
}

// runCmd runs cmd to completion and returns its output and exit code.
func (h *e2e) runCmd(cmd *exec.Cmd) result {
	h.t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		h.t.Fatalf("%s: %v", cmd, err)
	}
	h.t.Logf("%s: exit %d", strings.Join(cmd.Args[3:], " "), r.code)
	return r
}

// mustRun runs the binary and fails unless it exits with code.
func (h *e2e) mustRun(code int, args ...string) result {
	h.t.Helper()
	return h.want(code, h.runCmd(h.command(args...)))
}

func (h *e2e) want(code int, r result) result {
	h.t.Helper()
	if r.code != code {
		h.t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// attach pins a tracker (list attaches one when none is pinned): sockets
// are tracked from now on.
func (h *e2e) attach() {
	h.t.Helper()
	r := h.mustRun(0, "list", "--json")
	if strings.TrimSpace(r.stdout) != "[]" {
		h.t.Fatalf("fresh namespace lists %q, want []", r.stdout)
	}
}

// jsonLines decodes every line of a --log-format json output.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber() // cookies are uint64
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("not a JSON log line: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// cookiesWith collects the cookies of the lines whose action is action.
func cookiesWith(t *testing.T, lines []map[string]any, action string) map[uint64]bool {
	t.Helper()
	set := map[uint64]bool{}
	for _, m := range lines {
		if m["action"] != action {
			continue
		}
		n, ok := m["cookie"].(json.Number)
		if !ok {
			t.Fatalf("%s line without cookie: %v", action, m)
		}
		c, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		set[c] = true
	}
	return set
}

// summary is the one line with the sweep's totals.
func summary(t *testing.T, lines []map[string]any) map[string]any {
	t.Helper()
	for _, m := range lines {
		if m["summary"] == "sweep" {
			return m
		}
	}
	t.Fatal("no summary line")
	return nil
}

func sorted(set map[uint64]bool) []uint64 { return slices.Sorted(maps.Keys(set)) }

// named is a socket the test built, with what it should be.
type named struct {
	name  string
	s     *testnet.Sock
	state conn.State
}

// check fails t for every socket not in its state.
func check(t *testing.T, ns *testnet.NS, when string, socks ...named) {
	t.Helper()
	dump := ns.MustDump(t)
	for _, n := range socks {
		if d, ok := testnet.Lookup(dump, n.s.Cookie); !ok || d.State != n.state {
			t.Errorf("%s: %s %s: kernel has %v (alive %v), want %s", when, n.name, n.s, d, ok, n.state)
		}
	}
}

// thresholdFlags: 1s for the states whose sockets below are built hung, an
// hour for FIN_WAIT1/FIN_WAIT2, so that no hung socket's peer is hung too
// (destroying one end resets the other, which live would then find gone
// while dry-run, which destroys nothing, plans both).
var thresholdFlags = []string{"--close-wait-timeout", "1", "--last-ack-timeout", "1", "--closing-timeout", "1",
	"--time-wait-timeout", "1", "--fin-wait-timeout", "1h"}

// TestDryRunNamesWhatLiveDestroys: a dry run destroys nothing and names
// exactly the sockets a live run then destroys.
func TestDryRunNamesWhatLiveDestroys(t *testing.T) {
	h := newE2E(t)
	h.attach()
	ns := h.ns

	// Hung once past 1s.
	cw4, fw2a := ns.CloseWait(t, "tcp4")
	cw6, fw2b := ns.CloseWait(t, "tcp6")
	la, tw := ns.LastAck(t, "tcp4") // tw: a TIME_WAIT timewait socket, its file open
	cl, fw1 := ns.Closing(t, "tcp6")
	// A TIME_WAIT reached from an orphaned FIN_WAIT2: no event reports
	// it, the sweep's walk of the namespace does.
	tw2 := ns.TimeWait(t, "tcp6")
	hung := []named{
		{"CLOSE_WAIT/tcp4", cw4, conn.CloseWait},
		{"CLOSE_WAIT/tcp6", cw6, conn.CloseWait},
		{"LAST_ACK/tcp4", la, conn.LastAck},
		{"TIME_WAIT/tcp4", tw, conn.TimeWait},
		{"CLOSING/tcp6", cl, conn.Closing},
		{"TIME_WAIT/tcp6", tw2, conn.TimeWait},
	}
	// Peers in FIN_WAIT1/FIN_WAIT2 (an hour's threshold), and healthy ones.
	notHung := []named{
		{"FIN_WAIT2 peer/tcp4", fw2a, conn.FinWait2},
		{"FIN_WAIT2 peer/tcp6", fw2b, conn.FinWait2},
		{"FIN_WAIT1 peer/tcp6", fw1, conn.FinWait1},
	}
	ec, es := ns.Established(t, "tcp4")
	healthy := []named{
		{"ESTABLISHED client", ec, conn.Established},
		{"ESTABLISHED server", es, conn.Established},
		{"LISTEN/tcp6", ns.Listen(t, "tcp6"), conn.Listen},
		{"SYN_SENT/tcp4", ns.SynSent(t, "tcp4"), conn.SynSent},
	}
	want := map[uint64]bool{}
	for _, n := range hung {
		want[n.s.Cookie] = true
	}
	time.Sleep(1200 * time.Millisecond)

	dry := h.mustRun(0, append([]string{"scan", "--dry-run", "--log-format", "json"}, thresholdFlags...)...)
	dryLines := jsonLines(t, dry.stdout)
	planned := cookiesWith(t, dryLines, "would_destroy")
	if len(cookiesWith(t, dryLines, "destroyed")) != 0 {
		t.Error("dry run says it destroyed something")
	}
	check(t, ns, "after dry run", slices.Concat(hung, notHung, healthy)...)

	live := h.mustRun(0, append([]string{"scan", "--live", "--log-format", "json"}, thresholdFlags...)...)
	liveLines := jsonLines(t, live.stdout)
	destroyed := cookiesWith(t, liveLines, "destroyed")

	if len(planned) == 0 || !maps.Equal(planned, destroyed) {
		t.Errorf("dry run would destroy %v, live destroyed %v", sorted(planned), sorted(destroyed))
	}
	if !maps.Equal(planned, want) {
		t.Errorf("dry run would destroy %v, want the hung sockets %v\n%s", sorted(planned), sorted(want), dry.stdout)
	}
	for _, s := range []struct {
		lines []map[string]any
		key   string
	}{{dryLines, "terminated"}, {liveLines, "terminated"}} {
		sum := summary(t, s.lines)
		if sum[s.key] != json.Number(strconv.Itoa(len(want))) || sum["failed"] != json.Number("0") {
			t.Errorf("summary %v, want %d terminated, 0 failed", sum, len(want))
		}
	}
	for _, n := range hung {
		ns.Await(t, n.s.Gone())
	}
	// The FIN_WAIT2 peers were reset by their CLOSE_WAIT's destroy; the
	// FIN_WAIT1 peer of CLOSING was not (an abort in CLOSING sends no
	// reset), nor was anything healthy.
	check(t, ns, "after live run", append(healthy, notHung[2])...)
}

// lineFormat is the scripts' log line.
var lineFormat = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} - (DEBUG|INFO|WARN|ERROR) - `)

// TestTextOutput: the root form "hck-bpf --dry-run" prints the scripts'
// lines for a hung connection, and their summary.
func TestTextOutput(t *testing.T) {
	h := newE2E(t)
	h.attach()
	s, c := h.ns.CloseWait(t, "tcp4")
	time.Sleep(1200 * time.Millisecond)
	r := h.mustRun(0, "--dry-run", "--close-wait-timeout", "1")

	raw, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	who := fmt.Sprintf("tcp CLOSE_WAIT %s -> %s (PID: %d, Process: %s)", s.Local, s.Remote, os.Getpid(), strings.TrimSpace(string(raw)))
	var msgs []string
	for _, l := range strings.Split(strings.TrimRight(r.stdout, "\n"), "\n") {
		loc := lineFormat.FindStringIndex(l)
		if loc == nil {
			t.Errorf("not a 'YYYY-MM-DD HH:MM:SS - LEVEL - message' line: %q", l)
			continue
		}
		msgs = append(msgs, l[len("2006-01-02 15:04:05 - "):])
	}
	out := strings.Join(msgs, "\n")
	for _, want := range []string{
		"WARN - Hung connection detected: " + who + "\n" +
			"WARN -   Reason: CLOSE_WAIT for ",
		"≥ 1s threshold (peer closed; the application never closed its socket)\n" +
			"INFO - [DRY RUN] Would terminate: " + who + "\n",
		"INFO - Summary:\n" +
			"INFO -   Total connections scanned: 2 (tracked in closing states)\n" +
			"INFO -   Hung connections found: 1\n" +
			"INFO -   Connections skipped: 0\n" +
			"INFO -   Connections terminated: 1 (dry run: would terminate)\n" +
			"INFO -   Failed terminations: 0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks\n%s\n--- output:\n%s", want, r.stdout)
		}
	}
	check(t, h.ns, "after dry run", named{"CLOSE_WAIT", s, conn.CloseWait}, named{"FIN_WAIT2", c, conn.FinWait2})
}

// TestListForms: the scripts' list forms of --exclude-ports (Python's
// nargs, Bash's one quoted word, commas, repeated flags) all exclude the
// second port, not only 22.
func TestListForms(t *testing.T) {
	for _, form := range []struct {
		name string
		args func(port string) []string
	}{
		{"python", func(p string) []string { return []string{"--exclude-ports", "22", p} }},
		{"bash", func(p string) []string { return []string{"--exclude-ports", "22 " + p} }},
		{"commas", func(p string) []string { return []string{"--exclude-ports", "22," + p} }},
		{"repeated", func(p string) []string { return []string{"--exclude-ports", "22", "--exclude-ports", p} }},
	} {
		t.Run(form.name, func(t *testing.T) {
			t.Parallel()
			h := newE2E(t)
			h.attach()
			kept, _ := h.ns.CloseWait(t, "tcp4")
			hit, _ := h.ns.CloseWait(t, "tcp4")
			port := strconv.Itoa(int(kept.Local.Port()))
			time.Sleep(1200 * time.Millisecond)
			args := append([]string{"--live", "--close-wait-timeout", "1", "--log-format", "json", "-v"}, form.args(port)...)
			lines := jsonLines(t, h.mustRun(0, args...).stdout)
			if got := cookiesWith(t, lines, "destroyed"); !maps.Equal(got, map[uint64]bool{hit.Cookie: true}) {
				t.Errorf("destroyed %v, want only %d", sorted(got), hit.Cookie)
			}
			skipped := false
			for _, m := range lines {
				if m["action"] == "skip" && m["cookie"] == json.Number(strconv.FormatUint(kept.Cookie, 10)) {
					skipped = m["skip"] == "excluded port" && strings.Contains(fmt.Sprint(m["message"]), "local port "+port+" is excluded")
				}
			}
			if !skipped {
				t.Errorf("no 'local port %s is excluded' skip line for %s", port, kept)
			}
			h.ns.Await(t, kept.In(conn.CloseWait), hit.Gone())
		})
	}
}

// logWatch collects a running command's output lines.
type logWatch struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func watch(r io.Reader) *logWatch {
	w := &logWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
		}
	}()
	return w
}

// find returns the first line holding every part.
func (w *logWatch) find(parts ...string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
next:
	for _, l := range w.lines {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		return l, true
	}
	return "", false
}

func (w *logWatch) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// waitFor waits up to timeout for a line holding every part.
func (w *logWatch) waitFor(t *testing.T, timeout time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := w.find(parts...); ok {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q after %v; output:\n%s", parts, timeout, w.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// notifier is a NOTIFY_SOCKET of the test's own: the systemd readiness
// protocol, as the service's unit uses it (Type=notify).
type notifier struct {
	path  string
	mu    sync.Mutex
	msgs  []string
	ready chan struct{} // closed at READY=1
}

// notifySocket listens on a unixgram socket in a directory of the test's
// own; the service's environment gets NOTIFY_SOCKET=path (notify.env).
func notifySocket(t *testing.T) *notifier {
	t.Helper()
	// A short path: a socket's name must fit sun_path's 108 bytes.
	dir, err := os.MkdirTemp("", "hck-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifier{path: filepath.Join(dir, "notify"), ready: make(chan struct{})}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := c.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			for _, m := range strings.Split(string(buf[:k]), "\n") {
				n.msgs = append(n.msgs, m)
				if m == "READY=1" && !slices.Contains(n.msgs[:len(n.msgs)-1], "READY=1") {
					close(n.ready)
				}
			}
			n.mu.Unlock()
		}
	}()
	return n
}

// env is the environment of a command that reports to n.
func (n *notifier) env() []string { return append(os.Environ(), "NOTIFY_SOCKET="+n.path) }

// waitReady waits up to timeout for READY=1.
func (n *notifier) waitReady(t *testing.T, timeout time.Duration, logs *logWatch) {
	t.Helper()
	select {
	case <-n.ready:
	case <-time.After(timeout):
		t.Fatalf("no READY=1 on NOTIFY_SOCKET after %v; output:\n%s", timeout, logs.all())
	}
}

// sample is one look at a socket: alive or not, seen by a dump made
// between start and end (CLOCK_BOOTTIME).
type sample struct {
	start, end uint64
	alive      bool
}

// TestService: "run --live" destroys a CLOSE_WAIT when its threshold is
// reached, not before, and logs it; SIGTERM stops it cleanly, the pins
// stay; unload removes them.
func TestService(t *testing.T) {
	const threshold = 1500 * time.Millisecond
	h := newE2E(t)
	svc := h.startService("run", "--live", "--close-wait-timeout", "1.5")
	logs := svc.logs

	before := conn.Now()
	s, _ := h.ns.CloseWait(t, "tcp4")
	after := conn.Now()

	// The exact entry time, read from the service's pinned map.
	tr, err := tracking.Open(tracking.Options{PinDir: h.pin})
	if err != nil {
		t.Fatal(err)
	}
	conns, err := tr.Conns(h.ns.Inode())
	tr.Close()
	if err != nil {
		t.Fatal(err)
	}
	var ent uint64
	for _, c := range conns {
		if c.Cookie == s.Cookie && c.Exact {
			ent = c.Entered
		}
	}
	if ent == 0 {
		t.Fatalf("no exact entry for %s in %v", s, conns)
	}
	if ent < before || ent > after {
		t.Errorf("entered at %d, outside the build [%d, %d]", ent, before, after)
	}
	deadline := ent + uint64(threshold)

	var samples []sample
	limit := deadline + uint64(5*time.Second)
	for {
		start := conn.Now()
		d, ok, err := h.ns.Find(s.Cookie)
		end := conn.Now()
		if err != nil {
			t.Fatal(err)
		}
		alive := ok && d.State != conn.Close
		samples = append(samples, sample{start, end, alive})
		if !alive || end > limit {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	last := samples[len(samples)-1]
	if last.alive {
		t.Fatalf("still alive %v after its deadline", time.Duration(last.end-deadline))
	}
	// Gone in a dump that ended before the deadline: destroyed too early.
	if last.end < deadline {
		t.Errorf("destroyed at the latest %v before its deadline", time.Duration(deadline-last.end))
	}
	// Not a benchmark: within 2s of the deadline.
	if last.start > deadline && time.Duration(last.start-deadline) > 2*time.Second {
		t.Errorf("still alive %v after its deadline", time.Duration(last.start-deadline))
	}
	t.Logf("%d samples; alive until %v after entering, gone at %v (deadline %v)", len(samples),
		time.Duration(samples[max(0, len(samples)-2)].end-ent), time.Duration(last.end-ent), threshold)

	line := logs.waitFor(t, 5*time.Second, "Terminated: ", fmt.Sprintf("(socket cookie %d)", s.Cookie))
	if !strings.Contains(line, fmt.Sprintf("tcp CLOSE_WAIT %s -> %s", s.Local, s.Remote)) {
		t.Errorf("kill line %q does not name %s", line, s)
	}

	svc.stop() // "service stopped" logged, exit 0
	for _, pin := range []string{"hck_conns", "hck_set_state_link"} {
		if _, err := os.Stat(filepath.Join(h.pin, pin)); err != nil {
			t.Errorf("pin %s gone after SIGTERM: %v", pin, err)
		}
	}

	r := h.mustRun(0, "unload")
	if strings.TrimSpace(r.stdout) != "unloaded "+h.pin {
		t.Errorf("unload says %q", r.stdout)
	}
	if _, err := os.Stat(h.pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir after unload: %v", err)
	}
}

// TestExitCodeFailed: a destroy the kernel refuses makes scan --live exit
// 1 and count it. The refusal is a real one: the binary runs as root
// without CAP_NET_ADMIN (a unit file that forgot it), which SOCK_DESTROY
// needs; loading the tracker does not.
func TestExitCodeFailed(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs util-linux setpriv to drop CAP_NET_ADMIN")
	}
	h := newE2E(t)
	h.attach()
	s, _ := h.ns.CloseWait(t, "tcp4")
	time.Sleep(1200 * time.Millisecond)
	// nsenter (which needs CAP_SYS_ADMIN) enters the namespace, then
	// setpriv drops CAP_NET_ADMIN for good and runs hck-bpf.
	cmd := h.ns.Command("setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
		h.bin, "--live", "--close-wait-timeout", "1", "--log-format", "json", "--pin-dir", h.pin)
	r := h.want(exitFailure, h.runCmd(cmd))
	lines := jsonLines(t, r.stdout)
	failed := cookiesWith(t, lines, "failed")
	if !maps.Equal(failed, map[uint64]bool{s.Cookie: true}) {
		t.Errorf("failed %v, want %d", sorted(failed), s.Cookie)
	}
	for _, m := range lines {
		if m["action"] == "failed" && !strings.Contains(fmt.Sprint(m["error"]), "operation not permitted") {
			t.Errorf("failure not EPERM: %v", m["error"])
		}
	}
	if sum := summary(t, lines); sum["failed"] != json.Number("1") {
		t.Errorf("summary %v, want 1 failed", sum)
	}
	h.ns.Await(t, s.In(conn.CloseWait))
}

// TestListShowsFullMap: sockets a full map refused are not listed; list
// says so, on stdout as a comment line, on stderr with --json (whose
// stdout stays one JSON array).
func TestListShowsFullMap(t *testing.T) {
	h := newE2E(t)
	r := h.mustRun(0, "list", "--map-size", "4")
	if strings.Contains(r.stdout, "map was full") {
		t.Fatalf("fresh tracker reports a full map:\n%s", r.stdout)
	}
	for range 4 {
		h.ns.CloseWait(t, "tcp4") // eight closing sockets, room for four
	}
	r = h.mustRun(0, "list", "--map-size", "4")
	if !strings.Contains(r.stdout, "# warning: the tracker's map was full") {
		t.Errorf("list after overflow says nothing of it:\n%s", r.stdout)
	}
	r = h.mustRun(0, "list", "--map-size", "4", "--json")
	var entries []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 4 {
		t.Errorf("list --json after overflow: %d entries, %v:\n%s", len(entries), err, r.stdout)
	}
	if !strings.Contains(r.stderr, "warning: the tracker's map was full") {
		t.Errorf("list --json after overflow warns nothing on stderr: %q", r.stderr)
	}
}

// TestGlobalFlagsFirst: global flags before the subcommand run that
// subcommand; global flags before the scripts' flags still run scan.
func TestGlobalFlagsFirst(t *testing.T) {
	h := newE2E(t)
	run := func(code int, args ...string) result {
		t.Helper()
		return h.want(code, h.runCmd(h.ns.Command(h.bin, args...)))
	}
	if r := run(0, "-v", "--pin-dir", h.pin, "list", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("list lists %q, want []", r.stdout)
	}
	r := run(0, "--pin-dir", h.pin, "--log-format", "json", "--dry-run", "--close-wait-timeout", "1")
	if sum := summary(t, jsonLines(t, r.stdout)); sum["dry_run"] != true {
		t.Errorf("scripts' form after global flags: summary %v, want a dry-run scan", sum)
	}
	if r := run(0, "--pin-dir", h.pin, "unload"); strings.TrimSpace(r.stdout) != "unloaded "+h.pin {
		t.Errorf("unload says %q", r.stdout)
	}
}

// holdIn starts a process whose comm is name (a copy of sleep under that
// name) holding s, and closes the test's own descriptor: name is then the
// socket's only owner. The process is killed when the test ends. It
// returns the process's pid.
func holdIn(t *testing.T, name string, s *testnet.Sock) int {
	t.Helper()
	return holdAs(t, name, s, false).pid()
}

// TestExcludeProcessWithSpace: a quoted name keeps its space. The Bash
// form "my proc" stays two names ("my", "proc"); "'my proc'" is one, and
// spares the socket of process "my proc", not the one of process "proc".
func TestExcludeProcessWithSpace(t *testing.T) {
	h := newE2E(t)
	h.attach()
	mine, _ := h.ns.CloseWait(t, "tcp4")
	other, _ := h.ns.CloseWait(t, "tcp6")
	holdIn(t, "my proc", mine)
	holdIn(t, "proc", other)
	time.Sleep(1200 * time.Millisecond)
	base := []string{"--close-wait-timeout", "1", "--log-format", "json", "-v"}

	// Bash form: two names, so "proc" is spared and "my proc" is not.
	dry := jsonLines(t, h.mustRun(0, append([]string{"--dry-run", "--exclude-processes", "my proc"}, base...)...).stdout)
	if got := cookiesWith(t, dry, "would_destroy"); !maps.Equal(got, map[uint64]bool{mine.Cookie: true}) {
		t.Errorf("Bash form: would destroy %v, want only my proc's %d", sorted(got), mine.Cookie)
	}

	// Quoted, in the Python form next to another name: one name.
	live := jsonLines(t, h.mustRun(0, append([]string{"--live", "--exclude-processes", "nginx", "'my proc'"}, base...)...).stdout)
	if got := cookiesWith(t, live, "destroyed"); !maps.Equal(got, map[uint64]bool{other.Cookie: true}) {
		t.Errorf("destroyed %v, want only proc's %d", sorted(got), other.Cookie)
	}
	spared := false
	for _, m := range live {
		if m["action"] == "skip" && m["cookie"] == json.Number(strconv.FormatUint(mine.Cookie, 10)) {
			spared = m["skip"] == "excluded process" && m["process"] == "my proc"
		}
	}
	if !spared {
		t.Errorf("no 'excluded process' skip line for my proc's %d:\n%v", mine.Cookie, live)
	}
	h.ns.Await(t, mine.In(conn.CloseWait), other.Gone())
}

// TestLogFileCreatedPrivate: with umask 000 the log file is still created
// 0600 (the log names every process's connections), and gets the lines.
func TestLogFileCreatedPrivate(t *testing.T) {
	h := newE2E(t)
	h.attach()
	logFile := filepath.Join(t.TempDir(), "hung.log")
	cmd := h.ns.Command("sh", "-c", `umask 000 && exec "$@"`, "sh", h.bin,
		"--dry-run", "--log-file", logFile, "--pin-dir", h.pin)
	h.want(0, h.runCmd(cmd))
	st, err := os.Stat(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o600 {
		t.Errorf("log file created %v with umask 000, want -rw-------", st.Mode())
	}
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), " - INFO - Summary:") {
		t.Errorf("log file lacks the summary:\n%s", b)
	}
}

// TestLogFileDiskFull: a log file that stops taking lines (a full disk: a
// one-page tmpfs, filled, in a mount namespace of the command's own) is
// said at once on stdout, counted in the summary, reported on stderr at
// exit, and makes the exit code 1.
func TestLogFileDiskFull(t *testing.T) {
	h := newE2E(t)
	h.attach()
	s, _ := h.ns.CloseWait(t, "tcp4")
	time.Sleep(1200 * time.Millisecond)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "hung.log")
	script := `mount -t tmpfs -o size=4k tmpfs "$1" && { head -c 1M /dev/zero > "$1/fill" 2>/dev/null; shift; exec "$@"; }`
	cmd := h.ns.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", dir,
		h.bin, "--dry-run", "--close-wait-timeout", "1", "--log-file", logFile, "--pin-dir", h.pin)
	r := h.want(exitFailure, h.runCmd(cmd))
	re := regexp.MustCompile(`^hck-bpf: log file ` + regexp.QuoteMeta(logFile) + `: (\d+) log lines not written: write ` +
		regexp.QuoteMeta(logFile) + `: no space left on device\n$`)
	m := re.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("stderr %q: want the lost lines reported", r.stderr)
	}
	if !strings.Contains(r.stdout, "ERROR - Could not write the log file") {
		t.Errorf("stdout does not say the log file failed:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`WARN -   Log lines not written: [1-9]\d* \(see stderr\)`).MatchString(r.stdout) {
		t.Errorf("summary does not count the lost lines:\n%s", r.stdout)
	}
	// Everything still reached stdout.
	if !strings.Contains(r.stdout, fmt.Sprintf("[DRY RUN] Would terminate: tcp CLOSE_WAIT %s -> %s", s.Local, s.Remote)) {
		t.Errorf("stdout lacks the hung connection:\n%s", r.stdout)
	}
	t.Logf("%s lines lost", m[1])

	// The service: its stop line counts them too.
	svc := h.ns.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", dir,
		h.bin, "run", "--dry-run", "--log-file", logFile, "--pin-dir", h.pin)
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
	notify.waitReady(t, 30*time.Second, logs)
	if err := svc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-logs.done
	var ee *exec.ExitError
	if err := svc.Wait(); !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Errorf("service exit: %v, want exit %d", err, exitFailure)
	}
	logs.waitFor(t, time.Second, "WARN - hck-bpf service stopped", "log lines could not be written (see stderr)")
	if !re.MatchString(stderr.String()) {
		t.Errorf("service stderr %q: want the lost lines reported", stderr.String())
	}
}

// TestKillLinesSurviveSIGKILL: the service's log is an audit trail. It is
// SIGKILLed in the middle of its destroys (--max-kills 1: one destroy per
// sweep, sweeps back to back); every socket the kernel destroyed has a
// line in the log file: its fate line ("Terminated"), or for the one
// destroy in flight at the kill, its "Terminating" line, written before
// the destroy was sent.
func TestKillLinesSurviveSIGKILL(t *testing.T) {
	const n = 40
	h := newE2E(t)
	h.attach()
	hung := map[uint64]bool{}
	for range n {
		s, _ := h.ns.CloseWait(t, "tcp4")
		hung[s.Cookie] = true
	}
	time.Sleep(1200 * time.Millisecond)
	logFile := filepath.Join(t.TempDir(), "audit.log")
	svc := h.command("run", "--live", "--close-wait-timeout", "1", "--max-kills", "1",
		"--log-format", "json", "--log-file", logFile)
	svc.Stdout = io.Discard
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = svc.Process.Kill()
			_ = svc.Wait()
		}
	})
	// gone: the hung sockets the kernel no longer has open.
	gone := func() map[uint64]bool {
		g := map[uint64]bool{}
		alive := map[uint64]bool{}
		for _, d := range h.ns.MustDump(t) {
			if d.State != conn.Close {
				alive[d.Cookie] = true
			}
		}
		for c := range hung {
			if !alive[c] {
				g[c] = true
			}
		}
		return g
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(gone()) < n/4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d destroyed after 60s", len(gone()), n)
		}
		time.Sleep(time.Millisecond)
	}
	if err := svc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = svc.Wait()
	killed = true
	destroyed := gone()
	if len(destroyed) == n {
		t.Logf("all %d destroyed before the kill landed: the test did not kill mid-destroys", n)
	}

	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	// A SIGKILL may cut the write in progress short: the file may end in
	// part of a line. That write had not returned, so nothing was sent
	// to the kernel after it.
	text := string(raw)
	if i := strings.LastIndexByte(text, '\n'); i != len(text)-1 {
		t.Logf("the log ends in a partial line, cut by the kill: %q", text[i+1:])
		text = text[:i+1]
	}
	lines := jsonLines(t, text)
	intent := cookiesWith(t, lines, "destroying")
	fate := cookiesWith(t, lines, "destroyed")
	var lastIntent uint64
	for _, m := range lines {
		if m["action"] == "destroying" {
			c, _ := strconv.ParseUint(m["cookie"].(json.Number).String(), 10, 64)
			lastIntent = c
		}
	}
	var noLine, noFate []uint64
	for c := range destroyed {
		if !intent[c] && !fate[c] {
			noLine = append(noLine, c)
		}
		if !fate[c] {
			noFate = append(noFate, c)
		}
	}
	if len(noLine) > 0 {
		t.Errorf("%d of %d destroyed sockets have no line in the log: %v", len(noLine), len(destroyed), noLine)
	}
	// Only the destroy in flight at the kill may lack its fate line.
	if len(noFate) > 1 || len(noFate) == 1 && noFate[0] != lastIntent {
		t.Errorf("%d of %d destroyed sockets have no fate line (%v); at most the last one sent (%d) may", len(noFate), len(destroyed), noFate, lastIntent)
	}
	for c := range fate {
		if !destroyed[c] {
			t.Errorf("log says %d was destroyed; the kernel still has it", c)
		}
	}
	t.Logf("killed with %d of %d destroyed; %d fate lines, %d terminating lines", len(destroyed), n, len(fate), len(intent))
}
