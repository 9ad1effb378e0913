package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/config"
	"github.com/hck-bpf/hck-bpf/internal/systemd"
)

func TestDebVersion(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"0.9", "0.9"},
		{"abc1234", "0~gabc1234"},
		{"abc1234-dirty", "0~gabc1234.dirty"},
		{"3be9ca6-dirty", "0~g3be9ca6.dirty"}, // a hash starting with a digit is no tag
		{"1234567", "0~g1234567"},
	} {
		got, err := debVersion(c.in)
		if err != nil || got != c.want {
			t.Errorf("debVersion(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "v1.2_3", "1.2 3", "v1.2.3/4", "abc_123"} {
		if got, err := debVersion(bad); err == nil {
			t.Errorf("debVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// TestPackageInstalls builds the .deb as `make package` does, installs it
// with dpkg into a scratch root (maintainer scripts included, run outside
// the root with DPKG_ROOT set), and checks every file, the control
// fields, the conffile, that an edited config survives a reinstall and
// that a purge removes it.
func TestPackageInstalls(t *testing.T) {
	for _, tool := range []string{"dpkg", "dpkg-deb", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to check the package (apt-get install dpkg git): %v", tool, err)
		}
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	describe := strings.TrimSpace(run(t, root, "git", "describe", "--always", "--dirty"))
	debVer, err := debVersion(describe)
	if err != nil {
		t.Fatal(err)
	}

	deb, err := build(options{Out: t.TempDir(), Arch: "amd64", Maintainer: "Test Maintainer <test@example.invalid>"})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if want := "hck-bpf_" + debVer + "_amd64.deb"; filepath.Base(deb) != want {
		t.Errorf("package file %s, want %s", filepath.Base(deb), want)
	}

	// The control fields, as dpkg-deb reads them.
	fields := map[string]string{
		"Package":      "hck-bpf",
		"Version":      debVer,
		"Architecture": "amd64",
		"Maintainer":   "Test Maintainer <test@example.invalid>",
		"Section":      "net",
		"Recommends":   "bpftool",
	}
	for name, want := range fields {
		if got := strings.TrimSpace(run(t, "", "dpkg-deb", "-f", deb, name)); got != want {
			t.Errorf("control field %s = %q, want %q", name, got, want)
		}
	}
	if desc := run(t, "", "dpkg-deb", "-f", deb, "Description"); !strings.HasPrefix(desc, "destroy hung TCP connections in the kernel\n") ||
		!strings.Contains(desc, "systemctl enable --now hck-bpf") {
		t.Errorf("Description:\n%s\nwant the one-line summary, then that the service is not enabled", desc)
	}
	if got := strings.TrimSpace(run(t, "", "dpkg-deb", "-f", deb, "Depends")); got != "" {
		t.Errorf("Depends: %q, want none", got)
	}
	if got := run(t, "", "dpkg-deb", "--info", deb, "conffiles"); got != configPath+"\n" {
		t.Errorf("conffiles %q, want %q", got, configPath+"\n")
	}

	// Install into a scratch root: a dpkg database of its own.
	scratch := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(scratch, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(scratch, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := func(args ...string) string {
		return run(t, "", "dpkg", append([]string{"--root=" + scratch, "--force-not-root", "--force-script-chrootless", "--log=/dev/null"}, args...)...)
	}
	dpkg("--install", deb)

	for _, f := range []struct {
		path string
		mode fs.FileMode
		want []byte // nil: not compared
	}{
		{binPath, 0o755, nil},
		{unitPath, 0o644, systemd.Unit(binPath)},
		{configPath, 0o600, config.Template()},
		{docDir + "/README.md", 0o644, mustRead(t, filepath.Join(root, "README.md"))},
	} {
		p := filepath.Join(scratch, f.path)
		st, err := os.Lstat(p)
		if err != nil {
			t.Errorf("installed file: %v", err)
			continue
		}
		if !st.Mode().IsRegular() || st.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want a regular file %v", f.path, st.Mode(), f.mode)
		}
		if f.want != nil {
			if got := mustRead(t, p); !bytes.Equal(got, f.want) {
				t.Errorf("%s:\n%s\nwant:\n%s", f.path, got, f.want)
			}
		}
	}
	// The binary runs and says the version it was built from.
	if got, want := strings.TrimSpace(run(t, "", filepath.Join(scratch, binPath), "--version")), "hck-bpf version "+describe; got != want {
		t.Errorf("--version: %q, want %q", got, want)
	}
	// Not enabled: nothing under /etc/systemd.
	if _, err := os.Stat(filepath.Join(scratch, "etc/systemd")); !os.IsNotExist(err) {
		t.Errorf("the package enabled something: /etc/systemd in the root (%v)", err)
	}

	// dpkg's own record: installed, the config a conffile.
	status := dpkg("--status", "hck-bpf")
	for _, want := range []string{"Status: install ok installed", "Version: " + debVer, "Conffiles:\n " + configPath + " "} {
		if !strings.Contains(status, want) {
			t.Errorf("dpkg --status:\n%s\nwant %q in it", status, want)
		}
	}

	// An edited config survives a reinstall (config|noreplace); a purge
	// removes it with everything else.
	edited := []byte("# edited by the admin\nmetrics_addr: \"127.0.0.1:9477\"\n")
	if err := os.WriteFile(filepath.Join(scratch, configPath), edited, 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("--install", deb)
	if got := mustRead(t, filepath.Join(scratch, configPath)); !bytes.Equal(got, edited) {
		t.Errorf("reinstall replaced the edited config with:\n%s", got)
	}
	dpkg("--purge", "hck-bpf")
	for _, p := range []string{binPath, unitPath, configPath} {
		if _, err := os.Stat(filepath.Join(scratch, p)); !os.IsNotExist(err) {
			t.Errorf("%s after purge: %v, want it gone", p, err)
		}
	}
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
