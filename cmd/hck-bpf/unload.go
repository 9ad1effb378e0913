package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func newUnload(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unload",
		Short: "Detach the tracker and remove everything pinned under --pin-dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := tracking.Unload(g.pinDir); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "unloaded %s\n", g.pinDir)
			return nil
		},
	}
}
