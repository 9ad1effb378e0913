// Package config reads hck-bpf's configuration file: YAML holding every
// setting the sweep flags have, plus rules. It is strict: an unknown key,
// a value of the wrong type or a bad value is an error naming the file and
// line ("config.yaml:12: close_wait_timeout: invalid duration ..."). Values
// are parsed by the parsers the flags use (internal/policy), so a value
// means the same in both.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// MaxKillGrace bounds kill_grace (--kill-grace): a sweep waits for the
// processes it signalled, up to the grace period.
const MaxKillGrace = 5 * time.Minute

// DefaultMapSize is map_size's default (the tracker's, tracking.DefaultMapSize).
const DefaultMapSize = 262144

// Settings are the values of every key: what the flags and the file set.
type Settings struct {
	Thresholds       policy.Thresholds
	ExcludePorts     []uint16
	IncludePorts     []uint16
	ExcludeProcesses []string
	ExcludeCgroups   []string
	IncludeCgroups   []string
	MaxKills         int
	KillProcess      bool
	KillGrace        time.Duration
	MapSize          uint32
	Live             bool
	NetNS            []string
	AllNetNS         bool
	LogFormat        string
	LogFile          string
	Verbose          bool
	MetricsAddr      string
	Webhooks         []string
	Rules            []policy.Rule
}

// Default is every key at its default: the flags' defaults.
func Default() Settings {
	p := policy.Default()
	return Settings{
		Thresholds:   p.Thresholds,
		ExcludePorts: p.ExcludePorts,
		KillGrace:    5 * time.Second,
		MapSize:      DefaultMapSize,
		LogFormat:    "text",
	}
}

// Policy is the sweep policy of s.
func (s *Settings) Policy() policy.Policy {
	return policy.Policy{
		Thresholds:       s.Thresholds,
		ExcludePorts:     s.ExcludePorts,
		IncludePorts:     s.IncludePorts,
		ExcludeProcesses: s.ExcludeProcesses,
		ExcludeCgroups:   s.ExcludeCgroups,
		IncludeCgroups:   s.IncludeCgroups,
		Rules:            s.Rules,
	}
}

// Checks validate the values the config carries for other packages; a nil
// check accepts anything.
type Checks struct {
	MetricsAddr func(string) error
	Webhook     func(string) error
}

// Config is one file read.
type Config struct {
	Path string
	// Settings: Default with what the file sets.
	Settings Settings
	// Lines holds, for every key the file sets, its line.
	Lines map[string]int
}

// Set reports whether the file sets key.
func (c *Config) Set(key string) bool {
	_, ok := c.Lines[key]
	return ok
}

// Errorf is an error about key as the file sets it: "file:line: key: why".
func (c *Config) Errorf(key string, format string, args ...any) error {
	return &Error{Path: c.Path, Line: c.Lines[key], Key: key, Err: fmt.Errorf(format, args...)}
}

// Error is a problem with one key of a file.
type Error struct {
	Path string
	Line int
	Key  string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	return b.String() + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and checks the file at path.
func Load(path string, checks Checks) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, checks)
}

// Parse checks data, the file at path.
func Parse(path string, data []byte, checks Checks) (*Config, error) {
	c := &Config{Path: path, Settings: Default(), Lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		return c, nil // empty: every default
	case err != nil:
		return nil, yamlError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(path, err)
		}
		return nil, &Error{Path: path, Line: extra.Line, Err: errors.New("a second YAML document: want one")}
	}
	top := &doc
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return c, nil // only comments
	}
	if top.Kind != yaml.MappingNode {
		return nil, &Error{Path: path, Line: top.Line, Err: fmt.Errorf("want a mapping of keys (close_wait_timeout: 60, ...), not %s", kindName(top))}
	}
	p := parser{path: path, checks: checks}
	if err := p.top(c, top); err != nil {
		return nil, err
	}
	// One last look with the flags' own checks, as a whole.
	pol := c.Settings.Policy()
	if err := pol.Validate(); err != nil {
		return nil, &Error{Path: path, Err: err}
	}
	return c, nil
}

// yamlError makes the YAML library's error one line naming the file:
// "yaml: line 3: did not find expected key" -> "file:3: did not find ...".
func yamlError(path string, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if _, e := strconv.Atoi(n); e == nil {
				return fmt.Errorf("%s:%s: %s", path, n, strings.ReplaceAll(after, "\n", "; "))
			}
		}
	}
	return fmt.Errorf("%s: %s", path, strings.ReplaceAll(msg, "\n", "; "))
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

type parser struct {
	path   string
	checks Checks
}

