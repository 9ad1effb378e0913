package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// Values renders every key of s but rules, as the template writes them,
// for logs and diffs.
func (s *Settings) Values() map[string]string {
	v := map[string]string{}
	for _, t := range Timeouts {
		d, _ := s.Thresholds.For(t.States[0])
		v[t.Key] = policy.FormatThreshold(d)
	}
	ports := func(ps []uint16) string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = strconv.Itoa(int(p))
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	strs := func(ss []string) string {
		out := make([]string, len(ss))
		for i, x := range ss {
			out[i] = strconv.Quote(x)
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	v["mode"] = "dry-run"
	if s.Live {
		v["mode"] = "live"
	}
	v["exclude_ports"] = ports(s.ExcludePorts)
	v["include_ports"] = ports(s.IncludePorts)
	v["exclude_processes"] = strs(s.ExcludeProcesses)
	v["exclude_cgroups"] = strs(s.ExcludeCgroups)
	v["include_cgroups"] = strs(s.IncludeCgroups)
	v["max_kills"] = strconv.Itoa(s.MaxKills)
	v["kill_process"] = strconv.FormatBool(s.KillProcess)
	v["kill_grace"] = policy.FormatThreshold(s.KillGrace)
	v["map_size"] = strconv.FormatUint(uint64(s.MapSize), 10)
	v["netns"] = strs(s.NetNS)
	v["all_netns"] = strconv.FormatBool(s.AllNetNS)
	v["log_format"] = s.LogFormat
	v["log_file"] = strconv.Quote(s.LogFile)
	v["verbose"] = strconv.FormatBool(s.Verbose)
	v["metrics_addr"] = strconv.Quote(s.MetricsAddr)
	v["webhooks"] = strs(s.Webhooks)
	return v
}

// Diff says what changed from old to new, one line per key or rule: "key:
// old -> new", "rule NAME added: ...", "rule NAME removed", "rule NAME:
// old -> new", "rules reordered: a, b"; a key a running service takes only
// on restart says so. Empty when nothing changed.
func Diff(old, new *Settings) []string {
	var out []string
	ov, nv := old.Values(), new.Values()
	for _, k := range Keys {
		if k == "rules" || ov[k] == nv[k] {
			continue
		}
		line := fmt.Sprintf("%s: %s -> %s", k, ov[k], nv[k])
		if !Reloadable(k) {
			line += " (takes effect on restart)"
		}
		out = append(out, line)
	}
	byName := func(rs []policy.Rule) map[string]*policy.Rule {
		m := map[string]*policy.Rule{}
		for i := range rs {
			m[rs[i].Name] = &rs[i]
		}
		return m
	}
	om, nm := byName(old.Rules), byName(new.Rules)
	var kept, keptNew []string
	for i := range old.Rules {
		r := &old.Rules[i]
		n, ok := nm[r.Name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("rule %s removed", r.Name))
		case n.String() != r.String():
			out = append(out, fmt.Sprintf("rule %s: %s -> %s", r.Name, r.String(), n.String()))
		}
		if ok {
			kept = append(kept, r.Name)
		}
	}
	for i := range new.Rules {
		r := &new.Rules[i]
		if _, ok := om[r.Name]; !ok {
			out = append(out, fmt.Sprintf("rule %s added at position %d: %s", r.Name, i+1, r.String()))
		} else {
			keptNew = append(keptNew, r.Name)
		}
	}
	if strings.Join(kept, ",") != strings.Join(keptNew, ",") {
		out = append(out, "rules reordered (first match wins): "+strings.Join(keptNew, ", "))
	}
	return out
}
