package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/doctor"
)

func newDoctor(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor [--json]",
		Short: "Check that this machine can run hck-bpf (kernel, BTF, capabilities, BPF, SOCK_DESTROY)",
		Long: `doctor checks the kernel version rules, BTF, capabilities and bpffs, loads
each kind of BPF program hck-bpf uses (with private, unpinned maps; detached
at once), and destroys a CLOSE_WAIT and a TIME_WAIT socket it makes in a
private network namespace. With --pin-dir it checks the pin dir too: on a
bpf filesystem, and whatever is pinned as hck_set_state_link is this pin
dir's tracker; it names the service running on it. It changes nothing: no
mount, no pin, and no socket of this network namespace is touched.

Exit status: 0 when no check failed (warnings included), 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDoctor(g, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as one JSON array")
	return cmd
}

var statusMark = map[doctor.Status]string{doctor.OK: "[ok]", doctor.Warn: "[warn]", doctor.Fail: "[FAIL]"}

func runDoctor(g *globals, asJSON bool) error {
	if g.pinDir == "" {
		return g.checkPinDir() // exit 2; any other pin dir is reported on
	}
	checks := doctor.Run(doctor.Options{PinDir: g.pinDir})
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(checks); err != nil {
			return fmt.Errorf("write checks: %w", err)
		}
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		for _, c := range checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", statusMark[c.Status], c.Name, c.Detail)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write checks: %w", err)
		}
	}
	if n := doctor.Failed(checks); n > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", n, len(checks))
	}
	return nil
}