func (p *parser) errAt(n *yaml.Node, key string, err error) error {
	return &Error{Path: p.path, Line: n.Line, Key: key, Err: err}
}

// keyErr is err of key's value n: an *Error from a parser of n, named key
// if it names no key, or err at n's line.
func (p *parser) keyErr(err error, n *yaml.Node, key string) error {
	var e *Error
	if errors.As(err, &e) {
		if e.Key == "" {
			e.Key = key
		}
		return e
	}
	return p.errAt(n, key, err)
}

// timeout sets th from n when key is one of the timeouts (Timeouts);
// other keys are left to the caller.
func (p *parser) timeout(key string, n *yaml.Node, th *policy.Thresholds) error {
	for _, t := range Timeouts {
		if t.Key != key {
			continue
		}
		d, err := p.duration(n)
		if err != nil {
			return err
		}
		for _, st := range t.States {
			_ = th.Set(st, d)
		}
	}
	return nil
}

// Timeouts are the keys of the thresholds, with the states each sets (the
// --*-timeout flags).
var Timeouts = []struct {
	Key    string
	States []conn.State
}{
	{"close_wait_timeout", []conn.State{conn.CloseWait}},
	{"fin_wait_timeout", []conn.State{conn.FinWait1, conn.FinWait2}},
	{"time_wait_timeout", []conn.State{conn.TimeWait}},
	{"closing_timeout", []conn.State{conn.Closing}},
	{"last_ack_timeout", []conn.State{conn.LastAck}},
}

// Keys lists every top-level key, in the template's order.
var Keys = []string{
	"mode", "close_wait_timeout", "fin_wait_timeout", "time_wait_timeout", "closing_timeout", "last_ack_timeout",
	"exclude_ports", "include_ports", "exclude_processes", "exclude_cgroups", "include_cgroups",
	"max_kills", "kill_process", "kill_grace", "map_size", "netns", "all_netns",
	"log_format", "log_file", "verbose", "metrics_addr", "webhooks", "rules",
}

// Flag is the command-line flag that sets key ("" for rules, which only
// the file sets): the flag, when given, overrides the file. mode is
// --live / --dry-run.
func Flag(key string) string {
	switch key {
	case "rules":
		return ""
	case "mode":
		return "live"
	case "webhooks":
		return "webhook"
	}
	return strings.ReplaceAll(key, "_", "-")
}

// Reloadable reports whether a running service takes a new value of key
// on reload; the others need a restart.
func Reloadable(key string) bool {
	switch key {
	case "mode", "map_size", "netns", "all_netns", "log_format", "log_file", "verbose", "metrics_addr", "webhooks":
		return false
	}
	return true
}

