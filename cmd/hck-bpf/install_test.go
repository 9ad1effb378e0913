package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/config"
	"github.com/hck-bpf/hck-bpf/internal/systemd"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// runMain runs hck-bpf in-process.
func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestInstallRoot: install --root stages the unit and the config, the
// unit's directives checked one by one, and systemd-analyze verify finds
// nothing to say about it.
func TestInstallRoot(t *testing.T) {
	root := t.TempDir()
	bin, err := os.Executable() // a binary that exists, for verify
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runMain("install", "--root", root, "--bin", bin)
	if code != exitOK {
		t.Fatalf("install --root: exit %d: %s%s", code, out, errs)
	}
	unitFile := filepath.Join(root, "etc/systemd/system/hck-bpf.service")
	cfgFile := filepath.Join(root, "etc/hck-bpf/config.yaml")
	for _, want := range []string{"wrote " + unitFile, "wrote " + cfgFile, "staged under " + root} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(cfgFile); err != nil || !bytes.Equal(b, config.Template()) {
		t.Errorf("config: %v, not config.Template():\n%s", err, b)
	}
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	d, err := systemd.Directives(unit)
	if err != nil {
		t.Fatal(err)
	}
	caps := "CAP_BPF CAP_PERFMON CAP_NET_ADMIN"
	want := map[string]map[string][]string{
		"Unit": {
			"Description":           {"hck-bpf: destroy hung TCP connections"},
			"Documentation":         {"https://github.com/hck-bpf/hck-bpf"},
			"After":                 {"network.target"},
			"StartLimitIntervalSec": {"300"},
			"StartLimitBurst":       {"5"},
		},
		"Service": {
			"Type":                    {"notify"},
			"NotifyAccess":            {"main"},
			"ExecStart":               {bin + " run --config /etc/hck-bpf/config.yaml"},
			"ExecReload":              {"/bin/kill -HUP $MAINPID"},
			"WatchdogSec":             {"30"},
			"Restart":                 {"on-failure"},
			"RestartSec":              {"5"},
			"TimeoutStopSec":          {"30"},
			"CapabilityBoundingSet":   {caps},
			"AmbientCapabilities":     {caps},
			"NoNewPrivileges":         {"yes"},
			"ProtectSystem":           {"strict"},
			"ReadWritePaths":          {"/sys/fs/bpf"},
			"ProtectHome":             {"yes"},
			"PrivateTmp":              {"yes"},
			"ProtectKernelTunables":   {"yes"},
			"ProtectKernelModules":    {"yes"},
			"ProtectKernelLogs":       {"yes"},
			"ProtectControlGroups":    {"yes"},
			"ProtectClock":            {"yes"},
			"ProtectHostname":         {"yes"},
			"RestrictRealtime":        {"yes"},
			"RestrictSUIDSGID":        {"yes"},
			"LockPersonality":         {"yes"},
			"MemoryDenyWriteExecute":  {"yes"},
			"RestrictAddressFamilies": {"AF_UNIX AF_NETLINK AF_INET AF_INET6"},
			"SystemCallArchitectures": {"native"},
			"SystemCallFilter":        {"~@clock @cpu-emulation @module @mount @obsolete @raw-io @reboot @swap"},
			"SystemCallErrorNumber":   {"EPERM"},
			"PrivateDevices":          {"yes"},
			"RestrictNamespaces":      {"yes"},
			"UMask":                   {"0077"},
			"MemoryMax":               {"256M"},
		},
		"Install": {"WantedBy": {"multi-user.target"}},
	}
	for sec, keys := range want {
		for k, v := range keys {
			if got := d[sec][k]; !slices.Equal(got, v) {
				t.Errorf("[%s] %s = %q, want %q", sec, k, got, v)
			}
		}
		for k, v := range d[sec] {
			if _, ok := keys[k]; !ok {
				t.Errorf("[%s] %s = %q: not checked by this test", sec, k, v)
			}
		}
	}
	for sec := range d {
		if want[sec] == nil {
			t.Errorf("section [%s] not checked by this test", sec)
		}
	}
	// Every directive is explained: the line before it is a comment.
	lines := strings.Split(string(unit), "\n")
	for i, l := range lines {
		if i > 0 && strings.Contains(l, "=") && !strings.HasPrefix(l, "#") {
			prev := lines[i-1]
			if !strings.HasPrefix(prev, "#") && !strings.Contains(prev, "=") {
				t.Errorf("directive %q has no comment", l)
			}
		}
	}

	verify(t, unitFile)
}

