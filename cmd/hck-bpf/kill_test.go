package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// kill's end-to-end tests: the binary runs in a namespace of the test's
// own (nsenter), where the test made its sockets; --netns and --all-netns
// reach only namespaces the test made, or, for --all-netns, run dry.

var (
	lo1   = netip.MustParseAddrPort("127.0.0.1:0")
	peer2 = netip.MustParseAddr("127.0.0.2")
	peer3 = netip.MustParseAddr("127.0.0.3")
)

// kill runs `hck-bpf kill args... --log-format json` and returns its lines.
func (h *e2e) kill(code int, args ...string) []map[string]any {
	h.t.Helper()
	r := h.mustRun(code, append([]string{"kill", "--log-format", "json"}, args...)...)
	return jsonLines(h.t, r.stdout)
}

// killSum is the kill's summary line.
func killSum(t *testing.T, lines []map[string]any) map[string]any {
	t.Helper()
	for _, m := range lines {
		if m["summary"] == "kill" {
			return m
		}
	}
	t.Fatal("no kill summary line")
	return nil
}

func cookieSet(socks ...*testnet.Sock) map[uint64]bool {
	out := map[uint64]bool{}
	for _, s := range socks {
		out[s.Cookie] = true
	}
	return out
}

// killLine is the line of cookie whose action is action.
func killLine(lines []map[string]any, cookie uint64, action string) map[string]any {
	for _, m := range lines {
		if m["action"] == action && m["cookie"] == json.Number(strconv.FormatUint(cookie, 10)) {
			return m
		}
	}
	return nil
}

