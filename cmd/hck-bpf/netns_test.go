package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// Tests of --all-netns and --netns. --netns only ever names namespaces the
// test made. --all-netns reaches every namespace of the host, the host's
// own included: there, a live run is confined with --include-ports to a
// port nothing on the host uses (freePort), so that no socket but the
// test's can match; coverage is shown with --dry-run.

// freePort is a port below the ephemeral range that no socket of any
// namespace of the host uses now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	var paths []string
	for _, f := range netns.Discover() {
		paths = append(paths, f.Path)
	}
	for range 50 {
		port := uint16(20000 + rand.IntN(12000))
		used := false
		for _, p := range paths {
			out, err := exec.Command("nsenter", "--net="+p, "--", "ss", "-tanH").Output()
			if err != nil {
				continue // gone meanwhile
			}
			for _, field := range strings.Fields(string(out)) {
				if strings.HasSuffix(field, ":"+strconv.Itoa(int(port))) {
					used = true
				}
			}
		}
		if !used {
			return port
		}
	}
	t.Fatal("no free port found in 50 tries")
	return 0
}

// lineFor returns the first JSON line whose action is action and cookie
// is cookie.
func lineFor(t *testing.T, lines []map[string]any, action string, cookie uint64) map[string]any {
	t.Helper()
	for _, m := range lines {
		if m["action"] == action && m["cookie"] == json.Number(strconv.FormatUint(cookie, 10)) {
			return m
		}
	}
	t.Fatalf("no %s line for socket %d", action, cookie)
	return nil
}

// namesNetNS checks that a JSON line names ns: its inode, its name.
func namesNetNS(t *testing.T, m map[string]any, ns *testnet.NS) {
	t.Helper()
	if m["netns"] != json.Number(strconv.FormatUint(uint64(ns.Inode()), 10)) || m["netns_name"] != ns.Name {
		t.Errorf("line %v: want netns %d, netns_name %s", m, ns.Inode(), ns.Name)
	}
}

// awaitGone waits until the kernel no longer has s (the service destroys
// it on its threshold).
func awaitGone(t *testing.T, ns *testnet.NS, s *testnet.Sock, within time.Duration) {
	t.Helper()
	for end := time.Now().Add(within); s.Alive(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s in %s still alive after %v", s, ns.Name, within)
		}
	}
}

// TestAllNetns: with --all-netns, a dry run names a hung socket of each of
// three namespaces (each line with its namespace) and destroys nothing;
// the service destroys each on its threshold, from inside its namespace,
// and leaves a socket its filters keep.
func TestAllNetns(t *testing.T) {
	h := newE2E(t)
	a, b := testnet.New(t), testnet.New(t)
	port := freePort(t)
	only := []string{"--include-ports", strconv.Itoa(int(port)), "--close-wait-timeout", "1", "--log-format", "json"}
	h.mustRun(0, "list", "--all-netns", "--state", "close-wait") // attach: sockets are tracked from now on
	nss := []*testnet.NS{h.ns, a, b}
	hung := map[*testnet.NS]*testnet.Sock{}
	for _, ns := range nss {
		hung[ns], _ = ns.CloseWaitOn(t, "tcp4", port)
	}
	kept, _ := a.CloseWait(t, "tcp6") // another port
	time.Sleep(1200 * time.Millisecond)

	dry := jsonLines(t, h.mustRun(0, append([]string{"scan", "--dry-run", "--all-netns"}, only...)...).stdout)
	want := map[uint64]bool{}
	for _, ns := range nss {
		want[hung[ns].Cookie] = true
		m := lineFor(t, dry, "would_destroy", hung[ns].Cookie)
		namesNetNS(t, m, ns)
		if msg := fmt.Sprint(m["message"]); !strings.HasSuffix(msg, fmt.Sprintf(" [netns %d %s]", ns.Inode(), ns.Name)) {
			t.Errorf("line %q does not end with its namespace", msg)
		}
	}
	if got := cookiesWith(t, dry, "would_destroy"); !maps.Equal(got, want) {
		t.Errorf("dry run would destroy %v, want %v", sorted(got), sorted(want))
	}
	for _, ns := range nss {
		check(t, ns, "after the dry run", named{"CLOSE_WAIT on the test's port", hung[ns], conn.CloseWait})
	}

	svc := h.startService(append([]string{"run", "--live", "--all-netns"}, only...)...)
	for _, ns := range nss {
		awaitGone(t, ns, hung[ns], 15*time.Second)
	}
	// And one made while the service runs.
	late, _ := b.CloseWaitOn(t, "tcp6", port)
	awaitGone(t, b, late, 15*time.Second)
	check(t, a, "after the service's sweeps", named{"CLOSE_WAIT on another port", kept, conn.CloseWait})
	svc.stop()
	lines := jsonLines(t, svc.logs.all())
	for _, ns := range nss {
		namesNetNS(t, lineFor(t, lines, "destroyed", hung[ns].Cookie), ns)
	}
	namesNetNS(t, lineFor(t, lines, "destroyed", late.Cookie), b)
	if got := cookiesWith(t, lines, "destroyed"); len(got) != len(nss)+1 {
		t.Errorf("destroyed %v, want only the test's %d sockets", sorted(got), len(nss)+1)
	}
}