// verify runs systemd-analyze verify on a unit and fails on anything it
// says: it exits 0 even on an unknown directive, with a warning.
func verify(t *testing.T, unitFile string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze missing (apt-get install systemd): the unit is not verified")
	}
	out, err := exec.Command("systemd-analyze", "verify", unitFile).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
}

// TestInstallBadInput: a relative --bin, a --root that is not a
// directory, an argument: exit 2 and nothing written.
func TestInstallBadInput(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"install", "--root", root, "--bin", "bin/hck-bpf"},
		{"install", "--root", root, "--bin", ""},
		{"install", "--root", root, "--bin", "/usr/bin/hck bpf"},
		{"install", "--root", file, "--bin", "/usr/bin/hck-bpf"},
		{"install", "--root", filepath.Join(root, "missing"), "--bin", "/usr/bin/hck-bpf"},
		{"install", "--root", root, "extra"},
		{"uninstall", "--root", file},
	} {
		code, out, errs := runMain(args...)
		if code != exitUsage || !strings.HasPrefix(errs, "hck-bpf: ") || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line", args, code, errs)
		}
		if out != "" {
			t.Errorf("%q: stdout %q", args, out)
		}
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 {
		t.Errorf("root holds %d entries after bad input, want only the test's file", len(ents))
	}
}

// TestUninstallRoot: uninstall --root removes what install --root wrote
// (an unedited config included); a second time there is nothing: exit 1.
func TestUninstallRoot(t *testing.T) {
	root := t.TempDir()
	if code, out, errs := runMain("install", "--root", root, "--bin", "/usr/bin/hck-bpf"); code != exitOK {
		t.Fatalf("install: exit %d: %s%s", code, out, errs)
	}
	code, out, errs := runMain("uninstall", "--root", root)
	if code != exitOK {
		t.Fatalf("uninstall: exit %d: %s%s", code, out, errs)
	}
	for _, p := range []string{"etc/systemd/system/hck-bpf.service", "etc/hck-bpf/config.yaml", "etc/hck-bpf"} {
		if !strings.Contains(out, "removed "+filepath.Join(root, p)) {
			t.Errorf("uninstall output lacks %s:\n%s", p, out)
		}
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s still there", p)
		}
	}
	if code, _, errs := runMain("uninstall", "--root", root); code != exitFailure || !strings.Contains(errs, "not installed") {
		t.Errorf("second uninstall: exit %d, %q; want 1, not installed", code, errs)
	}
}

// TestInstallRunsSystemctl: on this system (a tmpfs over /etc in a mount
// namespace of the test's own, and a systemctl that only records its
// arguments), install reloads systemd and enables and starts the service,
// --no-enable only reloads, uninstall disables and stops it first.
func TestInstallRunsSystemctl(t *testing.T) {
	testnet.RequireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs util-linux unshare")
	}
	bin := hckBPF(t)
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	fake := "#!/bin/sh\necho \"$*\" >> " + calls + "\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	script := `set -e; mount -t tmpfs none /etc
"$BIN" install --bin "$BIN"; echo --; "$BIN" install --no-enable --bin "$BIN"; echo --
test "$(stat -c %a /etc/hck-bpf/config.yaml)" = 600; "$BIN" uninstall`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	want := "daemon-reload\nenable --now hck-bpf.service\n" + // install
		"daemon-reload\n" + // install --no-enable
		"disable --now hck-bpf.service\ndaemon-reload\n" // uninstall
	if string(got) != want {
		t.Errorf("systemctl calls\n%s\nwant\n%s\noutput:\n%s", got, want, out)
	}
}
