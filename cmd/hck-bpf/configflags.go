package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/hck-bpf/hck-bpf/internal/config"
	"github.com/hck-bpf/hck-bpf/internal/daemon"
	"github.com/hck-bpf/hck-bpf/internal/metrics"
	"github.com/hck-bpf/hck-bpf/internal/notify"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// configChecks check the values the config file carries for other
// packages (metrics_addr, webhooks); nil accepts any. The metrics and
// notification parsers are wired in here.
var configChecks = config.Checks{
	Webhook:     func(s string) error { _, err := notify.Parse(s); return err },
	MetricsAddr: func(s string) error { _, err := metrics.ParseAddr(s); return err },
}

// loadConfig reads --config, when given, and lays the file under the
// flags: a key applies unless its flag was given (changed). A bad file is
// a usage error naming file:line, before anything is loaded. f.base keeps
// the flags as given, for a reload.
func (f *sweepFlags) loadConfig(g *globals, fs *pflag.FlagSet) error {
	f.changed = fs.Changed
	baseG := *g
	f.baseG = &baseG
	f.base = f.clone()
	if f.configPath == "" {
		return nil
	}
	cfg, err := config.Load(f.configPath, configChecks)
	if err != nil {
		return usageError{err}
	}
	f.overlay(g, cfg)
	return nil
}

// clone copies f deeply enough that overlaying a config on the copy
// leaves f alone.
func (f *sweepFlags) clone() *sweepFlags {
	c := *f
	c.timeouts = map[string]*string{}
	for k, v := range f.timeouts {
		s := *v
		c.timeouts[k] = &s
	}
	return &c
}

// overlay sets, from cfg, every flag the command line did not give.
func (f *sweepFlags) overlay(g *globals, cfg *config.Config) {
	f.cfg = cfg
	s := &cfg.Settings
	use := func(key string) bool {
		if !cfg.Set(key) {
			return false
		}
		switch key {
		case "mode":
			return !f.changed("live") && !f.changed("dry-run")
		case "netns", "all_netns":
			return !f.changed("netns") && !f.changed("all-netns")
		}
		return !f.changed(config.Flag(key))
	}
	for _, t := range config.Timeouts {
		if use(t.Key) {
			d, _ := s.Thresholds.For(t.States[0])
			*f.timeouts[config.Flag(t.Key)] = d.String()
		}
	}
	list := func(key string, dst *[]string, v string) {
		if use(key) {
			*dst = []string{v}
		}
	}
	list("exclude_ports", &f.excludePorts, portList(s.ExcludePorts))
	list("include_ports", &f.includePorts, portList(s.IncludePorts))
	list("exclude_processes", &f.excludeProcs, policy.FormatNames(s.ExcludeProcesses))
	list("exclude_cgroups", &f.excludeCgrps, policy.FormatNames(s.ExcludeCgroups))
	list("include_cgroups", &f.includeCgrps, policy.FormatNames(s.IncludeCgroups))
	if use("max_kills") {
		f.maxKills = s.MaxKills
	}
	if use("kill_process") {
		f.killProcess = s.KillProcess
	}
	if use("kill_grace") {
		f.killGraceArg = s.KillGrace.String()
	}
	if use("map_size") {
		f.mapSize, f.mapSizeSet = s.MapSize, true
	}
	if use("mode") {
		f.live, f.dryRun = s.Live, !s.Live
	}
	if use("netns") {
		f.scope.netns, f.scope.netnsFrom = s.NetNS, fmt.Sprintf("%s:%d: netns", cfg.Path, cfg.Lines["netns"])
	}
	if use("all_netns") {
		f.scope.all, f.scope.allFrom = s.AllNetNS, fmt.Sprintf("%s:%d: all_netns", cfg.Path, cfg.Lines["all_netns"])
	}
	if use("log_format") {
		g.logFormat = s.LogFormat
	}
	if use("log_file") {
		g.logFile = s.LogFile
	}
	if use("verbose") {
		g.verbose = s.Verbose
	}
	f.rules = s.Rules
}

func portList(ps []uint16) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Itoa(int(p))
	}
	return strings.Join(out, " ")
}

// settings are the values in effect (flags over the file), for the
// reload's diff; pol is f.policy()'s.
func (f *sweepFlags) settings(g *globals, pol *policy.Policy) config.Settings {
	s := config.Settings{
		Thresholds: pol.Thresholds, ExcludePorts: pol.ExcludePorts, IncludePorts: pol.IncludePorts,
		ExcludeProcesses: pol.ExcludeProcesses, ExcludeCgroups: pol.ExcludeCgroups, IncludeCgroups: pol.IncludeCgroups,
		MaxKills: f.maxKills, KillProcess: f.killProcess, KillGrace: f.killGrace, MapSize: f.mapSize, Live: f.live,
		NetNS: f.scope.netns, AllNetNS: f.scope.all, LogFormat: g.logFormat, LogFile: g.logFile, Verbose: g.verbose,
		Rules: pol.Rules,
	}
	if f.cfg != nil {
		s.MetricsAddr, s.Webhooks = f.cfg.Settings.MetricsAddr, f.cfg.Settings.Webhooks
	}
	return s
}

// reloader re-reads --config on SIGHUP for the service: a bad file keeps
// the running configuration and says why; a good one goes to the loop
// (daemon.Config.Reload) and the change is logged, key by key.
type reloader struct {
	f, base *sweepFlags
	log     zerolog.Logger
	cur     config.Settings
	opts    func(f *sweepFlags, pol *policy.Policy) sweep.Options
	out     chan daemon.Reload
}

// reload re-reads --config (SIGHUP): a bad file keeps the running
// configuration; a good one goes to the service loop, and what changed is
// logged.
func (r *reloader) reload(ctx context.Context) {
	path := r.f.configPath
	if path == "" {
		r.log.Warn().Msg("SIGHUP: nothing to reload, the service runs without --config")
		return
	}
	cfg, err := config.Load(path, configChecks)
	if err != nil {
		r.log.Error().Err(err).Str("config", path).Msg("Reload failed, keeping the running configuration: " + err.Error())
		return
	}
	nf, ng := r.base.clone(), *r.base.baseG
	nf.overlay(&ng, cfg)
	pol, err := nf.policy()
	if err != nil {
		r.log.Error().Err(err).Str("config", path).Msg("Reload failed, keeping the running configuration: " + err.Error())
		return
	}
	next := nf.settings(&ng, pol)
	diff := config.Diff(&r.cur, &next)
	applied := make(chan error, 1)
	select {
	case r.out <- daemon.Reload{Sweep: r.opts(nf, pol), Applied: applied}:
	case <-ctx.Done():
		return
	}
	if err := <-applied; err != nil {
		r.log.Error().Err(err).Str("config", path).Msg("Reload failed, keeping the running configuration: " + err.Error())
		return
	}
	r.cur = next
	if len(diff) == 0 {
		r.log.Info().Str("config", path).Msg("Config reloaded from " + path + ": no change")
		return
	}
	for _, l := range diff {
		r.log.Info().Str("config", path).Str("change", l).Msg("Config reloaded: " + l)
	}
	for _, w := range pol.Warnings() {
		r.log.Warn().Msg(w)
	}
}