// TestKillPeer: kill --peer 127.0.0.2 destroys exactly the connections
// whose peer is 127.0.0.2, ESTABLISHED ones, an IPv4-mapped one on a
// dual-stack listener included; the dry run before lists the same ones,
// with their owner, and destroys none.
func TestKillPeer(t *testing.T) {
	h := newE2E(t)
	l := h.ns.ListenOn(t, lo1)
	dual := h.ns.ListenOn(t, netip.MustParseAddrPort("[::]:0"))
	c2a, s2a := h.ns.ConnectFrom(t, l, peer2)
	c2b, s2b := h.ns.ConnectFrom(t, l, peer2)
	c3, s3 := h.ns.ConnectFrom(t, l, peer3)
	cm, sm := h.ns.ConnectFrom(t, dual, peer2) // ::ffff:127.0.0.2
	want := cookieSet(s2a, s2b, sm)
	all := []named{{"listener", l, conn.Listen}, {"dual-stack listener", dual, conn.Listen},
		{"client from .2", c2a, conn.Established}, {"server of .2", s2a, conn.Established},
		{"client from .2", c2b, conn.Established}, {"server of .2", s2b, conn.Established},
		{"client from .3", c3, conn.Established}, {"server of .3", s3, conn.Established},
		{"mapped client from .2", cm, conn.Established}, {"mapped server of .2", sm, conn.Established}}

	dry := h.kill(0, "--peer", "127.0.0.2", "--dry-run")
	if got := cookiesWith(t, dry, "would_destroy"); !maps.Equal(got, want) {
		t.Errorf("dry run would destroy %v, want %v", sorted(got), sorted(want))
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	for c := range want {
		m := killLine(dry, c, "would_destroy")
		if m == nil || m["pid"] != json.Number(strconv.Itoa(os.Getpid())) || m["process"] != strings.TrimSpace(string(comm)) ||
			m["state"] != "ESTABLISHED" {
			t.Errorf("dry run line of %d: %v; want this test (pid %d) as its owner", c, m, os.Getpid())
		}
	}
	if s := killSum(t, dry); s["matched"] != json.Number("3") || s["terminated"] != json.Number("3") || s["dry_run"] != true {
		t.Errorf("dry run summary %v", s)
	}
	check(t, h.ns, "after the dry run", all...)

	live := h.kill(0, "--peer", "127.0.0.2/32", "--live")
	if got := cookiesWith(t, live, "destroyed"); !maps.Equal(got, want) {
		t.Errorf("live destroyed %v, want %v", sorted(got), sorted(want))
	}
	h.ns.Await(t, s2a.Gone(), s2b.Gone(), sm.Gone(), c2a.Gone(), c2b.Gone(), cm.Gone())
	check(t, h.ns, "after the live run", all[0], all[1], all[6], all[7])

	// Nothing left to match: exit 0.
	if s := killSum(t, h.kill(0, "--peer", "127.0.0.2", "--live")); s["matched"] != json.Number("0") {
		t.Errorf("second run matched %v", s["matched"])
	}
	// kill pinned its owner lookup in the pin dir's kill/: unload takes it.
	h.mustRun(0, "unload")
	if _, err := os.Stat(h.pin); !os.IsNotExist(err) {
		t.Errorf("pin dir after unload: %v", err)
	}
}

// TestKillV6CIDR: an IPv6 prefix picks the connections from inside it.
func TestKillV6CIDR(t *testing.T) {
	h := newE2E(t)
	for _, a := range []string{"fd00:1::2/128", "fd00:1:0:9::3/128", "fd00:2::4/128"} {
		h.ns.AddAddr(t, a)
	}
	l6 := h.ns.ListenOn(t, netip.MustParseAddrPort("[::1]:0"))
	l4 := h.ns.ListenOn(t, lo1)
	_, a := h.ns.ConnectFrom(t, l6, netip.MustParseAddr("fd00:1::2"))
	_, b := h.ns.ConnectFrom(t, l6, netip.MustParseAddr("fd00:1:0:9::3"))
	_, c := h.ns.ConnectFrom(t, l6, netip.MustParseAddr("fd00:2::4"))
	_, d := h.ns.ConnectFrom(t, l4, peer2)
	live := h.kill(0, "--peer", "fd00:1::/32", "--live")
	if got, want := cookiesWith(t, live, "destroyed"), cookieSet(a, b); !maps.Equal(got, want) {
		t.Errorf("destroyed %v, want %v", sorted(got), sorted(want))
	}
	h.ns.Await(t, a.Gone(), b.Gone(), c.In(conn.Established), d.In(conn.Established))
}

// TestKillPort22: a connection on port 22 is refused, and listed as such,
// until --force; the other connection of the same peer dies at once.
func TestKillPort22(t *testing.T) {
	h := newE2E(t)
	ssh := h.ns.ListenOn(t, netip.MustParseAddrPort("127.0.0.1:22"))
	web := h.ns.ListenOn(t, lo1)
	_, s22 := h.ns.ConnectFrom(t, ssh, peer2)
	_, sweb := h.ns.ConnectFrom(t, web, peer2)

	r := h.mustRun(0, "kill", "--peer", "127.0.0.2", "--dry-run")
	if !strings.Contains(r.stdout, "Refused: tcp ESTABLISHED 127.0.0.1:22 -> 127.0.0.2:") ||
		!strings.Contains(r.stdout, ": local port 22; --force destroys it") {
		t.Errorf("dry run does not say port 22 is refused:\n%s", r.stdout)
	}
	live := h.kill(0, "--peer", "127.0.0.2", "--live")
	if got := cookiesWith(t, live, "destroyed"); !maps.Equal(got, cookieSet(sweb)) {
		t.Errorf("destroyed %v, want only %d", sorted(got), sweb.Cookie)
	}
	if m := killLine(live, s22.Cookie, "refused"); m == nil || m["refusal"] != "port 22" || m["detail"] != "local port 22" {
		t.Errorf("port 22's line: %v", m)
	}
	if s := killSum(t, live); s["refused"] != json.Number("1") || s["refused_port_22"] != json.Number("1") {
		t.Errorf("summary %v: want 1 refused for port 22", s)
	}
	h.ns.Await(t, s22.In(conn.Established), sweb.Gone())

	forced := h.kill(0, "--peer", "127.0.0.2", "--live", "--force")
	if m := killLine(forced, s22.Cookie, "destroyed"); m == nil || m["forced"] != true {
		t.Errorf("--force: port 22's line %v, want destroyed, forced", m)
	}
	h.ns.Await(t, s22.Gone())
}

// TestKillProtected: a connection held by a process named sshd is refused
// without --force; --process picks only the named process's connections.
func TestKillProtected(t *testing.T) {
	h := newE2E(t)
	l := h.ns.ListenOn(t, lo1)
	_, sshd := h.ns.ConnectFrom(t, l, peer2)
	_, mine := h.ns.ConnectFrom(t, l, peer2)
	_, ours := h.ns.ConnectFrom(t, l, peer2)
	holdIn(t, "sshd", sshd)
	holdIn(t, "myproc", mine)

	byName := h.kill(0, "--peer", "127.0.0.2", "--process", "myproc", "--live")
	if got := cookiesWith(t, byName, "destroyed"); !maps.Equal(got, cookieSet(mine)) {
		t.Errorf("--process myproc destroyed %v, want only %d", sorted(got), mine.Cookie)
	}
	if got := cookiesWith(t, byName, "refused"); len(got) > 0 {
		t.Errorf("--process myproc lists other processes' connections as refused: %v", sorted(got))
	}
	h.ns.Await(t, mine.Gone(), sshd.In(conn.Established), ours.In(conn.Established))

	r := h.mustRun(0, "kill", "--peer", "127.0.0.2", "--live")
	if !regexp.MustCompile(`Refused: tcp ESTABLISHED 127\.0\.0\.1:\d+ -> 127\.0\.0\.2:\d+ \(PID: \d+, Process: sshd\): process sshd \(pid \d+\) is protected; --force destroys it`).MatchString(r.stdout) {
		t.Errorf("no refusal line for sshd's connection:\n%s", r.stdout)
	}
	h.ns.Await(t, sshd.In(conn.Established), ours.Gone())

	forced := h.kill(0, "--peer", "127.0.0.2", "--live", "--force")
	if m := killLine(forced, sshd.Cookie, "destroyed"); m == nil || m["process"] != "sshd" || m["refusal"] != "protected process" {
		t.Errorf("--force: sshd's line %v", m)
	}
	h.ns.Await(t, sshd.Gone())
}

// TestKillUsage: without a mode, with both, without a connection filter
// (--netns and --all-netns are not one), or with a bad value, kill exits 2
// with one line, before it opens anything: the connection stays.
func TestKillUsage(t *testing.T) {
	h := newE2E(t)
	l := h.ns.ListenOn(t, lo1)
	_, s := h.ns.ConnectFrom(t, l, peer2)
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--peer", "127.0.0.2"}, "choose one mode"},
		{[]string{"--peer", "127.0.0.2", "--live", "--dry-run"}, "choose one mode"},
		{[]string{"--live"}, "needs a connection filter"},
		{[]string{"--live", "--netns", h.ns.Path()}, "needs a connection filter"},
		{[]string{"--dry-run", "--all-netns"}, "needs a connection filter"}, // never --live here
		{[]string{"--live", "--force"}, "needs a connection filter"},
		{[]string{"--live", "--peer", "127.0.0.2/8"}, "host bits set"},
		{[]string{"--live", "--peer", "localhost"}, "invalid peer"},
		{[]string{"--live", "--port", "70000"}, "--port: invalid port"},
		{[]string{"--live", "--remote-port", ""}, "--remote-port: no port given"},
		{[]string{"--live", "--state", "open"}, "--state: invalid state"},
		{[]string{"--live", "--process", "/usr/sbin/sshd"}, "--process: invalid process name"},
		{[]string{"--live", "--peer", "127.0.0.2", "--netns", "no-such-netns-" + h.ns.Name}, "no-such-netns-"},
		{[]string{"--live", "--peer", "127.0.0.2", "--netns", h.ns.Path(), "--all-netns"}, "choose one"},
		{[]string{"--live", "--peer", "127.0.0.2", "stray"}, "unknown command"},
	} {
		r := h.runCmd(h.command(append([]string{"kill"}, tt.args...)...))
		if r.code != exitUsage || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, tt.msg) || r.stdout != "" {
			t.Errorf("kill %q: exit %d, stderr %q, stdout %q; want 2 and one line with %q", tt.args, r.code, r.stderr, r.stdout, tt.msg)
		}
	}
	// A --pin-dir that is not on bpffs: exit 2, nothing made.
	dir := t.TempDir()
	r := h.runCmd(h.ns.Command(h.bin, "kill", "--peer", "127.0.0.2", "--live", "--pin-dir", dir+"/pins"))
	if r.code != exitUsage || !strings.Contains(r.stderr, "not on a bpf filesystem") {
		t.Errorf("--pin-dir on tmpfs: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Stat(h.pin); !os.IsNotExist(err) {
		t.Errorf("a refused kill made the pin dir: %v", err)
	}
	h.ns.Await(t, s.In(conn.Established))
}

