package main

import (
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/hck-bpf/hck-bpf/internal/config"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/logging"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/procs"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// sweepFlags are the scripts' flags, shared by scan and run.
type sweepFlags struct {
	dryRun, live bool
	timeouts     map[string]*string
	excludePorts []string
	includePorts []string
	excludeProcs []string
	excludeCgrps []string
	includeCgrps []string
	maxKills     int
	killProcess  bool
	killGraceArg string
	killGrace    time.Duration // --kill-grace, parsed by policy()
	mapSize      uint32
	mapSizeSet   bool // --map-size given: it must match a pinned map's
	killGraceSet bool // --kill-grace given
	scope        scopeFlags
	// --config: the file under the flags (loadConfig).
	configPath string
	cfg        *config.Config    // the file read; nil without --config
	rules      []policy.Rule     // the file's rules
	changed    func(string) bool // whether a flag was given
	base       *sweepFlags       // the flags as given, before the file
	baseG      *globals          // the global flags as given
}

// maxKillGrace bounds --kill-grace: a sweep (the service's too) waits
// for the processes it signalled, up to the grace period.
const maxKillGrace = config.MaxKillGrace

// processes is what a sweep does with the owners of the sockets it could
// not destroy: nothing without --kill-process (nil), otherwise signal them
// (audit, when set, wraps it for the service's log).
func (f *sweepFlags) processes(audit func(sweep.Processes) sweep.Processes) sweep.Processes {
	if !f.killProcess {
		return nil
	}
	var p sweep.Processes = procs.Sweep{Grace: f.killGrace}
	if audit != nil {
		p = audit(p)
	}
	return p
}

// openSize is the map size to open the tracker with: 0 (the pinned map's
// size, or the default) unless --map-size was given.
func (f *sweepFlags) openSize() uint32 {
	if !f.mapSizeSet {
		return 0
	}
	return f.mapSize
}

// timeoutFlags maps each threshold flag to the states it sets, in help order.
var timeoutFlags = []struct {
	name, def, help string
	states          []conn.State
}{
	{"close-wait-timeout", "60", "seconds before CLOSE_WAIT is considered hung", []conn.State{conn.CloseWait}},
	{"fin-wait-timeout", "120", "seconds before FIN_WAIT1/FIN_WAIT2 are considered hung", []conn.State{conn.FinWait1, conn.FinWait2}},
	{"time-wait-timeout", "120", "seconds before TIME_WAIT is considered hung", []conn.State{conn.TimeWait}},
	{"closing-timeout", "60", "seconds before CLOSING is considered hung", []conn.State{conn.Closing}},
	{"last-ack-timeout", "60", "seconds before LAST_ACK is considered hung", []conn.State{conn.LastAck}},
}

func (f *sweepFlags) register(fs *pflag.FlagSet) {
	fs.BoolVarP(&f.dryRun, "dry-run", "n", false, "show what would be done without destroying anything (safe)")
	fs.BoolVarP(&f.live, "live", "l", false, "destroy hung connections (requires root)")
	f.timeouts = map[string]*string{}
	for _, t := range timeoutFlags {
		f.timeouts[t.name] = fs.String(t.name, t.def, t.help+" (seconds, 1.5, or 90s, 1m30s)")
	}
	fs.StringArrayVar(&f.excludePorts, "exclude-ports", []string{"22"}, "ports never destroyed, local or remote: 22 3306, \"22 3306\" or 22,3306")
	fs.StringArrayVar(&f.includePorts, "include-ports", nil, "only connections on these ports, local or remote (default all)")
	fs.StringArrayVar(&f.excludeProcs, "exclude-processes", nil, "process names (comm) never touched, on top of the protected ones: nginx postgres, \"nginx postgres\" or nginx,postgres;\na name with a space or comma in quotes inside the value: \"'my proc' nginx\"")
	fs.StringArrayVar(&f.excludeCgrps, "exclude-cgroups", nil, "never destroy a connection whose owner's cgroup, or a cgroup above it, matches one of these globs\n(path.Match against the whole path: /system.slice/docker-*.scope, /kubepods.slice); lists as --exclude-processes")
	fs.StringArrayVar(&f.includeCgrps, "include-cgroups", nil, "only connections whose owners' cgroups match one of these globs (as --exclude-cgroups);\na connection with no known owner (orphan, TIME_WAIT) is then never destroyed")
	fs.BoolVar(&f.killProcess, "kill-process", false, "when a destroy fails (not 'already gone'), send the socket's owners SIGTERM, then SIGKILL after --kill-grace\n(never a protected or excluded process, never hck-bpf itself; through a pidfd: a reused pid is never hit)")
	fs.StringVar(&f.killGraceArg, "kill-grace", "5", "with --kill-process: how long a process has to exit after SIGTERM before SIGKILL (seconds, 1.5, or 5s, 500ms)")
	fs.IntVar(&f.maxKills, "max-kills", 0, "destroy at most this many sockets per sweep; the rest wait (0: no cap)")
	fs.Uint32Var(&f.mapSize, "map-size", tracking.DefaultMapSize, "sockets the kernel tracker can hold when this attaches it (a pinned map keeps its size); more are counted as overflow")
	f.scope.register(fs)
	fs.StringVar(&f.configPath, "config", "", "read settings and rules from this YAML file (see 'Configuration' in the README); flags given override it")
}

// policy validates every flag into a policy, before anything is loaded.
func (f *sweepFlags) policy() (*policy.Policy, error) {
	p := policy.Default()
	for _, t := range timeoutFlags {
		d, err := policy.ParseDuration(*f.timeouts[t.name])
		if err != nil {
			return nil, usagef("--%s: %v", t.name, err)
		}
		for _, s := range t.states {
			if err := p.Thresholds.Set(s, d); err != nil {
				return nil, usagef("--%s: %v", t.name, err)
			}
		}
	}
	var err error
	if p.ExcludePorts, err = policy.ParsePorts(f.excludePorts); err != nil {
		return nil, usagef("--exclude-ports: %v", err)
	}
	if p.IncludePorts, err = policy.ParsePorts(f.includePorts); err != nil {
		return nil, usagef("--include-ports: %v", err)
	}
	if p.ExcludeProcesses, err = policy.ParseNames(f.excludeProcs); err != nil {
		return nil, usagef("--exclude-processes: %v", err)
	}
	if p.ExcludeCgroups, err = policy.ParseCgroupGlobs(f.excludeCgrps); err != nil {
		return nil, usagef("--exclude-cgroups: %v", err)
	}
	if p.IncludeCgroups, err = policy.ParseCgroupGlobs(f.includeCgrps); err != nil {
		return nil, usagef("--include-cgroups: %v", err)
	}
	if f.killGrace, err = policy.ParseDuration(f.killGraceArg); err != nil {
		return nil, usagef("--kill-grace: %v", err)
	}
	if f.killGrace > maxKillGrace {
		return nil, usagef("--kill-grace: %s is longer than %s: the sweep waits for it", f.killGrace, maxKillGrace)
	}
	if f.killGraceSet && !f.killProcess {
		return nil, usagef("--kill-grace: only with --kill-process")
	}
	if f.maxKills < 0 {
		return nil, usagef("--max-kills: %d is negative", f.maxKills)
	}
	if f.mapSize == 0 {
		return nil, usagef("--map-size: must be at least 1")
	}
	p.Rules = f.rules
	if err := p.Validate(); err != nil {
		return nil, usageError{err}
	}
	return &p, nil
}

// prepared is what prepare checked and opened.
type prepared struct {
	pol   *policy.Policy
	log   zerolog.Logger
	out   *logging.Output
	scope *scope.Scope // the caller closes it
}

// prepare validates the flags and opens the namespaces they name, then
// opens the log and warns about settings that are valid but probably not
// meant: all before anything is loaded.
func (g *globals) prepare(f *sweepFlags) (prepared, error) {
	var p prepared
	var err error
	if p.pol, err = f.policy(); err != nil {
		return p, err
	}
	if err := g.checkPinDir(); err != nil {
		return p, err
	}
	if p.scope, err = f.scope.open(); err != nil {
		return p, err
	}
	if p.log, p.out, err = g.logger(); err != nil {
		p.scope.Close()
		return p, err
	}
	for _, w := range p.pol.Warnings() {
		p.log.Warn().Msg(w)
	}
	return p, nil
}
