package main

import (
	"io"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/logging"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// globals are the flags every command has.
type globals struct {
	pinDir    string
	logFile   string
	logFormat string
	verbose   bool
	stdout    io.Writer
	stderr    io.Writer
}

func (g *globals) logger() (zerolog.Logger, *logging.Output, error) {
	log, out, err := logging.New(g.stdout, logging.Options{Format: g.logFormat, File: g.logFile, Verbose: g.verbose,
		Buffered: true, Journal: logging.OnJournal(g.stdout)})
	if err != nil {
		return log, out, usageError{err}
	}
	return log, out, nil
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "hck-bpf",
		Short: "Find TCP connections stuck in closing states and destroy them in the kernel",
		Long: `hck-bpf records, in the kernel, the exact time every TCP socket enters
CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK or TIME_WAIT, and destroys
the ones that overstay their threshold with netlink SOCK_DESTROY carrying the
socket cookie: that socket, or nothing. The process that owns it lives on.

"hck-bpf --dry-run ..." and "hck-bpf --live ..." run "scan", the
hung_connection_killer command line.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(flagError)
	pf := root.PersistentFlags()
	pf.StringVar(&g.pinDir, "pin-dir", tracking.DefaultPinDir, "bpffs directory holding the tracker's pinned maps and link")
	pf.Var(pathValue{&g.logFile}, "log-file", "also append logs to this file (created 0600; a symlink, a file that is not regular or another user's is refused)")
	pf.Var(newChoice(&g.logFormat, logging.Text, logging.Text, logging.JSON), "log-format", "log format: text or json")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "verbose/debug output (skipped connections and why)")
	root.AddCommand(newScan(g), newRun(g), newList(g), newKill(g), newUnload(g), newDoctor(g),
		newInstall(g), newUninstall(g), newTop(g))
	return root
}

// checkPinDir refuses a --pin-dir that cannot hold pins (empty, not on a
// bpf filesystem) with exit 2, before anything is created.
func (g *globals) checkPinDir() error {
	return tracking.CheckPinDir(g.pinDir) // a *tracking.ConfigError exits 2
}

// openTracker opens (or attaches) the pinned tracker, watching the network
// namespaces of scope and walking each from inside it. mapSize is 0
// unless --map-size was given: a pinned map keeps its size. own makes this
// the pin dir's one service (run).
func (g *globals) openTracker(mapSize uint32, own bool, scope *scope.Scope) (*tracking.Tracker, error) {
	return tracking.Open(tracking.Options{PinDir: g.pinDir, MapSize: mapSize, Watch: scope.Inodes(), Own: own, Enter: scope.Do})
}

var version = "dev"