// TestDefaultScopeIsOwn: without --all-netns or --netns the service works
// on its own namespace only: the hung sockets of two others, older than
// its own, outlive it.
func TestDefaultScopeIsOwn(t *testing.T) {
	h := newE2E(t)
	a, b := testnet.New(t), testnet.New(t)
	svc := h.startService("run", "--live", "--close-wait-timeout", "1", "--log-format", "json")
	aw, _ := a.CloseWait(t, "tcp4")
	bw, _ := b.CloseWait(t, "tcp6")
	own, _ := h.ns.CloseWait(t, "tcp4")
	awaitGone(t, h.ns, own, 15*time.Second)
	check(t, a, "after the service's sweep", named{"CLOSE_WAIT", aw, conn.CloseWait})
	check(t, b, "after the service's sweep", named{"CLOSE_WAIT", bw, conn.CloseWait})
	svc.stop()
	if got := cookiesWith(t, jsonLines(t, svc.logs.all()), "destroyed"); !maps.Equal(got, map[uint64]bool{own.Cookie: true}) {
		t.Errorf("destroyed %v, want only %d", sorted(got), own.Cookie)
	}
}

// TestNetnsPicksOne: --netns names one namespace by its name, its path or
// the pid of a process in it; a scan --live there destroys that
// namespace's hung sockets and no other's, the one it runs in included.
func TestNetnsPicksOne(t *testing.T) {
	h := newE2E(t)
	a, b, c := testnet.New(t), testnet.New(t), testnet.New(t)
	sleeper := c.Command("sleep", "120")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	pid := strconv.Itoa(sleeper.Process.Pid)
	for i := 0; ; i++ { // until nsenter has entered c
		var st unix.Stat_t
		if unix.Stat("/proc/"+pid+"/ns/net", &st) == nil && uint32(st.Ino) == c.Inode() {
			break
		}
		if i == 200 {
			t.Fatalf("pid %s never entered %s", pid, c.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Attach, watching all four: sockets are tracked from now on.
	h.mustRun(0, "list", "--netns", a.Name, "--netns", b.Path(), "--netns", pid, "--netns", h.ns.Path())
	all := []*testnet.NS{h.ns, a, b, c}
	alive := map[*testnet.NS][]*testnet.Sock{}
	for _, tc := range []struct {
		form   string
		target *testnet.NS
	}{{a.Name, a}, {b.Path(), b}, {pid, c}} {
		for _, ns := range all {
			s, _ := ns.CloseWait(t, "tcp4")
			alive[ns] = append(alive[ns], s)
		}
		time.Sleep(1200 * time.Millisecond)
		r := h.mustRun(0, "scan", "--live", "--netns", tc.form, "--close-wait-timeout", "1", "--log-format", "json")
		lines := jsonLines(t, r.stdout)
		want := map[uint64]bool{}
		for _, s := range alive[tc.target] {
			want[s.Cookie] = true
			namesNetNS(t, lineFor(t, lines, "destroyed", s.Cookie), tc.target)
			tc.target.Await(t, s.Gone())
		}
		if got := cookiesWith(t, lines, "destroyed"); !maps.Equal(got, want) {
			t.Errorf("--netns %s: destroyed %v, want %s's %v", tc.form, sorted(got), tc.target.Name, sorted(want))
		}
		alive[tc.target] = nil
		for _, ns := range all {
			for _, s := range alive[ns] {
				check(t, ns, "after --netns "+tc.form, named{"CLOSE_WAIT", s, conn.CloseWait})
			}
		}
	}
}

// TestListAllNetns: list --json --all-netns names each socket's
// namespace, and the table shows it.
func TestListAllNetns(t *testing.T) {
	h := newE2E(t)
	a, b := testnet.New(t), testnet.New(t)
	h.mustRun(0, "list", "--all-netns", "--state", "close-wait") // attach
	socks := map[*testnet.NS]*testnet.Sock{}
	socks[a], _ = a.CloseWait(t, "tcp4")
	socks[b], _ = b.CloseWait(t, "tcp6")
	r := h.mustRun(0, "list", "--json", "--all-netns", "--state", "close-wait")
	var entries []map[string]any
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.UseNumber()
	if err := dec.Decode(&entries); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	for ns, s := range socks {
		found := false
		for _, e := range entries {
			if e["cookie"] == json.Number(strconv.FormatUint(s.Cookie, 10)) {
				found = true
				namesNetNS(t, e, ns)
			}
		}
		if !found {
			t.Errorf("%s of %s not listed:\n%s", s, ns.Name, r.stdout)
		}
	}
	table := h.mustRun(0, "list", "--all-netns", "--state", "close-wait").stdout
	for ns, s := range socks {
		// The columns are padded to the widest cookie: a fresh kernel's
		// cookies are short (the kernel matrix's guests), so any run of
		// spaces separates the cookie from its namespace.
		row := regexp.MustCompile(fmt.Sprintf(`\b%d +%d \(%s\)`, s.Cookie, ns.Inode(), regexp.QuoteMeta(ns.Name)))
		if !row.MatchString(table) {
			t.Errorf("the table does not name %s's namespace:\n%s", s, table)
		}
	}
}

// TestScopeFlagsRefused: --all-netns with --netns, or a --netns that names
// nothing, exit 2 with one line, before anything is loaded.
func TestScopeFlagsRefused(t *testing.T) {
	testnet.RequireRoot(t)
	pin := testnet.PinDir(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"scan", "--dry-run", "--all-netns", "--netns", "x"}, "hck-bpf: --all-netns and --netns: choose one"},
		{[]string{"run", "--all-netns", "--netns", "x"}, "hck-bpf: --all-netns and --netns: choose one"},
		{[]string{"list", "--all-netns", "--netns", "x"}, "hck-bpf: --all-netns and --netns: choose one"},
		{[]string{"scan", "--dry-run", "--netns", "hck-no-such-netns"}, `hck-bpf: --netns: open network namespace "hck-no-such-netns": no such name under`},
		{[]string{"list", "--netns", "/no/such/netns"}, "hck-bpf: --netns: open network namespace /no/such/netns: no such file or directory"},
		{[]string{"run", "--netns", "2147483646"}, "hck-bpf: --netns: open network namespace /proc/2147483646/ns/net: no such file or directory"},
	} {
		var out, errb bytes.Buffer
		code := Main(append(tt.args, "--pin-dir", pin), &out, &errb)
		if code != exitUsage || !strings.HasPrefix(errb.String(), tt.want) || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tt.args, code, errb.String(), exitUsage, tt.want)
		}
		if _, err := os.Stat(pin); err == nil {
			t.Fatalf("%q: created the pin dir: something was loaded", tt.args)
		}
	}
}
