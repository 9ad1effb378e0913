package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hck-bpf/hck-bpf/internal/config"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/top"
	"github.com/hck-bpf/hck-bpf/internal/top/ui"
)

// topFlags are top's flags, as given.
type topFlags struct {
	interval   string
	maxRows    int
	sort       string
	filter     string
	synAlarm   int
	allowKill  bool
	once, json bool
	configPath string
	from       string // what the countdowns follow (policy)
	follow     bool   // a running service's policy
	scope      scopeFlags
}

func newTop(g *globals) *cobra.Command {
	f := &topFlags{}
	cmd := &cobra.Command{
		Use:   "top [--interval D] [--sort COLUMN[,desc]] [--filter TEXT] [--allow-kill] [--once] [--json]",
		Short: "A live view of the TCP states, peers, SYN_RECV pressure, hung candidates and the latest kills",
		Long: `top shows, refreshed every --interval, the sockets per TCP state and the
transitions per second, the top remote peers, SYN_RECV pressure, the tracked
sockets in closing states with the time left before they are hung (or why
they never will be), and the service's latest kills. It reads the pinned maps:
it works with or without the service running.

Keys: ↑/↓ j/k move, Enter details, s/S sort column/order, / filter, space
pause, +/- interval, K destroy the selected connection (--allow-kill only),
? help, q quit. Without a terminal, or with --once or --json, it prints plain
tables, or one JSON document per line, every interval (once with --once).`,
		Example: `  hck-bpf top
  hck-bpf top --all-netns --sort age,desc --filter 10.0.0.
  hck-bpf top --once --json | jq .states`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return topCmd(g, f, cmd.Flags()) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.interval, "interval", "1s", "refresh interval (250ms to 60s; seconds, or 500ms, 2s)")
	fs.IntVar(&f.maxRows, "max-rows", 0, "at most this many candidates (and rows of each plain table); 0: as many as fit")
	fs.StringVar(&f.sort, "sort", "left", "candidates' order: COLUMN[,desc], COLUMN one of state, local, remote, owner, netns, age, left")
	fs.StringVar(&f.filter, "filter", "", "only candidates whose state, addresses, owner or namespace contain this text (any case)")
	fs.IntVar(&f.synAlarm, "syn-alarm", 0, "alarm when this many connections are half-open (SYN_RECV); 0: never")
	fs.BoolVar(&f.allowKill, "allow-kill", false, "let K destroy the selected connection (asks y/N; cookie-exact, as kill)")
	fs.BoolVar(&f.once, "once", false, "print one snapshot and exit")
	fs.BoolVar(&f.json, "json", false, "one JSON document per interval (JSON lines)")
	for _, t := range timeoutFlags {
		fs.String(t.name, t.def, t.help+", for the countdowns (seconds, or 90s)")
	}
	fs.StringArray("exclude-ports", []string{"22"}, "ports shown as excluded, local or remote (as run's)")
	fs.StringArray("include-ports", nil, "only these ports are candidates to destroy, local or remote (as run's; default all)")
	fs.StringArray("exclude-processes", nil, "process names (comm) shown as excluded (as run's)")
	fs.StringArray("exclude-cgroups", nil, "cgroup globs shown as excluded (as run's)")
	fs.StringArray("include-cgroups", nil, "only owners in these cgroup globs are candidates to destroy (as run's)")
	fs.StringVar(&f.configPath, "config", "", "countdowns by this YAML file's thresholds and rules, as run --config (flags given override it);\n"+
		"without it and without a threshold or filter flag, a running service's own --config and flags")
	f.scope.register(fs)
	return cmd
}

