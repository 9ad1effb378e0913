package policy

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

func remote(addr string) connOpt {
	return func(c *conn.Conn) { c.Remote = netip.AddrPortFrom(netip.MustParseAddr(addr), c.Remote.Port()) }
}

func netns(ino uint32, name string) connOpt {
	return func(c *conn.Conn) { c.NetNS, c.NetNSName = ino, name }
}

func cgroupOwner(comm, cg string) connOpt {
	return func(c *conn.Conn) { c.Owner = &conn.Owner{PID: 7, Comm: comm, Cgroup: cg} }
}

func closeWait(d time.Duration) Thresholds { return Thresholds{CloseWait: d} }

// TestRuleMatchers: each matcher alone, and all given ANDed.
func TestRuleMatchers(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule Rule
		c    *conn.Conn
		want bool
	}{
		{"none matches all", Rule{}, mk(conn.CloseWait, 0), true},
		{"local port", Rule{Ports: []uint16{8080}}, mk(conn.CloseWait, 0), true},
		{"remote port", Rule{Ports: []uint16{52431}}, mk(conn.CloseWait, 0), true},
		{"other port", Rule{Ports: []uint16{80}}, mk(conn.CloseWait, 0), false},
		{"cidr v4", Rule{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}, mk(conn.CloseWait, 0), true},
		{"cidr v4 out", Rule{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}}, mk(conn.CloseWait, 0), false},
		{"cidr v4-mapped", Rule{CIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, mk(conn.CloseWait, 0, remote("::ffff:192.0.2.9")), true},
		{"cidr v6", Rule{CIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}, mk(conn.CloseWait, 0, remote("fd12::1")), true},
		{"cidr v6 out", Rule{CIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}, mk(conn.CloseWait, 0), false},
		{"process", Rule{Processes: []string{"nginx"}}, mk(conn.CloseWait, 0, owner(1, "nginx")), true},
		{"process long name", Rule{Processes: []string{"kube-controller-manager"}}, mk(conn.CloseWait, 0, owner(1, "kube-controller")), true},
		{"process other", Rule{Processes: []string{"nginx"}}, mk(conn.CloseWait, 0, owner(1, "curl")), false},
		{"process no owner", Rule{Processes: []string{"nginx"}}, mk(conn.CloseWait, 0), false},
		{"cgroup ancestor", Rule{Cgroups: []string{"/kubepods.slice"}}, mk(conn.CloseWait, 0, cgroupOwner("x", "/kubepods.slice/pod1/c")), true},
		{"cgroup other", Rule{Cgroups: []string{"/kubepods.slice"}}, mk(conn.CloseWait, 0, cgroupOwner("x", "/system.slice")), false},
		{"netns inode", Rule{NetNS: []string{"4026532000"}}, mk(conn.CloseWait, 0, netns(4026532000, "")), true},
		{"netns inode other", Rule{NetNS: []string{"4026532000"}}, mk(conn.CloseWait, 0, netns(4026532001, "")), false},
		{"netns glob", Rule{NetNS: []string{"pod:*"}}, mk(conn.CloseWait, 0, netns(1, "pod:abc")), true},
		{"netns glob other", Rule{NetNS: []string{"pod:*"}}, mk(conn.CloseWait, 0, netns(1, "blue")), false},
		{"and: all match", Rule{Ports: []uint16{8080}, Processes: []string{"nginx"}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			mk(conn.CloseWait, 0, owner(1, "nginx")), true},
		{"and: one fails", Rule{Ports: []uint16{8080}, Processes: []string{"nginx"}}, mk(conn.CloseWait, 0, owner(1, "curl")), false},
		{"and: port fails", Rule{Ports: []uint16{9}, Processes: []string{"nginx"}}, mk(conn.CloseWait, 0, owner(1, "nginx")), false},
	} {
		if got := tc.rule.Matches(tc.c); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFirstMatchWins: the first matching rule gives the threshold and
// names itself; later matches do not count; no match: the policy's.
func TestFirstMatchWins(t *testing.T) {
	p := Default()
	p.Rules = []Rule{
		{Name: "nginx", Processes: []string{"nginx"}, Thresholds: closeWait(30 * time.Second)},
		{Name: "web", Ports: []uint16{8080}, Thresholds: closeWait(10 * time.Second)},
		{Name: "all", Thresholds: closeWait(5 * time.Second), Action: RuleReport},
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	// nginx on 8080: the first rule (30s) wins over "web" (10s).
	v := p.Decide(mk(conn.CloseWait, 20*time.Second, owner(1, "nginx")), now)
	if v.Rule != "nginx" || v.Hung || v.Threshold != 30*time.Second {
		t.Errorf("nginx: %+v", v)
	}
	// curl on 8080: "web".
	v = p.Decide(mk(conn.CloseWait, 20*time.Second, owner(1, "curl")), now)
	if v.Rule != "web" || v.Action != Destroy || v.Threshold != 10*time.Second {
		t.Errorf("curl: %+v", v)
	}
	// Another port: "all", report-only: hung and skipped, naming the rule.
	v = p.Decide(mk(conn.CloseWait, 6*time.Second, ports(9000, 1234)), now)
	if v.Rule != "all" || v.Action != Skip || v.Skip != SkipReportOnly || v.SkipDetail != "rule all reports only (action: report)" {
		t.Errorf("all: %+v", v)
	}
	// A state the rule does not set inherits the policy's.
	v = p.Decide(mk(conn.LastAck, 59*time.Second, ports(9000, 1234)), now)
	if v.Rule != "all" || v.Hung || v.Threshold != 60*time.Second {
		t.Errorf("inherited: %+v", v)
	}
	// Without rules: the flags' thresholds, Rule "".
	p.Rules = nil
	if v = p.Decide(mk(conn.CloseWait, 20*time.Second, owner(1, "curl")), now); v.Rule != "" || v.Hung {
		t.Errorf("no rules: %+v", v)
	}
}

// TestFiltersWinOverRules: excluded ports and protected processes keep a
// connection a rule would destroy; a report rule does not hide them.
func TestFiltersWinOverRules(t *testing.T) {
	p := Default()
	p.ExcludeProcesses = []string{"postgres"}
	p.Rules = []Rule{{Name: "fast", Thresholds: closeWait(time.Second)}}
	for _, tc := range []struct {
		c    *conn.Conn
		want SkipReason
	}{
		{mk(conn.CloseWait, 2*time.Second, ports(22, 5000)), SkipExcludedPort},
		{mk(conn.CloseWait, 2*time.Second, owner(1, "sshd")), SkipProtectedProcess},
		{mk(conn.CloseWait, 2*time.Second, owner(1, "postgres")), SkipExcludedProcess},
	} {
		if v := p.Decide(tc.c, now); v.Skip != tc.want || v.Rule != "fast" {
			t.Errorf("%v: %+v, want skip %v", tc.c, v, tc.want)
		}
	}
}

// TestDueNeverLaterThanDecide: over random rules and connections, Due
// (owner unknown) never says not-hung, nor a later deadline, when Decide
// (owner known) says hung / gives an earlier deadline.
func TestDueNeverLaterThanDecide(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n int) bool { return rng.IntN(n) == 0 }
	comms := []string{"nginx", "curl", "postgres"}
	for iter := range 3000 {
		p := Default()
		p.ExcludePorts = nil
		for i := range rng.IntN(4) {
			r := Rule{Name: string(rune('a' + i))}
			if pick(2) {
				r.Ports = []uint16{uint16(8080 + rng.IntN(2))}
			}
			if pick(3) {
				r.CIDRs = []netip.Prefix{netip.MustParsePrefix([]string{"10.0.0.0/24", "10.9.0.0/16"}[rng.IntN(2)])}
			}
			if pick(2) {
				r.Processes = []string{comms[rng.IntN(3)]}
			}
			if pick(3) {
				r.Cgroups = []string{[]string{"/a", "/b"}[rng.IntN(2)]}
			}
			if pick(3) {
				r.NetNS = []string{[]string{"blue", "1", "r*"}[rng.IntN(3)]}
			}
			if pick(2) {
				r.Thresholds.CloseWait = time.Duration(1+rng.IntN(120)) * time.Second
			}
			if pick(2) {
				r.Action = RuleReport
			}
			p.Rules = append(p.Rules, r)
		}
		opts := []connOpt{ports(uint16(8080+rng.IntN(2)), 5000), netns(uint32(1+rng.IntN(2)), []string{"blue", "red"}[rng.IntN(2)])}
		if pick(2) {
			opts = append(opts, cgroupOwner(comms[rng.IntN(3)], []string{"/a/x", "/b", ""}[rng.IntN(3)]))
		}
		c := mk(conn.CloseWait, time.Duration(rng.IntN(130))*time.Second, opts...)
		if pick(4) {
			c.Orphan, c.Owner = true, nil
		}
		v := p.Decide(c, now)
		hung, deadline := p.Due(c, now)
		if v.Hung && !hung || deadline > v.Deadline {
			t.Fatalf("iteration %d: Due (%v, %d) later than Decide %+v\nrules %+v\nconn %+v", iter, hung, deadline, v, p.Rules, c)
		}
		min := p.MinThresholds()
		if v.Threshold < min.CloseWait {
			t.Fatalf("iteration %d: threshold %v under the minimum %v", iter, v.Threshold, min.CloseWait)
		}
	}
}

func TestRuleValidate(t *testing.T) {
	p := Default()
	p.Rules = []Rule{{Name: "a"}, {Name: "a"}}
	if err := p.Validate(); err == nil || err.Error() != "rule a: a second rule with this name" {
		t.Errorf("duplicate: %v", err)
	}
	p.Rules = []Rule{{Name: "a", Ports: []uint16{0}}}
	if err := p.Validate(); err == nil {
		t.Error("port 0 accepted")
	}
	p.Rules = []Rule{{Name: "a", Thresholds: Thresholds{TimeWait: MaxDuration + 1}}}
	if err := p.Validate(); err == nil {
		t.Error("threshold over 100 years accepted")
	}
}