func (p *parser) top(c *Config, m *yaml.Node) error {
	s := &c.Settings
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, v := m.Content[i], m.Content[i+1]
		key := kn.Value
		if kn.Kind != yaml.ScalarNode {
			return p.errAt(kn, "", fmt.Errorf("a key must be a plain name, not %s", kindName(kn)))
		}
		if !slices.Contains(Keys, key) {
			return p.errAt(kn, key, fmt.Errorf("unknown key: want one of %s", strings.Join(Keys, ", ")))
		}
		if l, dup := c.Lines[key]; dup {
			return p.errAt(kn, key, fmt.Errorf("set twice (first on line %d)", l))
		}
		c.Lines[key] = kn.Line
		if v.Kind == yaml.AliasNode {
			return p.errAt(v, key, errors.New("aliases are not supported: write the value"))
		}
		var err error
		switch key {
		case "mode":
			var m string
			if m, err = p.str(v); err == nil {
				switch m {
				case "live":
					s.Live = true
				case "dry-run":
					s.Live = false
				default:
					err = fmt.Errorf("invalid mode %q: want dry-run or live", m)
				}
			}
		case "exclude_ports":
			s.ExcludePorts, err = list(p, v, policy.ParsePorts)
		case "include_ports":
			s.IncludePorts, err = list(p, v, policy.ParsePorts)
		case "exclude_processes":
			s.ExcludeProcesses, err = list(p, v, policy.ParseNames)
		case "exclude_cgroups":
			s.ExcludeCgroups, err = list(p, v, policy.ParseCgroupGlobs)
		case "include_cgroups":
			s.IncludeCgroups, err = list(p, v, policy.ParseCgroupGlobs)
		case "max_kills":
			var n int
			if n, err = p.int(v); err == nil && n < 0 {
				err = fmt.Errorf("%d is negative: want 0 (no cap) or more", n)
			}
			s.MaxKills = n
		case "kill_process":
			s.KillProcess, err = p.bool(v)
		case "kill_grace":
			var d time.Duration
			if d, err = p.duration(v); err == nil && d > MaxKillGrace {
				err = fmt.Errorf("%s is longer than %s: the sweep waits for it", d, MaxKillGrace)
			}
			s.KillGrace = d
		case "map_size":
			var n int
			if n, err = p.int(v); err == nil && (n < 1 || n > 1<<32-1) {
				err = fmt.Errorf("%d: want a number of sockets from 1 to 4294967295", n)
			}
			s.MapSize = uint32(n)
		case "netns":
			s.NetNS, err = p.strings(v, func(x string) error {
				if strings.TrimSpace(x) == "" {
					return errors.New("empty namespace")
				}
				return nil
			})
		case "all_netns":
			s.AllNetNS, err = p.bool(v)
		case "log_format":
			if s.LogFormat, err = p.str(v); err == nil && s.LogFormat != "text" && s.LogFormat != "json" {
				err = fmt.Errorf("invalid log format %q: want text or json", s.LogFormat)
			}
		case "log_file":
			s.LogFile, err = p.str(v)
		case "verbose":
			s.Verbose, err = p.bool(v)
		case "metrics_addr":
			if s.MetricsAddr, err = p.str(v); err == nil && s.MetricsAddr != "" && p.checks.MetricsAddr != nil {
				err = p.checks.MetricsAddr(s.MetricsAddr)
			}
		case "webhooks":
			s.Webhooks, err = p.strings(v, p.checks.Webhook)
		case "rules":
			s.Rules, err = p.rules(v)
		default:
			err = p.timeout(key, v, &s.Thresholds)
		}
		if err != nil {
			return p.keyErr(err, v, key)
		}
	}
	if s.AllNetNS && len(s.NetNS) > 0 {
		return &Error{Path: p.path, Line: c.Lines["all_netns"], Key: "all_netns", Err: errors.New("netns and all_netns: choose one")}
	}
	return nil
}

// scalar checks that n is one plain value.
func (p *parser) scalar(n *yaml.Node, want string) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return fmt.Errorf("want %s, not %s", want, kindName(n))
	}
	return nil
}

func (p *parser) str(n *yaml.Node) (string, error) {
	if err := p.scalar(n, "a string"); err != nil {
		return "", err
	}
	return n.Value, nil
}

func (p *parser) bool(n *yaml.Node) (bool, error) {
	if err := p.scalar(n, "true or false"); err != nil {
		return false, err
	}
	if n.Tag != "!!bool" {
		return false, fmt.Errorf("want true or false, not %q", n.Value)
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		return false, fmt.Errorf("want true or false, not %q", n.Value)
	}
	return b, nil
}

func (p *parser) int(n *yaml.Node) (int, error) {
	if err := p.scalar(n, "a whole number"); err != nil {
		return 0, err
	}
	if n.Tag != "!!int" {
		return 0, fmt.Errorf("want a whole number, not %q", n.Value)
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a whole number in decimal, not %q", n.Value)
	}
	return int(v), nil
}

// duration reads a threshold as the timeout flags take it: seconds (60,
// 1.5) or a Go duration (90s, 1m30s).
func (p *parser) duration(n *yaml.Node) (time.Duration, error) {
	if err := p.scalar(n, "a duration (60, 1.5, 90s)"); err != nil {
		return 0, err
	}
	return policy.ParseDuration(n.Value)
}

// items are the values of a list key: one scalar (the flag's own syntax,
// "22 3306") or a list of scalars, each with its node.
func (p *parser) items(n *yaml.Node) ([]*yaml.Node, error) {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return nil, nil // "key:" alone: an empty list
	case n.Kind == yaml.ScalarNode:
		return []*yaml.Node{n}, nil
	case n.Kind == yaml.SequenceNode:
		for _, it := range n.Content {
			if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
				return nil, &Error{Path: p.path, Line: it.Line, Err: fmt.Errorf("want a plain value in the list, not %s", kindName(it))}
			}
		}
		return n.Content, nil
	}
	return nil, fmt.Errorf("want a list, not %s", kindName(n))
}

// list parses a list key with a flag's parser; an error names the line of
// the item at fault.
func list[T any](p *parser, n *yaml.Node, parse func([]string) ([]T, error)) ([]T, error) {
	its, err := p.items(n)
	if err != nil {
		return nil, err
	}
	vals := make([]string, len(its))
	for i, it := range its {
		if _, err := parse([]string{it.Value}); err != nil {
			return nil, &Error{Path: p.path, Line: it.Line, Err: err}
		}
		vals[i] = it.Value
	}
	out, err := parse(vals)
	if out == nil && err == nil {
		out = []T{}
	}
	return out, err
}

