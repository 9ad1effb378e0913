package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// TestTemplateIsDefault: the template loads, sets every key, and its
// values are the defaults (the flags').
func TestTemplateIsDefault(t *testing.T) {
	c, err := Parse("template.yaml", Template(), Checks{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys {
		if !c.Set(k) {
			t.Errorf("template does not set %s", k)
		}
	}
	want := Default()
	want.Rules = []policy.Rule{}
	for _, l := range []*[]uint16{&want.IncludePorts} {
		*l = []uint16{}
	}
	for _, l := range []*[]string{&want.ExcludeProcesses, &want.ExcludeCgroups, &want.IncludeCgroups, &want.NetNS, &want.Webhooks} {
		*l = []string{}
	}
	if !reflect.DeepEqual(c.Settings, want) {
		t.Errorf("template loads as\n%+v\nwant the defaults\n%+v", c.Settings, want)
	}
	if d := Diff(&c.Settings, &want); len(d) != 0 {
		t.Errorf("template differs from the defaults: %q", d)
	}
	if DefaultMapSize != tracking.DefaultMapSize {
		t.Errorf("DefaultMapSize %d, tracker's %d", DefaultMapSize, tracking.DefaultMapSize)
	}
	// The example rule, uncommented, loads too.
	var b strings.Builder
	example := false
	for _, l := range strings.Split(string(Template()), "\n") {
		example = example || strings.HasPrefix(l, "#rules:")
		switch {
		case l == "rules: []":
		case example:
			b.WriteString(strings.TrimPrefix(l, "#") + "\n")
		default:
			b.WriteString(l + "\n")
		}
	}
	c, err = Parse("example.yaml", []byte(b.String()), Checks{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Settings.Rules) != 2 || c.Settings.Rules[0].Name != "web-fast" || c.Settings.Rules[1].Action != policy.RuleReport {
		t.Errorf("example rules: %+v", c.Settings.Rules)
	}
}

func TestParseValues(t *testing.T) {
	src := `mode: live
close_wait_timeout: 30
fin_wait_timeout: 1m30s
exclude_ports: "22 3306"
include_ports: [80, "443"]
exclude_processes: ["'my proc'", nginx]
exclude_cgroups:
  - /system.slice/docker-*.scope/
max_kills: 5
kill_process: true
kill_grace: 500ms
map_size: 1024
netns: [blue]
log_format: json
verbose: true
metrics_addr: "127.0.0.1:9477"
webhooks: ["slack=https://hooks.slack.com/x"]
rules:
  - name: web
    ports: 80,443
    close_wait_timeout: 5
  - name: v6
    cidrs: [fd00::/8, 10.1.2.3]
    processes: curl
    cgroups: [/user.slice]
    netns: ["pod:*", 4026531840]
    action: report
`
	c, err := Parse("c.yaml", []byte(src), Checks{})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Settings
	if !s.Live || s.Thresholds.CloseWait != 30*time.Second || s.Thresholds.FinWait1 != 90*time.Second || s.Thresholds.FinWait2 != 90*time.Second ||
		s.Thresholds.TimeWait != 120*time.Second {
		t.Errorf("mode/thresholds: %+v", s)
	}
	if !reflect.DeepEqual(s.ExcludePorts, []uint16{22, 3306}) || !reflect.DeepEqual(s.IncludePorts, []uint16{80, 443}) {
		t.Errorf("ports %v %v", s.ExcludePorts, s.IncludePorts)
	}
	if !reflect.DeepEqual(s.ExcludeProcesses, []string{"my proc", "nginx"}) || !reflect.DeepEqual(s.ExcludeCgroups, []string{"/system.slice/docker-*.scope"}) {
		t.Errorf("names %q %q", s.ExcludeProcesses, s.ExcludeCgroups)
	}
	if s.MaxKills != 5 || !s.KillProcess || s.KillGrace != 500*time.Millisecond || s.MapSize != 1024 || s.NetNS[0] != "blue" ||
		s.LogFormat != "json" || !s.Verbose || s.MetricsAddr != "127.0.0.1:9477" || len(s.Webhooks) != 1 {
		t.Errorf("settings %+v", s)
	}
	if len(s.Rules) != 2 {
		t.Fatalf("rules %+v", s.Rules)
	}
	r0, r1 := s.Rules[0], s.Rules[1]
	if r0.Name != "web" || !reflect.DeepEqual(r0.Ports, []uint16{80, 443}) || r0.Thresholds.CloseWait != 5*time.Second || r0.Thresholds.TimeWait != 0 || r0.Action != policy.RuleDestroy {
		t.Errorf("rule 0 %+v", r0)
	}
	wantCIDRs := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("fd00::/8")}
	if r1.Action != policy.RuleReport || !reflect.DeepEqual(r1.CIDRs, wantCIDRs) || r1.Processes[0] != "curl" ||
		r1.Cgroups[0] != "/user.slice" || !reflect.DeepEqual(r1.NetNS, []string{"4026531840", "pod:*"}) {
		t.Errorf("rule 1 %+v", r1)
	}
	for _, k := range []string{"mode", "rules", "webhooks"} {
		if !c.Set(k) {
			t.Errorf("%s not set", k)
		}
	}
	if c.Lines["rules"] != 18 || c.Set("all_netns") {
		t.Errorf("lines %v", c.Lines)
	}
}

// TestStrict: every kind of mistake is one line naming file:line: key.
func TestStrict(t *testing.T) {
	bad := errors.New("refused by the check")
	checks := Checks{
		MetricsAddr: func(s string) error {
			if s == "nope" {
				return bad
			}
			return nil
		},
		Webhook: func(s string) error {
			if !strings.Contains(s, "://") {
				return bad
			}
			return nil
		},
	}
	for _, tc := range []struct{ src, want string }{
		{"close_wait_timout: 30\n", "c.yaml:1: close_wait_timout: unknown key"},
		{"mode: live\nclose_wait_timeout: abc\n", `c.yaml:2: close_wait_timeout: invalid duration "abc"`},
		{"close_wait_timeout: 0\n", `c.yaml:1: close_wait_timeout: invalid duration "0": must be more than zero`},
		{"close_wait_timeout: [1]\n", "c.yaml:1: close_wait_timeout: want a duration"},
		{"exclude_ports:\n  - 22\n  - 70000\n", `c.yaml:3: exclude_ports: invalid port "70000"`},
		{"exclude_processes: [a/b]\n", `c.yaml:1: exclude_processes: invalid process name "a/b"`},
		{"exclude_cgroups: [docker]\n", `c.yaml:1: exclude_cgroups: invalid cgroup glob "docker"`},
		{"max_kills: -1\n", "c.yaml:1: max_kills: -1 is negative"},
		{"max_kills: 1.5\n", `c.yaml:1: max_kills: want a whole number, not "1.5"`},
		{"kill_process: yes\n", `c.yaml:1: kill_process: want true or false, not "yes"`},
		{"kill_grace: 10m\n", "c.yaml:1: kill_grace: 10m0s is longer than 5m0s"},
		{"map_size: 0\n", "c.yaml:1: map_size: 0: want a number"},
		{"mode: yolo\n", `c.yaml:1: mode: invalid mode "yolo"`},
		{"log_format: xml\n", `c.yaml:1: log_format: invalid log format "xml"`},
		{"\n\nnetns: [a]\nall_netns: true\n", "c.yaml:4: all_netns: netns and all_netns: choose one"},
		{"metrics_addr: nope\n", "c.yaml:1: metrics_addr: refused by the check"},
		{"webhooks:\n  - https://x\n  - ftp\n", "c.yaml:3: webhooks: refused by the check"},
		{"verbose: true\nverbose: false\n", "c.yaml:2: verbose: set twice (first on line 1)"},
		{"- 1\n", "c.yaml:1: want a mapping"},
		{"mode: [\n", "c.yaml:1: did not find expected node content"},
		{"rules:\n  - ports: [80]\n", "c.yaml:2: rules[0]: no name"},
		{"rules:\n  - name: a\n    prots: [80]\n", "c.yaml:3: rules[0].prots: unknown rule key"},
		{"rules:\n  - name: a\n  - name: a\n", `c.yaml:3: rules[1].name: "a" is the name of the rule on line 2 too`},
		{"rules:\n  - name: a b\n", `c.yaml:2: rules[0].name: invalid rule name "a b"`},
		{"rules:\n  - name: default\n", `c.yaml:2: rules[0].name: invalid rule name "default"`},
		{"rules:\n  - name: a\n    cidrs: [10.0.0.0/33]\n", `c.yaml:3: rules[0].cidrs: invalid CIDR "10.0.0.0/33"`},
		{"rules:\n  - name: a\n    netns: [\"[\"]\n", `c.yaml:3: rules[0].netns: invalid namespace glob "["`},
		{"rules:\n  - name: a\n    action: kill\n", `c.yaml:3: rules[0].action: invalid action "kill"`},
		{"rules:\n  - name: a\n    last_ack_timeout: -1\n", `c.yaml:3: rules[0].last_ack_timeout: invalid duration "-1"`},
		{"rules:\n  - name: a\n    ports: []\n", "c.yaml:3: rules[0].ports: no ports"},
		{"rules: {name: a}\n", "c.yaml:1: rules: want a list of rules"},
	} {
		_, err := Parse("c.yaml", []byte(tc.src), checks)
		if err == nil {
			t.Errorf("%q: no error, want %q", tc.src, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q:\n got %q\nwant %q...", tc.src, err, tc.want)
		}
	}
}

func TestEmptyAndLoad(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n"} {
		c, err := Parse("c.yaml", []byte(src), Checks{})
		if err != nil || len(c.Lines) != 0 || !reflect.DeepEqual(c.Settings, Default()) {
			t.Errorf("%q: %v %+v", src, err, c)
		}
	}
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("max_kills: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, Checks{}); err == nil || !strings.HasPrefix(err.Error(), p+":1: max_kills: ") {
		t.Errorf("Load: %v", err)
	}
	if _, err := Load(p+".missing", Checks{}); err == nil || !strings.HasPrefix(err.Error(), "read config: ") {
		t.Errorf("Load missing: %v", err)
	}
}

func TestDiff(t *testing.T) {
	parse := func(src string) *Settings {
		t.Helper()
		c, err := Parse("c.yaml", []byte(src), Checks{})
		if err != nil {
			t.Fatal(err)
		}
		return &c.Settings
	}
	a := parse("close_wait_timeout: 60\nrules:\n  - name: a\n    ports: [80]\n  - name: b\n    ports: [81]\n  - name: c\n    ports: [82]\n")
	b := parse("close_wait_timeout: 30\nmap_size: 10\nrules:\n  - name: b\n    ports: [81]\n  - name: a\n    ports: [80]\n    close_wait_timeout: 2\n  - name: d\n    action: report\n")
	got := Diff(a, b)
	want := []string{
		"close_wait_timeout: 60s -> 30s",
		"map_size: 262144 -> 10 (takes effect on restart)",
		"rule a: ports=80 action=destroy -> ports=80 CLOSE_WAIT=2s action=destroy",
		"rule c removed",
		"rule d added at position 3: action=report",
		"rules reordered (first match wins): b, a",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("Diff of the same: %q", d)
	}
}
