package policy

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// now is an arbitrary CLOCK_BOOTTIME reading: about 116 days after boot.
const now uint64 = 10_000_000 * uint64(time.Second)

type connOpt func(*conn.Conn)

func ports(local, remote uint16) connOpt {
	return func(c *conn.Conn) {
		c.Local = netip.AddrPortFrom(c.Local.Addr(), local)
		c.Remote = netip.AddrPortFrom(c.Remote.Addr(), remote)
	}
}

func owner(pid int, comm string) connOpt {
	return func(c *conn.Conn) { c.Owner = &conn.Owner{PID: pid, Comm: comm} }
}

func inexact(c *conn.Conn) { c.Exact = false }

// mk is a connection in state s for age at now: server side of
// 10.0.0.5:8080 <- 10.0.0.100:52431, owner unknown.
func mk(s conn.State, age time.Duration, opts ...connOpt) *conn.Conn {
	c := &conn.Conn{
		Cookie:  4242,
		State:   s,
		Local:   netip.MustParseAddrPort("10.0.0.5:8080"),
		Remote:  netip.MustParseAddrPort("10.0.0.100:52431"),
		Entered: now - uint64(age),
		Exact:   true,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func TestDefault(t *testing.T) {
	p := Default()
	if err := p.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	want := map[conn.State]time.Duration{
		conn.CloseWait: 60 * time.Second,
		conn.FinWait1:  120 * time.Second,
		conn.FinWait2:  120 * time.Second,
		conn.Closing:   60 * time.Second,
		conn.LastAck:   60 * time.Second,
		conn.TimeWait:  120 * time.Second,
	}
	for s, d := range want {
		if got, ok := p.Thresholds.For(s); !ok || got != d {
			t.Errorf("For(%s) = %v, %v; want %v, true", s, got, ok, d)
		}
	}
	if len(p.ExcludePorts) != 1 || p.ExcludePorts[0] != 22 {
		t.Errorf("ExcludePorts = %v, want [22]", p.ExcludePorts)
	}
	if len(p.IncludePorts) != 0 || len(p.ExcludeProcesses) != 0 {
		t.Errorf("Default has include ports %v, excluded processes %v", p.IncludePorts, p.ExcludeProcesses)
	}
	if w := p.Warnings(); len(w) != 0 {
		t.Errorf("Default().Warnings() = %q", w)
	}
}

var neverDestroyed = []conn.State{conn.Established, conn.SynSent, conn.SynRecv, conn.Close, conn.Listen, conn.NewSynRecv, conn.State(0), conn.State(200)}

func TestThresholdsFor(t *testing.T) {
	th := DefaultThresholds()
	for _, s := range neverDestroyed {
		if d, ok := th.For(s); ok || d != 0 {
			t.Errorf("For(%s) = %v, %v; want 0, false", s, d, ok)
		}
	}
	th.LastAck = 0
	if _, ok := th.For(conn.LastAck); ok {
		t.Errorf("For(LAST_ACK) with no threshold reports ok")
	}
	if err := th.Validate(); err == nil || err.Error() != "no threshold for LAST_ACK: want a duration above zero" {
		t.Errorf("Validate() = %v", err)
	}
}

func TestThresholdsSet(t *testing.T) {
	var th Thresholds
	for i, s := range conn.ClosingStates {
		if err := th.Set(s, time.Duration(i+1)*time.Second); err != nil {
			t.Fatalf("Set(%s) = %v", s, err)
		}
	}
	want := Thresholds{CloseWait: 1 * time.Second, FinWait1: 2 * time.Second, FinWait2: 3 * time.Second,
		Closing: 4 * time.Second, LastAck: 5 * time.Second, TimeWait: 6 * time.Second}
	if th != want {
		t.Errorf("after Set: %+v, want %+v", th, want)
	}
	for _, s := range neverDestroyed {
		if err := th.Set(s, time.Second); err == nil {
			t.Errorf("Set(%s) accepted", s)
		} else {
			checkErrLine(t, err)
		}
	}
	for _, d := range []time.Duration{0, -time.Second, MaxDuration + 1} {
		if err := th.Set(conn.CloseWait, d); err == nil {
			t.Errorf("Set(CLOSE_WAIT, %v) accepted", d)
		} else {
			checkErrLine(t, err)
		}
	}
	if th != want {
		t.Errorf("a refused Set changed the thresholds: %+v", th)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Policy)
		want string // "" = valid
	}{
		{"default", func(*Policy) {}, ""},
		{"zero threshold", func(p *Policy) { p.Thresholds.TimeWait = 0 }, "no threshold for TIME_WAIT: want a duration above zero"},
		{"negative threshold", func(p *Policy) { p.Thresholds.CloseWait = -time.Second }, "no threshold for CLOSE_WAIT"},
		{"huge threshold", func(p *Policy) { p.Thresholds.FinWait2 = MaxDuration + 1 }, "threshold for FIN_WAIT2 is"},
		{"max threshold", func(p *Policy) { p.Thresholds.FinWait2 = MaxDuration }, ""},
		{"empty thresholds", func(p *Policy) { p.Thresholds = Thresholds{} }, "no threshold for CLOSE_WAIT"},
		{"excluded port 0", func(p *Policy) { p.ExcludePorts = []uint16{22, 0} }, "invalid excluded port 0"},
		{"included port 0", func(p *Policy) { p.IncludePorts = []uint16{0} }, "invalid included port 0"},
		{"no excluded ports", func(p *Policy) { p.ExcludePorts = nil }, ""},
		{"port both included and excluded", func(p *Policy) { p.IncludePorts = []uint16{22, 80} }, ""},
		{"bad process name", func(p *Policy) { p.ExcludeProcesses = []string{"nginx", "/bin/sh"} }, `invalid process name "/bin/sh"`},
		{"empty process name", func(p *Policy) { p.ExcludeProcesses = []string{""} }, `invalid process name "": empty`},
		{"process name with a space (config file)", func(p *Policy) { p.ExcludeProcesses = []string{"Web Content"} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Default()
			tc.edit(&p)
			err := p.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			case err != nil:
				checkErrLine(t, err)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	p := Default()
	p.IncludePorts = []uint16{22, 80}
	p.ExcludeProcesses = []string{"nginx", "kube-controller-manager"}
	got := p.Warnings()
	want := []string{
		"port 22 is both included and excluded: excluded wins, its connections are never destroyed",
		`process name "kube-controller-manager" is longer than the kernel's 15-byte comm: it matches comm "kube-controller"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Warnings() = %q\nwant %q", got, want)
	}
}

// TestWarningsCutOnRuneBoundary: a long name's warning never shows a
// character cut in two (the kernel's 15-byte cut may fall inside one).
func TestWarningsCutOnRuneBoundary(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		// 14 ASCII bytes, then "é" (2 bytes) across byte 15.
		{"abcdefghijklmné-worker", `comm "abcdefghijklmn" and 1 of the 2 bytes of 'é'`},
		// "€" is 3 bytes: 13 + 2 of them.
		{"abcdefghijklm€uro", `comm "abcdefghijklm" and 2 of the 3 bytes of '€'`},
		// A cut on a boundary: the 15 bytes whole.
		{"ñññññññ-postgres", `comm "ñññññññ-"`},
		{"ññññññññ", `comm "ñññññññ" and 1 of the 2 bytes of 'ñ'`},
	} {
		p := Default()
		p.ExcludeProcesses = []string{tt.name}
		w := p.Warnings()
		if len(w) != 1 {
			t.Fatalf("%q: warnings %q, want one", tt.name, w)
		}
		if !utf8.ValidString(w[0]) || strings.Contains(w[0], `\x`) {
			t.Errorf("%q: warning cuts a character: %q", tt.name, w[0])
		}
		if !strings.HasSuffix(w[0], "it matches "+tt.want) {
			t.Errorf("%q: warning %q, want it to end %q", tt.name, w[0], "it matches "+tt.want)
		}
	}
}

func TestDecideNeverDestroyed(t *testing.T) {
	p := Default()
	for _, s := range neverDestroyed {
		for _, age := range []time.Duration{0, time.Hour, 1000 * time.Hour} {
			v := p.Decide(mk(s, age, owner(1234, "myapp")), now)
			if v.Action != Ignore || v.Hung || v.Deadline != NoDeadline || v.Threshold != 0 || v.Skip != NotSkipped {
				t.Errorf("%s aged %v: %+v, want an ignore without deadline", s, age, v)
			}
			if v.Age != age {
				t.Errorf("%s: Age = %v, want %v", s, v.Age, age)
			}
			if want := s.String() + " is never destroyed"; v.Reason != want {
				t.Errorf("%s: Reason = %q, want %q", s, v.Reason, want)
			}
		}
	}
}

func TestDecideThresholdBoundary(t *testing.T) {
	p := Default()
	for _, s := range conn.ClosingStates {
		th, _ := p.Thresholds.For(s)
		at := mk(s, th)
		v := p.Decide(at, now)
		if v.Action != Destroy || !v.Hung || v.Age != th || v.Threshold != th {
			t.Errorf("%s aged exactly %v: %+v, want destroy", s, th, v)
		}
		if v.Deadline != now {
			t.Errorf("%s aged exactly %v: Deadline = %d, want now (%d)", s, th, v.Deadline, now)
		}

		before := mk(s, th-1)
		v = p.Decide(before, now)
		if v.Action != Ignore || v.Hung || v.Threshold != th {
			t.Errorf("%s aged %v - 1ns: %+v, want ignore", s, th, v)
		}
		if v.Deadline != now+1 || v.Deadline != before.Entered+uint64(th) {
			t.Errorf("%s aged %v - 1ns: Deadline = %d, want %d", s, th, v.Deadline, now+1)
		}
		// At the deadline itself, the same connection is hung.
		if v := p.Decide(before, v.Deadline); v.Action != Destroy {
			t.Errorf("%s at its deadline: %v, want destroy", s, v.Action)
		}
	}
}

func TestDecideReason(t *testing.T) {
	p := Default()
	tests := []struct {
		c    *conn.Conn
		want string
	}{
		{mk(conn.CloseWait, 75300*time.Millisecond),
			"CLOSE_WAIT for 75.3s ≥ 60s threshold (peer closed; the application never closed its socket)"},
		{mk(conn.FinWait1, 121*time.Second),
			"FIN_WAIT1 for 121.0s ≥ 120s threshold (our FIN not acknowledged)"},
		{mk(conn.FinWait2, 125*time.Minute),
			"FIN_WAIT2 for 2h05m00s ≥ 120s threshold (peer never sent its FIN)"},
		{mk(conn.Closing, 60*time.Second),
			"CLOSING for 60.0s ≥ 60s threshold (simultaneous close, final ACK missing)"},
		{mk(conn.LastAck, 61999*time.Millisecond),
			"LAST_ACK for 61.9s ≥ 60s threshold (final ACK from peer missing)"},
		{mk(conn.TimeWait, 3*24*time.Hour),
			"TIME_WAIT for 3d00h00m ≥ 120s threshold (kept past its threshold)"},
		{mk(conn.CloseWait, 75300*time.Millisecond, inexact),
			"CLOSE_WAIT for ≥75.3s ≥ 60s threshold (peer closed; the application never closed its socket; age is a lower bound: the socket predates the tracker)"},
		{mk(conn.CloseWait, 59999*time.Millisecond),
			"CLOSE_WAIT for 59.9s < 60s threshold (hung in 0.001s)"},
		{mk(conn.CloseWait, 12*time.Second),
			"CLOSE_WAIT for 12.0s < 60s threshold (hung in 48.0s)"},
		{mk(conn.CloseWait, 12*time.Second, inexact),
			"CLOSE_WAIT for ≥12.0s < 60s threshold (hung in at most 48.0s; age is a lower bound: the socket predates the tracker)"},
	}
	for _, tc := range tests {
		v := p.Decide(tc.c, now)
		if v.Reason != tc.want {
			t.Errorf("Reason = %q\nwant     %q", v.Reason, tc.want)
		}
	}
}

func TestDecideFilters(t *testing.T) {
	const hung = 10 * time.Minute
	withPorts := func(exclude, include []uint16) Policy {
		p := Default()
		p.ExcludePorts, p.IncludePorts = exclude, include
		return p
	}
	withProcs := func(names ...string) Policy {
		p := Default()
		p.ExcludeProcesses = names
		return p
	}
	tests := []struct {
		name   string
		p      Policy
		c      *conn.Conn
		action Action
		skip   SkipReason
		detail string
	}{
		{"plain hung connection", Default(), mk(conn.CloseWait, hung), Destroy, NotSkipped, ""},
		{"local port 22 excluded by default", Default(), mk(conn.CloseWait, hung, ports(22, 52431)),
			Skip, SkipExcludedPort, "local port 22 is excluded"},
		{"remote port 22 excluded by default", Default(), mk(conn.FinWait2, hung, ports(40000, 22)),
			Skip, SkipExcludedPort, "remote port 22 is excluded"},
		{"no exclusions: port 22 destroyed", withPorts(nil, nil), mk(conn.CloseWait, hung, ports(22, 52431)), Destroy, NotSkipped, ""},
		{"excluded list, other port", withPorts([]uint16{22, 3306, 5432}, nil), mk(conn.CloseWait, hung, ports(8080, 5433)), Destroy, NotSkipped, ""},
		{"excluded list, remote match", withPorts([]uint16{22, 3306, 5432}, nil), mk(conn.CloseWait, hung, ports(40000, 5432)),
			Skip, SkipExcludedPort, "remote port 5432 is excluded"},
		{"include matches local", withPorts([]uint16{22}, []uint16{80, 443}), mk(conn.CloseWait, hung, ports(443, 52431)), Destroy, NotSkipped, ""},
		{"include matches remote", withPorts([]uint16{22}, []uint16{80, 443}), mk(conn.FinWait1, hung, ports(52431, 80)), Destroy, NotSkipped, ""},
		{"include matches neither", withPorts([]uint16{22}, []uint16{80, 443}), mk(conn.CloseWait, hung, ports(8080, 52431)),
			Skip, SkipNotIncluded, "neither local port 8080 nor remote port 52431 is included"},
		{"exclude beats include", withPorts([]uint16{22}, []uint16{22, 443}), mk(conn.CloseWait, hung, ports(443, 22)),
			Skip, SkipExcludedPort, "remote port 22 is excluded"},
		{"unknown owner is destroyed", withProcs("nginx"), mk(conn.TimeWait, hung), Destroy, NotSkipped, ""},
		{"empty comm is destroyed", withProcs("nginx"), mk(conn.CloseWait, hung, owner(0, "")), Destroy, NotSkipped, ""},
		{"excluded process", withProcs("nginx", "postgres"), mk(conn.CloseWait, hung, owner(99, "postgres")),
			Skip, SkipExcludedProcess, "process postgres (pid 99) is excluded"},
		{"other process", withProcs("nginx", "postgres"), mk(conn.CloseWait, hung, owner(99, "postgres2")), Destroy, NotSkipped, ""},
		{"excluded by truncated comm", withProcs("kube-controller-manager"), mk(conn.CloseWait, hung, owner(7, "kube-controller")),
			Skip, SkipExcludedProcess, "process kube-controller (pid 7) is excluded as kube-controller-manager"},
		{"14-byte comm is not a truncation", withProcs("kube-controller-manager"), mk(conn.CloseWait, hung, owner(7, "kube-controlle")), Destroy, NotSkipped, ""},
		{"protected sshd", Default(), mk(conn.CloseWait, hung, owner(812, "sshd")),
			Skip, SkipProtectedProcess, "process sshd (pid 812) is protected"},
		{"protected sshd-session (OpenSSH ≥ 9.8)", Default(), mk(conn.CloseWait, hung, owner(813, "sshd-session")),
			Skip, SkipProtectedProcess, "process sshd-session (pid 813) is protected as sshd"},
		{"protected k3s-server", Default(), mk(conn.LastAck, hung, owner(900, "k3s-server")),
			Skip, SkipProtectedProcess, "process k3s-server (pid 900) is protected as k3s"},
		{"protected containerd-shim", Default(), mk(conn.CloseWait, hung, owner(901, "containerd-shim")),
			Skip, SkipProtectedProcess, "process containerd-shim (pid 901) is protected as containerd"},
		{"protected systemd", Default(), mk(conn.CloseWait, hung, owner(1, "systemd")), Skip, SkipProtectedProcess, "process systemd (pid 1) is protected"},
		{"protected init", Default(), mk(conn.CloseWait, hung, owner(1, "init")), Skip, SkipProtectedProcess, "process init (pid 1) is protected"},
		{"protected kthreadd", Default(), mk(conn.CloseWait, hung, owner(2, "kthreadd")), Skip, SkipProtectedProcess, "process kthreadd (pid 2) is protected"},
		{"protected dockerd", Default(), mk(conn.CloseWait, hung, owner(3, "dockerd")), Skip, SkipProtectedProcess, "process dockerd (pid 3) is protected"},
		{"protected kubelet", Default(), mk(conn.CloseWait, hung, owner(4, "kubelet")), Skip, SkipProtectedProcess, "process kubelet (pid 4) is protected"},
		{"protected beats include", withPorts(nil, []uint16{8080}), mk(conn.CloseWait, hung, owner(812, "sshd")),
			Skip, SkipProtectedProcess, "process sshd (pid 812) is protected"},
		{"protected beats excluded process", withProcs("sshd"), mk(conn.CloseWait, hung, owner(812, "sshd")),
			Skip, SkipProtectedProcess, "process sshd (pid 812) is protected"},
		{"protected with raw comm buffer", Default(), mk(conn.CloseWait, hung, owner(812, "sshd\x00\x00\x00")),
			Skip, SkipProtectedProcess, "process sshd (pid 812) is protected"},
		{"protected match is exact", Default(), mk(conn.CloseWait, hung, owner(5, "sshdx")), Destroy, NotSkipped, ""},
		{"protected match is case sensitive", Default(), mk(conn.CloseWait, hung, owner(5, "SSHD")), Destroy, NotSkipped, ""},
		{"prefix without dash is not protected", Default(), mk(conn.CloseWait, hung, owner(5, "initramfs")), Destroy, NotSkipped, ""},
		{"odd comm quoted", withProcs("Web Content"), mk(conn.CloseWait, hung, owner(6, "Web Content")),
			Skip, SkipExcludedProcess, `process "Web Content" (pid 6) is excluded`},
		{"ports checked before processes", Default(), mk(conn.CloseWait, hung, ports(22, 1000), owner(812, "sshd")),
			Skip, SkipExcludedPort, "local port 22 is excluded"},
		{"not hung: filters not consulted", Default(), mk(conn.CloseWait, time.Second, ports(22, 1000), owner(812, "sshd")), Ignore, NotSkipped, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.p.Decide(tc.c, now)
			if v.Action != tc.action || v.Skip != tc.skip || v.SkipDetail != tc.detail {
				t.Errorf("Decide = %v/%v/%q, want %v/%v/%q", v.Action, v.Skip, v.SkipDetail, tc.action, tc.skip, tc.detail)
			}
			if v.Hung != (tc.action != Ignore) {
				t.Errorf("Hung = %v with action %v", v.Hung, v.Action)
			}
		})
	}
}

// TestDue: the sweep's cheap check agrees with Decide at the threshold, on
// both sides of it, at the top of the clock and for states never destroyed,
// and allocates nothing.
func TestDue(t *testing.T) {
	p := Default()
	top := mk(conn.CloseWait, 0)
	top.Entered = math.MaxUint64 - 5
	cases := []*conn.Conn{
		mk(conn.CloseWait, 60*time.Second), mk(conn.CloseWait, 60*time.Second-1),
		mk(conn.TimeWait, 0), mk(conn.FinWait2, 1000*time.Hour, inexact),
		mk(conn.Established, 1000*time.Hour), top,
	}
	for _, c := range cases {
		for _, at := range []uint64{0, now, math.MaxUint64} {
			v := p.Decide(c, at)
			if hung, deadline := p.Due(c, at); hung != v.Hung || deadline != v.Deadline {
				t.Errorf("%s entered %d at %d: Due %v %d, Decide %v %d", c.State, c.Entered, at, hung, deadline, v.Hung, v.Deadline)
			}
		}
	}
	c := mk(conn.CloseWait, time.Second)
	if n := testing.AllocsPerRun(100, func() { p.Due(c, now) }); n != 0 {
		t.Errorf("Due allocates %v times", n)
	}
}

func TestDecideEdges(t *testing.T) {
	p := Default()

	// Entered after now (the socket moved while the sweep was reading the
	// map): age 0, not hung, deadline in the future.
	c := mk(conn.CloseWait, 0)
	c.Entered = now + uint64(time.Second)
	v := p.Decide(c, now)
	if v.Action != Ignore || v.Age != 0 || v.Deadline != c.Entered+uint64(60*time.Second) {
		t.Errorf("entered after now: %+v", v)
	}

	// A closing state without a threshold (Policy built by hand) is never
	// destroyed, however old.
	q := Default()
	q.Thresholds.TimeWait = 0
	v = q.Decide(mk(conn.TimeWait, 1000*time.Hour), now)
	if v.Action != Ignore || v.Hung || v.Deadline != NoDeadline || v.Reason != "TIME_WAIT has no threshold: never destroyed" {
		t.Errorf("no threshold: %+v", v)
	}

	// The deadline saturates instead of wrapping.
	c = mk(conn.CloseWait, 0)
	c.Entered = math.MaxUint64 - 5
	v = p.Decide(c, now)
	if v.Deadline != math.MaxUint64 || v.Action != Ignore {
		t.Errorf("deadline near the top of the clock: %+v", v)
	}

	// Entered at 0 (boot) works like any other time.
	c = mk(conn.FinWait2, 0)
	c.Entered = 0
	v = p.Decide(c, now)
	if v.Action != Destroy || v.Age != time.Duration(now) || v.Deadline != uint64(120*time.Second) {
		t.Errorf("entered at boot: %+v", v)
	}

	// Sub-millisecond thresholds are honoured.
	q = Default()
	q.Thresholds.CloseWait = 500 * time.Microsecond
	if v := q.Decide(mk(conn.CloseWait, 499*time.Microsecond), now); v.Action != Ignore {
		t.Errorf("499µs against 500µs: %v", v.Action)
	}
	if v := q.Decide(mk(conn.CloseWait, 500*time.Microsecond), now); v.Action != Destroy || v.Reason != "CLOSE_WAIT for 0.000s ≥ 0.0005s threshold (peer closed; the application never closed its socket)" {
		t.Errorf("500µs against 500µs: %v %q", v.Action, v.Reason)
	}
}

func TestStrings(t *testing.T) {
	for a, want := range map[Action]string{Ignore: "ignore", Destroy: "destroy", Skip: "skip", Action(9): "action(9)"} {
		if a.String() != want {
			t.Errorf("Action(%d).String() = %q, want %q", uint8(a), a.String(), want)
		}
	}
	want := map[SkipReason]string{
		NotSkipped:            "not skipped",
		SkipExcludedPort:      "excluded port",
		SkipNotIncluded:       "not in included ports",
		SkipProtectedProcess:  "protected process",
		SkipExcludedProcess:   "excluded process",
		SkipExcludedCgroup:    "excluded cgroup",
		SkipNotIncludedCgroup: "not in included cgroups",
		SkipReportOnly:        "report-only rule",
		SkipReason(9):         "skip(9)",
	}
	for r, w := range want {
		if r.String() != w {
			t.Errorf("SkipReason(%d).String() = %q, want %q", uint8(r), r.String(), w)
		}
	}
	if len(SkipReasons) != 7 {
		t.Errorf("SkipReasons = %v", SkipReasons)
	}
}

// A socket not hung yet, as nearly every tracked socket is at a sweep:
// Decide formats its reason, Due does not.
func BenchmarkDecideNotHung(b *testing.B) {
	p, c := Default(), mk(conn.CloseWait, time.Second)
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(c, now)
	}
}

func BenchmarkDueNotHung(b *testing.B) {
	p, c := Default(), mk(conn.CloseWait, time.Second)
	b.ReportAllocs()
	for b.Loop() {
		p.Due(c, now)
	}
}
