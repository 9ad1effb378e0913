package top

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/config"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// PolicyFlags are run's flags that set the sweep policy (top takes them
// too), without their dashes: the thresholds, then the filters.
var PolicyFlags = []string{
	"close-wait-timeout", "fin-wait-timeout", "time-wait-timeout", "closing-timeout", "last-ack-timeout",
	"exclude-ports", "include-ports", "exclude-processes", "exclude-cgroups", "include-cgroups",
}

// Overlay sets on p the policy flags given (by name, without dashes; each
// with its values in order, as given), read as run reads them: a
// threshold's last value wins, a list's values add up. A flag given
// overrides what p had (the config file's key). The error names the flag.
func Overlay(p *policy.Policy, given map[string][]string) error {
	for _, t := range config.Timeouts {
		name := config.Flag(t.Key)
		vs := given[name]
		if len(vs) == 0 {
			continue
		}
		d, err := policy.ParseDuration(vs[len(vs)-1])
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		for _, st := range t.States {
			if err := p.Thresholds.Set(st, d); err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
		}
	}
	ports := func(name string, dst *[]uint16) error {
		if vs, ok := given[name]; ok {
			var err error
			if *dst, err = policy.ParsePorts(vs); err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
		}
		return nil
	}
	names := func(name string, dst *[]string, parse func([]string) ([]string, error)) error {
		if vs, ok := given[name]; ok {
			var err error
			if *dst, err = parse(vs); err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
		}
		return nil
	}
	for _, err := range []error{
		ports("exclude-ports", &p.ExcludePorts),
		ports("include-ports", &p.IncludePorts),
		names("exclude-processes", &p.ExcludeProcesses, policy.ParseNames),
		names("exclude-cgroups", &p.ExcludeCgroups, policy.ParseCgroupGlobs),
		names("include-cgroups", &p.IncludeCgroups, policy.ParseCgroupGlobs),
	} {
		if err != nil {
			return err
		}
	}
	return p.Validate()
}

// serviceArgs are what a service's command line says of its policy.
type serviceArgs struct {
	given  map[string][]string // PolicyFlags given
	config string              // --config, as given
	mode   string              // "live", "dry-run" by a flag; "" when neither
}

// parseServiceArgs reads args (a command line, program name first) the
// way run's flags would for what top needs: --config, --live/-l,
// --dry-run/-n and the policy flags, as --name=value or --name value.
// Other flags are skipped; "--" ends the flags.
func parseServiceArgs(args []string) serviceArgs {
	known := map[string]bool{"config": true}
	for _, f := range PolicyFlags {
		known[f] = true
	}
	sa := serviceArgs{given: map[string][]string{}}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return sa
		case a == "--live" || a == "-l" || a == "--live=true":
			sa.mode = "live"
			continue
		case a == "--dry-run" || a == "-n" || a == "--dry-run=true":
			sa.mode = "dry-run"
			continue
		case !strings.HasPrefix(a, "--"):
			continue
		}
		name, val, eq := strings.Cut(a[2:], "=")
		if !known[name] {
			continue
		}
		if !eq {
			if i+1 >= len(args) {
				continue
			}
			i++
			val = args[i]
		}
		if name == "config" {
			sa.config = val
		} else {
			sa.given[name] = append(sa.given[name], val)
		}
	}
	return sa
}

// servicePolicy is the policy a service runs with, as top learnt it.
type servicePolicy struct {
	pid     int
	cmdline string
	file    string    // the --config file, as the service names it (absolute)
	stamp   time.Time // its mtime when read
	size    int64

	pol      policy.Policy
	from     string // for the header: "service's /etc/hck-bpf/config.yaml"
	mode     string // "live", "dry-run", "" unknown
	warnings []string
}

// followService is the policy of the service pid: its policy flags over
// its --config file (read through /proc/PID/root, a relative path from
// its working directory), as it reads them; the defaults and a warning
// when the file cannot be read. It reads the file again when it changed
// (a reload), and the command line every time (a cheap read).
func (s *Source) followService(pid int) *servicePolicy {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return &servicePolicy{pid: pid, pol: policy.Default(), from: "defaults",
			warnings: []string{fmt.Sprintf("read the service's command line (pid %d): %v: countdowns follow the defaults", pid, err)}}
	}
	cmdline := string(raw)
	sa := parseServiceArgs(strings.Split(strings.TrimRight(cmdline, "\x00"), "\x00"))
	file, at := sa.config, ""
	if file != "" && !filepath.IsAbs(file) {
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
			file = filepath.Join(cwd, file)
		}
	}
	if file != "" {
		at = fmt.Sprintf("/proc/%d/root%s", pid, file)
	}
	var stamp time.Time
	var size int64
	if at != "" {
		if fi, err := os.Stat(at); err == nil {
			stamp, size = fi.ModTime(), fi.Size()
		}
	}
	if c := s.svc; c != nil && c.pid == pid && c.cmdline == cmdline && c.stamp.Equal(stamp) && c.size == size {
		return c
	}

	sp := &servicePolicy{pid: pid, cmdline: cmdline, file: file, stamp: stamp, size: size, pol: policy.Default(), mode: sa.mode}
	switch {
	case file == "" && len(sa.given) == 0:
		sp.from = "service's defaults"
	case file == "":
		sp.from = "service's flags"
	default:
		sp.from = "service's " + file
		if len(sa.given) > 0 {
			sp.from += " + flags"
		}
		data, err := os.ReadFile(at)
		var cfg *config.Config
		if err == nil {
			cfg, err = config.Parse(file, data, config.Checks{})
		} else {
			err = fmt.Errorf("read config %s: %w", file, err)
		}
		if err != nil {
			sp.warnings = append(sp.warnings, fmt.Sprintf("the service's configuration: %v: countdowns follow the defaults", err))
			sp.from = "defaults"
			if len(sa.given) > 0 {
				sp.from = "service's flags"
			}
			break
		}
		sp.pol = cfg.Settings.Policy()
		if sp.mode == "" {
			sp.mode = "dry-run"
			if cfg.Settings.Live {
				sp.mode = "live"
			}
		}
	}
	if file == "" && sp.mode == "" {
		sp.mode = "dry-run"
	}
	if err := Overlay(&sp.pol, sa.given); err != nil {
		sp.warnings = append(sp.warnings, fmt.Sprintf("the service's flags: %v: countdowns follow the defaults", err))
		sp.pol, sp.from = policy.Default(), "defaults"
	}
	s.svc = sp
	return sp
}