// strings reads a list of strings, each checked by check (nil: any).
func (p *parser) strings(n *yaml.Node, check func(string) error) ([]string, error) {
	its, err := p.items(n)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, it := range its {
		if check != nil {
			if err := check(it.Value); err != nil {
				return nil, &Error{Path: p.path, Line: it.Line, Err: err}
			}
		}
		out = append(out, it.Value)
	}
	return out, nil
}

// ruleKeys are the keys of one rule.
var ruleKeys = []string{"name", "ports", "cidrs", "processes", "cgroups", "netns",
	"close_wait_timeout", "fin_wait_timeout", "time_wait_timeout", "closing_timeout", "last_ack_timeout", "action"}

func (p *parser) rules(n *yaml.Node) ([]policy.Rule, error) {
	its, err := func() ([]*yaml.Node, error) {
		switch {
		case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
			return nil, nil
		case n.Kind == yaml.SequenceNode:
			return n.Content, nil
		}
		return nil, fmt.Errorf("want a list of rules (- name: ...), not %s", kindName(n))
	}()
	if err != nil {
		return nil, err
	}
	rules := []policy.Rule{}
	names := map[string]int{}
	for i, rn := range its {
		where := fmt.Sprintf("rules[%d]", i)
		if rn.Kind != yaml.MappingNode {
			return nil, p.errAt(rn, where, fmt.Errorf("want a rule (name: ..., ports: ..., action: ...), not %s", kindName(rn)))
		}
		r, err := p.rule(rn, where)
		if err != nil {
			return nil, err
		}
		if l, dup := names[r.Name]; dup {
			return nil, p.errAt(rn, where+".name", fmt.Errorf("%q is the name of the rule on line %d too: names are unique", r.Name, l))
		}
		names[r.Name] = rn.Line
		rules = append(rules, r)
	}
	return rules, nil
}

func (p *parser) rule(m *yaml.Node, where string) (policy.Rule, error) {
	var r policy.Rule
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, v := m.Content[i], m.Content[i+1]
		key := kn.Value
		at := where + "." + key
		if !slices.Contains(ruleKeys, key) {
			return r, p.errAt(kn, at, fmt.Errorf("unknown rule key: want one of %s", strings.Join(ruleKeys, ", ")))
		}
		if l, dup := seen[key]; dup {
			return r, p.errAt(kn, at, fmt.Errorf("set twice (first on line %d)", l))
		}
		seen[key] = kn.Line
		var err error
		switch key {
		case "name":
			if r.Name, err = p.str(v); err == nil {
				err = policy.CheckRuleName(r.Name)
			}
		case "ports":
			if r.Ports, err = list(p, v, policy.ParsePorts); err == nil && len(r.Ports) == 0 {
				err = errors.New("no ports: leave the key out to match every port")
			}
		case "cidrs":
			r.CIDRs, err = list(p, v, parseCIDRs)
			if err == nil && len(r.CIDRs) == 0 {
				err = errors.New("no CIDRs: leave the key out to match every address")
			}
		case "processes":
			if r.Processes, err = list(p, v, policy.ParseNames); err == nil && len(r.Processes) == 0 {
				err = errors.New("no names: leave the key out to match every process")
			}
		case "cgroups":
			if r.Cgroups, err = list(p, v, policy.ParseCgroupGlobs); err == nil && len(r.Cgroups) == 0 {
				err = errors.New("no globs: leave the key out to match every cgroup")
			}
		case "netns":
			if r.NetNS, err = list(p, v, parseNetNS); err == nil && len(r.NetNS) == 0 {
				err = errors.New("no namespaces: leave the key out to match every namespace")
			}
		case "action":
			var a string
			if a, err = p.str(v); err == nil {
				r.Action, err = policy.ParseRuleAction(a)
			}
		default:
			err = p.timeout(key, v, &r.Thresholds)
		}
		if err != nil {
			return r, p.keyErr(err, v, at)
		}
	}
	if _, ok := seen["name"]; !ok {
		return r, p.errAt(m, where, errors.New("no name: every rule has one (name: ...), unique"))
	}
	return r, nil
}

// parseCIDRs reads CIDR lists as the other lists are read: items separated
// by commas or spaces.
func parseCIDRs(values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		for _, it := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			p, err := policy.ParseCIDR(it)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return policy.SortPrefixes(out), nil
}

func parseNetNS(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, it := range strings.Fields(v) {
			n, err := policy.ParseNetNSMatch(it)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
