package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func newUnload(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "unload [--force]",
		Short: "Detach the tracker and remove hck-bpf's pins from --pin-dir",
		Long: `unload detaches the tracker and removes what hck-bpf pinned under --pin-dir:
only its own pin names (hck_set_state_link, its maps, its iterators), and
only pinned BPF objects on a bpf filesystem. Anything else in the directory
is left and listed; the directory is removed when nothing is left in it.

A service ('hck-bpf run') running on the pin dir makes unload refuse;
--force stops it first (SIGTERM, then waits for it to exit).

Exit status: 0 unloaded; 1 nothing to unload (the directory does not exist
or holds no hck-bpf pin), a service runs on it, or a pin could not be
removed; 2 --pin-dir is not on a bpf filesystem (nothing is touched).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return unload(g, force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "stop the service running on the pin dir first (SIGTERM), then unload")
	return cmd
}

func unload(g *globals, force bool) error {
	rep, err := tracking.UnloadPins(g.pinDir, tracking.UnloadOptions{Force: force})
	if rep.Stopped != 0 {
		fmt.Fprintf(g.stdout, "stopped the service, pid %d\n", rep.Stopped)
	}
	var busy *tracking.BusyError
	if errors.As(err, &busy) {
		return fmt.Errorf("refuse to unload: %w, a running service: stop it first, or use 'hck-bpf unload --force'", err)
	}
	if len(rep.Removed) > 0 {
		fmt.Fprintf(g.stdout, "unloaded %s\n", g.pinDir)
	}
	for _, l := range rep.Left {
		fmt.Fprintf(g.stdout, "left %s: %s\n", filepath.Join(g.pinDir, l.Name), l.Why)
	}
	if len(rep.Removed) > 0 && !rep.DirRemoved && err == nil {
		why := "not empty"
		if len(rep.Left) == 0 {
			why = "a mount point"
		}
		fmt.Fprintf(g.stdout, "kept %s: %s\n", g.pinDir, why)
	}
	return err
}
