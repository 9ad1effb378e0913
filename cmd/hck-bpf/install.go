package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hck-bpf/hck-bpf/internal/config"
	"github.com/hck-bpf/hck-bpf/internal/systemd"
)

func newInstall(g *globals) *cobra.Command {
	var root, bin string
	var noEnable bool
	cmd := &cobra.Command{
		Use:   "install [--root DIR] [--no-enable] [--bin PATH]",
		Short: "Install hck-bpf as a systemd service (unit and config), enable and start it",
		Long: `install writes ` + systemd.UnitDir + "/" + systemd.UnitName + ` (the unit, 0644) and
` + systemd.ConfigPath + ` (the config, 0600, in a 0700 directory; an existing one
is never overwritten), then runs 'systemctl daemon-reload' and
'systemctl enable --now ` + systemd.UnitName + `'. The unit runs
'BIN run --config ` + systemd.ConfigPath + `': it starts as a dry run, logging what
it would destroy; set 'mode: live' in the config and restart it to destroy.

With --root DIR the files go under DIR (a package or an image being built) and
systemctl is not run; --no-enable writes the files and runs only daemon-reload.
--bin is the binary's absolute path in the installed system (default: this one).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInstall(g, root, bin, cmd.Flags().Changed("bin"), noEnable)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&root, "root", "", "install under this directory instead of / (no systemctl)")
	fs.StringVar(&bin, "bin", "", "absolute path of hck-bpf in the installed system (default: this binary)")
	fs.BoolVar(&noEnable, "no-enable", false, "write the files and reload systemd, but do not enable or start the service")
	return cmd
}

func runInstall(g *globals, root, bin string, binSet, noEnable bool) error {
	if binSet && bin == "" {
		return usagef("check --bin: empty path")
	}
	if !binSet {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary's path (give --bin): %w", err)
		}
		if bin, err = filepath.EvalSymlinks(self); err != nil {
			return fmt.Errorf("find this binary's path (give --bin): %w", err)
		}
	}
	if err := systemd.CheckRoot(root); err != nil {
		return usageError{err}
	}
	// Under --root the binary may be put in place later (a package).
	if err := systemd.CheckBin(bin, root == ""); err != nil {
		return usageError{err}
	}
	if root != "" {
		abs, _ := filepath.Abs(root) // CheckRoot made it absolute once
		root = abs
	}
	steps, err := systemd.Install{Root: root, Bin: bin, Config: config.Template()}.Do()
	printSteps(g, steps)
	if err != nil {
		return err
	}
	if root != "" {
		fmt.Fprintf(g.stdout, "staged under %s: systemctl not run\n", root)
		return nil
	}
	if err := systemctl("daemon-reload"); err != nil {
		return err
	}
	if noEnable {
		fmt.Fprintf(g.stdout, "not enabled (--no-enable): systemctl enable --now %s starts it\n", systemd.UnitName)
		return nil
	}
	if err := systemctl("enable", "--now", systemd.UnitName); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "enabled and started %s (systemctl status %s; journalctl -u %s)\n",
		systemd.UnitName, systemd.UnitName, systemd.UnitName)
	fmt.Fprintf(g.stdout, "its mode is the config's (a fresh one says dry-run: nothing is destroyed); "+
		"to destroy, set 'mode: live' in %s and run systemctl restart %s\n", systemd.ConfigPath, systemd.UnitName)
	return nil
}

func newUninstall(g *globals) *cobra.Command {
	var root string
	var purge bool
	cmd := &cobra.Command{
		Use:   "uninstall [--root DIR] [--purge]",
		Short: "Stop and disable the service, remove its unit (and its config if unedited)",
		Long: `uninstall runs 'systemctl disable --now ` + systemd.UnitName + `' (not with --root),
removes the unit and reloads systemd. The config file goes too if it is still
exactly what install wrote; an edited one stays unless --purge. The tracker
stays pinned: 'hck-bpf unload' removes it.

Exit status: 0 when something was removed, 1 when nothing was installed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUninstall(g, root, purge)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&root, "root", "", "uninstall from under this directory instead of / (no systemctl)")
	fs.BoolVar(&purge, "purge", false, "remove the config file even when it was edited")
	return cmd
}

func runUninstall(g *globals, root string, purge bool) error {
	if err := systemd.CheckRoot(root); err != nil {
		return usageError{err}
	}
	if root != "" {
		abs, _ := filepath.Abs(root)
		root = abs
	}
	if root == "" && systemd.Installed(root) {
		if err := systemctl("disable", "--now", systemd.UnitName); err != nil {
			return err
		}
	}
	steps, err := systemd.Uninstall{Root: root, Purge: purge, Template: config.Template()}.Do()
	printSteps(g, steps)
	if errors.Is(err, systemd.ErrNotInstalled) {
		return fmt.Errorf("uninstall: %s is not installed (no %s)", systemd.UnitName, systemd.UnitFile(root))
	}
	if err != nil {
		return err
	}
	if root == "" {
		return systemctl("daemon-reload")
	}
	return nil
}

func printSteps(g *globals, steps []systemd.Step) {
	for _, s := range steps {
		fmt.Fprintf(g.stdout, "%s %s\n", s.Action, s.Path)
	}
}

// systemctl runs systemctl (from PATH) with args; its output goes into
// the error.
func systemctl(args ...string) error {
	var out bytes.Buffer
	c := exec.Command("systemctl", args...)
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if msg != "" {
			msg = ": " + strings.ReplaceAll(msg, "\n", "; ")
		}
		return fmt.Errorf("run systemctl %s: %w%s", strings.Join(args, " "), err, msg)
	}
	return nil
}