// check validates every flag, before anything is opened.
func (f *topFlags) check(fs *pflag.FlagSet) (time.Duration, ui.Sort, *policy.Policy, error) {
	d, err := policy.ParseDuration(f.interval)
	if err != nil {
		return 0, ui.Sort{}, nil, usagef("--interval: %v", err)
	}
	if d < ui.MinInterval || d > ui.MaxInterval {
		return 0, ui.Sort{}, nil, usagef("--interval: %s is outside %s..%s", d, ui.MinInterval, ui.MaxInterval)
	}
	if f.maxRows < 0 {
		return 0, ui.Sort{}, nil, usagef("--max-rows: %d is negative", f.maxRows)
	}
	if f.synAlarm < 0 {
		return 0, ui.Sort{}, nil, usagef("--syn-alarm: %d is negative", f.synAlarm)
	}
	s, err := ui.ParseSort(f.sort)
	if err != nil {
		return 0, ui.Sort{}, nil, usagef("--sort: %v", err)
	}
	if f.scope.all && len(f.scope.netns) > 0 {
		return 0, ui.Sort{}, nil, usagef("--all-netns and --netns: choose one")
	}
	if f.allowKill && (f.once || f.json) {
		return 0, ui.Sort{}, nil, usagef("--allow-kill: only for the full-screen view, not with --once or --json")
	}
	p, from, follow, err := f.policy(fs)
	if err != nil {
		return 0, ui.Sort{}, nil, err
	}
	f.from, f.follow = from, follow
	return d, s, p, nil
}

// policy is what the countdowns follow: --config's file (loaded as run
// loads it: a bad file is a usage error naming file:line) under the
// policy flags given; follow when neither was given (a running service's
// policy, then). from says which, for the header.
func (f *topFlags) policy(fs *pflag.FlagSet) (p *policy.Policy, from string, follow bool, err error) {
	given := map[string][]string{}
	fs.Visit(func(fl *pflag.Flag) {
		if !slices.Contains(top.PolicyFlags, fl.Name) {
			return
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			given[fl.Name] = sv.GetSlice()
		} else {
			given[fl.Name] = []string{fl.Value.String()}
		}
	})
	pol := policy.Default()
	switch {
	case f.configPath != "":
		cfg, err := config.Load(f.configPath, configChecks)
		if err != nil {
			return nil, "", false, usageError{err}
		}
		pol, from = cfg.Settings.Policy(), f.configPath
		if len(given) > 0 {
			from += " + flags"
		}
	case len(given) > 0:
		from = "flags"
	default:
		from, follow = "defaults", true
	}
	if err := top.Overlay(&pol, given); err != nil {
		return nil, "", false, usageError{err}
	}
	return &pol, from, follow, nil
}

func topCmd(g *globals, f *topFlags, fs *pflag.FlagSet) error {
	interval, order, pol, err := f.check(fs)
	if err != nil {
		return err
	}
	sc, err := g.openScope(&f.scope)
	if err != nil {
		return err
	}
	defer sc.Close()
	src, err := top.Open(top.Options{PinDir: g.pinDir, Policy: pol, PolicyFrom: f.from, FollowService: f.follow, Scope: sc, SynAlarm: f.synAlarm, MaxPeers: 10})
	if err != nil {
		return err
	}
	defer src.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out, tty := g.stdout.(*os.File)
	tty = tty && term.IsTerminal(out.Fd())
	if !tty || f.once || f.json {
		return topPlain(ctx, g, f, src, interval)
	}
	host, _ := os.Hostname()
	noColor := os.Getenv("NO_COLOR") != ""
	m := ui.New(ui.Options{Source: src.Snapshot, Interval: interval, MaxRows: f.maxRows, Sort: order, Filter: f.filter,
		AllowKill: f.allowKill, Kill: ui.Destroyer(sc), Host: host, Scope: scopeText(sc), SynAlarm: f.synAlarm, NoColor: noColor})
	opts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithOutput(out)}
	if noColor {
		opts = append(opts, tea.WithColorProfile(colorprofile.Ascii))
	}
	_, err = tea.NewProgram(m, opts...).Run()
	if err != nil && (errors.Is(err, tea.ErrProgramPanic) || !errors.Is(err, tea.ErrProgramKilled) && !errors.Is(err, tea.ErrInterrupted)) {
		return err
	}
	return nil
}

// topPlain prints a snapshot every interval (one with --once): plain
// tables, or JSON lines with --json; until interrupted.
func topPlain(ctx context.Context, g *globals, f *topFlags, src *top.Source, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s, err := src.Snapshot()
		if err != nil {
			return err
		}
		if f.json {
			err = top.WriteJSON(g.stdout, s)
		} else {
			err = top.WriteTable(g.stdout, s, f.maxRows)
		}
		if err != nil || f.once {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