// TestKillNetns: run in one namespace, --netns NAME reaches exactly the
// named one, and says which in every line.
func TestKillNetns(t *testing.T) {
	h := newE2E(t)
	other := testnet.New(t)
	_, here := h.ns.ConnectFrom(t, h.ns.ListenOn(t, lo1), peer2)
	_, there := other.ConnectFrom(t, other.ListenOn(t, lo1), peer2)

	live := h.kill(0, "--peer", "127.0.0.2", "--live", "--netns", other.Name)
	if got := cookiesWith(t, live, "destroyed"); !maps.Equal(got, cookieSet(there)) {
		t.Errorf("--netns %s destroyed %v, want only %d", other.Name, sorted(got), there.Cookie)
	}
	m := killLine(live, there.Cookie, "destroyed")
	if m == nil || m["netns"] != json.Number(strconv.FormatUint(uint64(other.Inode()), 10)) || m["netns_name"] != other.Name {
		t.Errorf("line %v: want netns %d named %s", m, other.Inode(), other.Name)
	}
	other.Await(t, there.Gone())
	h.ns.Await(t, here.In(conn.Established))

	// Both, by path and by name, in text: each line names its namespace
	// as discovery does (the bind mount's name), however it was given.
	_, there2 := other.ConnectFrom(t, other.ListenOn(t, lo1), peer2)
	r := h.mustRun(0, "kill", "--peer", "127.0.0.2", "--dry-run", "--netns", h.ns.Path(), "--netns", other.Name)
	for _, want := range []string{
		fmt.Sprintf("-> %s (PID: %d, Process: ", there2.Remote, os.Getpid()), // the server's peer
		fmt.Sprintf("[netns %d %s]", other.Inode(), other.Name), fmt.Sprintf("[netns %d %s]", h.ns.Inode(), h.ns.Name),
		"(in 2 network namespaces)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run over both namespaces lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestKillAllNetnsDryRun: --all-netns finds the connections of the test's
// two namespaces (from an address only they have), and, dry, destroys
// nothing anywhere. It is never run live here: --all-netns reaches every
// namespace of the host.
func TestKillAllNetnsDryRun(t *testing.T) {
	h := newE2E(t)
	other := testnet.New(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	peer := netip.AddrFrom16([16]byte{0xfd, 0x7e, 10: b[0], 11: b[1], 12: b[2], 13: b[3], 14: b[4], 15: b[5]})
	var servers []*testnet.Sock
	for _, ns := range []*testnet.NS{h.ns, other} {
		ns.AddAddr(t, peer.String()+"/128")
		_, s := ns.ConnectFrom(t, ns.ListenOn(t, netip.MustParseAddrPort("[::1]:0")), peer)
		servers = append(servers, s)
	}
	dry := h.kill(0, "--all-netns", "--peer", peer.String(), "--dry-run")
	if got := cookiesWith(t, dry, "would_destroy"); !maps.Equal(got, cookieSet(servers...)) {
		t.Errorf("--all-netns would destroy %v, want %v", sorted(got), sorted(cookieSet(servers...)))
	}
	if n, _ := killSum(t, dry)["namespaces"].(json.Number).Int64(); n < 3 { // the host's, and the test's two
		t.Errorf("--all-netns went through %d namespaces", n)
	}
	h.ns.Await(t, servers[0].In(conn.Established))
	other.Await(t, servers[1].In(conn.Established))
}

// TestKillExitCodeFailed: a destroy the kernel refuses (no CAP_NET_ADMIN)
// makes kill exit 1 and count it; the connection lives.
func TestKillExitCodeFailed(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs util-linux setpriv to drop CAP_NET_ADMIN")
	}
	h := newE2E(t)
	_, s := h.ns.ConnectFrom(t, h.ns.ListenOn(t, lo1), peer2)
	h.kill(0, "--peer", "127.0.0.2", "--dry-run") // pins the owner lookup, with every capability
	cmd := h.ns.Command("setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
		h.bin, "kill", "--peer", "127.0.0.2", "--live", "--log-format", "json", "--pin-dir", h.pin)
	lines := jsonLines(t, h.want(exitFailure, h.runCmd(cmd)).stdout)
	if m := killLine(lines, s.Cookie, "failed"); m == nil || !strings.Contains(fmt.Sprint(m["error"]), "operation not permitted") {
		t.Errorf("failed line %v, want EPERM", m)
	}
	if sum := killSum(t, lines); sum["failed"] != json.Number("1") {
		t.Errorf("summary %v, want 1 failed", sum)
	}
	h.ns.Await(t, s.In(conn.Established))
}
