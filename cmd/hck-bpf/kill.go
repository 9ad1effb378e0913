package main

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/kill"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/procs"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// killFlags are kill's flags, as given.
type killFlags struct {
	dryRun, live bool
	force        bool
	peers        []string
	ports        []string
	localPorts   []string
	remotePorts  []string
	states       []string
	processes    []string
	scope        scopeFlags
	killProcess  bool
	killGraceArg string
	killGrace    time.Duration
}

func newKill(g *globals) *cobra.Command {
	f := &killFlags{}
	cmd := &cobra.Command{
		Use:   "kill FILTER... (-n|--dry-run | -l|--live) [--force]",
		Short: "Destroy connections now, in any state: by peer, port, state, process, namespace",
		Long: `kill destroys the TCP connections a filter picks, in any state, ESTABLISHED
included, each by its socket cookie. At least one connection filter is
needed: --peer, --port, --local-port, --remote-port, --state or --process
(all given must match; several values of one flag are alternatives).
Without --state every state but LISTEN is picked.

Connections on port 22 (either end), held by a protected process (sshd,
systemd, init, kthreadd, containerd, dockerd, kubelet, k3s), or whose owner
cannot be found, are refused and listed; --force destroys them too.`,
		Example: `  hck-bpf kill --peer 203.0.113.7 --dry-run
  hck-bpf kill --peer 10.0.0.0/8 --remote-port 5432 --live
  hck-bpf kill --peer fd00::/8 --state established --live
  hck-bpf kill --process nginx --state close-wait --live
  hck-bpf kill --netns cni-1234 --port 8080 --live
  hck-bpf kill --all-netns --peer 198.51.100.9 --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.dryRun == f.live {
				return usagef("choose one mode: -n/--dry-run or -l/--live")
			}
			if cmd.Flags().Changed("kill-grace") && !f.killProcess {
				return usagef("--kill-grace: only with --kill-process")
			}
			return killCmd(g, f)
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&f.dryRun, "dry-run", "n", false, "show what would be destroyed, destroy nothing (safe)")
	fs.BoolVarP(&f.live, "live", "l", false, "destroy the connections")
	fs.BoolVar(&f.force, "force", false, "also destroy connections on port 22, of protected processes, or whose owner is unknown")
	fs.StringArrayVar(&f.peers, "peer", nil, "remote address or CIDR prefix, IPv4 or IPv6 (10.0.0.5, 10.0.0.0/8, fd00::/8); repeat or comma-separate")
	fs.StringArrayVar(&f.ports, "port", nil, "local or remote port")
	fs.StringArrayVar(&f.localPorts, "local-port", nil, "local port")
	fs.StringArrayVar(&f.remotePorts, "remote-port", nil, "remote port")
	fs.StringArrayVar(&f.states, "state", nil, "TCP state (established, close-wait, time-wait, listen, ...; default every state but listen)")
	fs.StringArrayVar(&f.processes, "process", nil, "name (comm) of a process holding the socket")
	f.scope.register(fs)
	fs.BoolVar(&f.killProcess, "kill-process", false, "when a connection's destroy fails (not gone), send its owners SIGTERM, then SIGKILL after --kill-grace; never a protected process")
	fs.StringVar(&f.killGraceArg, "kill-grace", "5", "with --kill-process: how long a process has to exit after SIGTERM (seconds, or 2s, 500ms; at most 5m)")
	return cmd
}

// filter validates the filter flags, before anything is opened.
func (f *killFlags) filter() (kill.Filter, error) {
	var kf kill.Filter
	var err error
	if kf.Peers, err = kill.ParsePeers(f.peers); err != nil {
		return kf, usagef("--peer: %v", err)
	}
	for _, p := range []struct {
		name string
		in   []string
		out  *[]uint16
	}{{"port", f.ports, &kf.Ports}, {"local-port", f.localPorts, &kf.LocalPorts}, {"remote-port", f.remotePorts, &kf.RemotePorts}} {
		if *p.out, err = policy.ParsePorts(p.in); err != nil {
			return kf, usagef("--%s: %v", p.name, err)
		}
		if len(p.in) > 0 && len(*p.out) == 0 {
			return kf, usagef("--%s: no port given", p.name)
		}
	}
	if kf.States, err = kill.ParseStates(f.states); err != nil {
		return kf, usagef("--state: %v", err)
	}
	if kf.Processes, err = policy.ParseNames(f.processes); err != nil {
		return kf, usagef("--process: %v", err)
	}
	if len(f.processes) > 0 && len(kf.Processes) == 0 {
		return kf, usagef("--process: no name given")
	}
	if d, err := policy.ParseDuration(f.killGraceArg); err != nil {
		return kf, usagef("--kill-grace: %v", err)
	} else if d > maxKillGrace {
		return kf, usagef("--kill-grace: %s is more than %s", d, maxKillGrace)
	} else {
		f.killGrace = d
	}
	if !kf.HasConnFilter() {
		return kf, usagef("kill needs a connection filter: --peer, --port, --local-port, --remote-port, --state or --process (--netns and --all-netns only say where)")
	}
	return kf, nil
}

func killCmd(g *globals, f *killFlags) (err error) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(scanGCPercent)
	}
	filter, err := f.filter()
	if err != nil {
		return err
	}
	sc, err := g.openScope(&f.scope)
	if err != nil {
		return err
	}
	defer sc.Close()
	targets := kill.Targets(sc)
	defer kill.Close(targets)
	log, out, err := g.logger()
	if err != nil {
		return err
	}
	defer g.closeLog(out, &err)
	if err := tracking.EnsurePinDir(g.pinDir); err != nil {
		return err
	}
	report.KillHeader(log, f.dryRun, filter.String(), len(targets))
	var procsOpt sweep.Processes
	if f.killProcess {
		procsOpt = procs.Sweep{Grace: f.killGrace}
	}
	rep, err := kill.Run(targets, kill.Options{Filter: filter, DryRun: f.dryRun, Force: f.force,
		PinDir: g.pinDir, Kernel: kernelRules(log), Processes: procsOpt})
	if err != nil {
		return err
	}
	report.KillItems(log, &rep)
	report.KillSummary(log, &rep, f.dryRun, len(targets), out.LostLines())
	if rep.Failed > 0 || len(rep.NSErrors) > 0 || rep.OwnerErr != nil {
		return errFailed
	}
	return nil
}
