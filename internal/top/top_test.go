package top

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

func TestRate(t *testing.T) {
	for _, tt := range []struct {
		prev, cur uint64
		secs      float64
		want      float64
	}{
		{100, 300, 2, 100},
		{100, 100, 1, 0},
		{500, 10, 1, 0},                  // reset: the tracker attached again
		{^uint64(0) - 5, 4, 1, 0},        // wrapped: unknown for one interval, never huge
		{0, 1000, 0, 0},                  // no interval
		{0, 1 << 40, 0.5, 2 * (1 << 40)}, // big deltas stay exact enough
	} {
		if got := rate(tt.prev, tt.cur, tt.secs); got != tt.want {
			t.Errorf("rate(%d, %d, %v) = %v, want %v", tt.prev, tt.cur, tt.secs, got, tt.want)
		}
	}
}

func TestSortPeers(t *testing.T) {
	a, b, c, d := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("::1"), netip.MustParseAddr("10.0.0.3")
	m := map[netip.Addr]*Peer{a: {Addr: a, Conns: 3, Hung: 0}, b: {Addr: b, Conns: 3, Hung: 2},
		c: {Addr: c, Conns: 5}, d: {Addr: d, Conns: 3, Hung: 0}}
	got := sortPeers(m, 3)
	want := []Peer{{c, 5, 0}, {b, 3, 2}, {a, 3, 0}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestCandidateCountdown(t *testing.T) {
	pol := policy.Default()
	pol.Thresholds.CloseWait = 60 * time.Second
	pol.ExcludePorts = []uint16{22}
	now := uint64(1000 * time.Second)
	mk := func(age time.Duration, lport uint16) conn.Conn {
		return conn.Conn{Cookie: 1, State: conn.CloseWait, Exact: true, Entered: now - uint64(age),
			Local: netip.MustParseAddrPort("10.0.0.1:" + itoa(lport)), Remote: netip.MustParseAddrPort("10.0.0.2:4000")}
	}
	c := candidate(&pol, mk(20*time.Second, 80), nil, now)
	if c.Left != 40*time.Second || c.Threshold != 60*time.Second || c.Age != 20*time.Second || c.Excluded != "" {
		t.Errorf("20s old: %+v, want 40s left of 60s, not excluded", c)
	}
	c = candidate(&pol, mk(90*time.Second, 80), nil, now)
	if c.Left != -30*time.Second || c.Excluded != "" {
		t.Errorf("90s old: %+v, want hung for 30s (left -30s)", c)
	}
	// Excluded before it is hung: the filter the sweep would apply then.
	c = candidate(&pol, mk(20*time.Second, 22), nil, now)
	if c.Left != 40*time.Second || !strings.Contains(c.Excluded, "22") {
		t.Errorf("port 22, 20s old: %+v, want 40s left and excluded for port 22", c)
	}
	c = candidate(&pol, mk(90*time.Second, 22), nil, now)
	if !strings.Contains(c.Excluded, "22") {
		t.Errorf("port 22, hung: %+v, want excluded for port 22", c)
	}
	// A report-only rule names itself.
	pol.ExcludePorts = nil
	pol.Rules = []policy.Rule{{Name: "r1", Ports: []uint16{80}, Action: policy.RuleReport}}
	c = candidate(&pol, mk(90*time.Second, 80), nil, now)
	if c.Rule != "r1" || !strings.Contains(c.Excluded, "r1") {
		t.Errorf("report-only rule: %+v, want rule r1 and excluded by it", c)
	}
	// No threshold: never hung.
	pol.Rules = nil
	pol.Thresholds.CloseWait = 0
	c = candidate(&pol, mk(90*time.Second, 80), nil, now)
	if c.Threshold != 0 || c.Excluded == "" {
		t.Errorf("no threshold: %+v, want threshold 0 and a reason", c)
	}
}

func itoa(n uint16) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

func TestParseTcpExt(t *testing.T) {
	in := "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows\nTcpExt: 7 1 42\nIpExt: InNoRoutes\nIpExt: 0\n"
	m, err := parseGroup([]byte(in), "TcpExt", "netstat")
	if err != nil {
		t.Fatal(err)
	}
	if m["SyncookiesSent"] != 7 || m["ListenOverflows"] != 42 {
		t.Errorf("got %v", m)
	}
	if _, err := parseGroup([]byte("TcpExt: A B\nTcpExt: 1\n"), "TcpExt", "netstat"); err == nil {
		t.Error("mismatched line: no error")
	}
}

func TestParseTimewait(t *testing.T) {
	n, err := parseTimewait([]byte("sockets: used 5\nTCP: inuse 3 orphan 1 tw 17 alloc 4 mem 1\nUDP: inuse 0 mem 0\n"))
	if err != nil || n != 17 {
		t.Errorf("got %d, %v; want 17", n, err)
	}
	for _, bad := range []string{"UDP: inuse 0\n", "TCP: inuse 3 orphan 1\n", "TCP: inuse 3 tw x\n"} {
		if _, err := parseTimewait([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseSnmpTcp(t *testing.T) {
	in := "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm MaxConn ActiveOpens CurrEstab\nTcp: 1 -1 12 7\n"
	m, err := parseGroup([]byte(in), "Tcp", "snmp")
	if err != nil || m["CurrEstab"] != 7 || m["ActiveOpens"] != 12 {
		t.Errorf("got %v, %v; want CurrEstab 7 (MaxConn -1 is signed)", m, err)
	}
}

func TestPeersNext(t *testing.T) {
	now := time.Unix(1000, 0)
	if got := peersNext(now, 5*time.Millisecond); got != now.Add(PeersEvery) {
		t.Errorf("cheap dump: next at +%v, want +%v", got.Sub(now), PeersEvery)
	}
	// A dump of 150 ms CPU: once every 30 s keeps it at 0.5% of a core.
	if got := peersNext(now, 150*time.Millisecond); got != now.Add(30*time.Second) {
		t.Errorf("150 ms dump: next at +%v, want +30s", got.Sub(now))
	}
}

func TestLearnEstabCW(t *testing.T) {
	for _, tt := range []struct {
		prev          bool
		curr, est, cw int
		want          bool
	}{
		{false, 12, 10, 2, true},  // Linux 6.10+: ESTABLISHED + CLOSE_WAIT
		{true, 10, 10, 2, false},  // older: ESTABLISHED only
		{false, 10, 10, 0, false}, // no CLOSE_WAIT: cannot tell
		{true, 10, 10, 0, true},
		{true, 11, 10, 2, true}, // a transition between the reads: keep
		{false, 11, 10, 2, false},
	} {
		if got := learnEstabCW(tt.prev, tt.curr, tt.est, tt.cw); got != tt.want {
			t.Errorf("learnEstabCW(%v, %d, %d, %d) = %v, want %v", tt.prev, tt.curr, tt.est, tt.cw, got, tt.want)
		}
	}
}
