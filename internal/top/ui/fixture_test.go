package ui

import (
	"net/netip"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/top"
)

// t0 is the fixed clock of the model tests and goldens.
var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// clock is a settable fake clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// fixture is a snapshot with known candidates, peers and kills.
func fixture() top.Snapshot {
	cand := func(cookie uint64, st conn.State, local, remote string, owner *conn.Owner, ns string, age, th time.Duration, excl string, exact bool) top.Candidate {
		c := top.Candidate{Conn: conn.Conn{Cookie: cookie, State: st, Local: ap(local), Remote: ap(remote),
			NetNS: 4026532000 + uint32(cookie), NetNSName: ns, Exact: exact, Owner: owner},
			Age: age, Threshold: th, Excluded: excl}
		if th > 0 {
			c.Left = th - age
		}
		return c
	}
	nginx := &conn.Owner{PID: 812, Comm: "nginx", Cgroup: "/system.slice/nginx.service"}
	java := &conn.Owner{PID: 4242, Comm: "java"}
	return top.Snapshot{
		At: t0, Interval: time.Second, Service: true, Mode: "dry-run", Namespaces: 2,
		Policy: "service's /etc/hck-bpf/config.yaml", PeersAt: t0.Add(-4 * time.Second),
		States: []top.StateCount{
			{State: conn.Established, Count: 1204, PerSec: 35.2},
			{State: conn.SynSent, Count: 3, PerSec: 1},
			{State: conn.FinWait1, Count: 2, PerSec: 0.5},
			{State: conn.FinWait2, Count: 7, PerSec: 2},
			{State: conn.TimeWait, Count: 310, PerSec: 30.4},
			{State: conn.CloseWait, Count: 41, PerSec: 0.2},
			{State: conn.LastAck, Count: 1, PerSec: 0},
			{State: conn.Listen, Count: 12, PerSec: 0},
		},
		Transitions: 120.5,
		Syn:         top.SynPressure{HalfOpen: 17, CookiesSent: 1500, CookiesPerSec: 12.5, ListenOverflows: 3, OverflowsPerSec: 0},
		Peers: []top.Peer{
			{Addr: netip.MustParseAddr("10.0.0.100"), Conns: 220, Hung: 3},
			{Addr: netip.MustParseAddr("10.0.0.7"), Conns: 90, Hung: 0},
			{Addr: netip.MustParseAddr("fd00::42"), Conns: 12, Hung: 5},
		},
		Candidates: []top.Candidate{
			cand(11, conn.CloseWait, "10.0.0.5:8080", "10.0.0.100:52431", nginx, "web", 75*time.Second, 60*time.Second, "", true),
			cand(12, conn.CloseWait, "10.0.0.5:8080", "10.0.0.100:52432", nginx, "web", 42*time.Second, 60*time.Second, "", true),
			cand(13, conn.FinWait2, "[fd00::5]:443", "[fd00::42]:60001", java, "", 30*time.Second, 120*time.Second, "", false),
			cand(14, conn.LastAck, "10.0.0.5:22", "10.0.0.7:40000", nil, "web", 90*time.Second, 60*time.Second, "excluded port 22", true),
			cand(15, conn.TimeWait, "10.0.0.5:5432", "10.0.0.8:33000", nil, "db", 119500*time.Millisecond, 120*time.Second, "", true),
		},
		Kills: []top.Kill{
			{At: t0.Add(-12 * time.Second), Conn: conn.Conn{Cookie: 9, State: conn.CloseWait, Local: ap("10.0.0.5:8080"), Remote: ap("10.0.0.100:50000"), Owner: &conn.Owner{Comm: "nginx"}},
				Age: 61 * time.Second, Reason: "CLOSE_WAIT for 61.0s ≥ 60s threshold (peer closed; the application never closed its socket)"},
			{At: t0.Add(-3 * time.Minute), Conn: conn.Conn{Cookie: 8, State: conn.FinWait2, Local: ap("10.0.0.5:443"), Remote: ap("10.0.0.9:41000")},
				Age: 125 * time.Second, Reason: "FIN_WAIT2 for 125.0s ≥ 120s threshold (peer never sent its FIN)"},
		},
		Warnings: []string{"the tracker's map was full 2 times"},
	}
}

// newTest is a model over a fake source returning snap, at a fixed clock,
// colour off, sized w×h, with its first snapshot taken.
func newTest(snap top.Snapshot, w, h int, o Options) (*Model, *clock) {
	ck := &clock{now: t0}
	o.Source = func() (top.Snapshot, error) { return snap, nil }
	o.Clock = ck.Now
	o.NoColor = true
	if o.Sort == (Sort{}) {
		o.Sort = DefaultSort
	}
	m := New(o)
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Update(m.take()())
	return m, ck
}

// press sends keys (bubbletea's key names: "up", "space", "enter", or a
// character) and returns the last command.
func press(m *Model, keys ...string) tea.Cmd {
	var cmd tea.Cmd
	for _, k := range keys {
		cmd = m.key(keyMsg(k))
	}
	return cmd
}

func keyMsg(k string) tea.KeyPressMsg {
	switch k {
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "backspace":
		return tea.KeyPressMsg{Code: tea.KeyBackspace}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	}
	r := []rune(k)[0]
	return tea.KeyPressMsg{Code: r, Text: k}
}
