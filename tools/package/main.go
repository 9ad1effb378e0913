// Command package builds hck-bpf's Debian package with nfpm used as a
// library: the binary (built here, -trimpath, the version from git
// stamped in), the systemd unit (not enabled), the config as a conffile
// and the README. Run from anywhere in the module: `go run ./tools/package`
// (`make package`); the .deb lands in -out (dist/).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/hck-bpf/hck-bpf/internal/config"
	"github.com/hck-bpf/hck-bpf/internal/systemd"
)

// Where the package puts things.
const (
	binPath    = "/usr/bin/hck-bpf"
	unitPath   = "/usr/lib/systemd/system/hck-bpf.service"
	configPath = "/etc/hck-bpf/config.yaml"
	docDir     = "/usr/share/doc/hck-bpf"
)

type options struct {
	Root       string // the module's directory (README, LICENSE, cmd/hck-bpf)
	Out        string // where the .deb is written
	Version    string // stamped into the binary: `git describe --always --dirty`
	Arch       string // GOARCH, also the Debian architecture (amd64, arm64)
	Maintainer string
}

func main() {
	var o options
	flag.StringVar(&o.Out, "out", "dist", "directory the .deb is written to")
	flag.StringVar(&o.Version, "version", "", "version stamped into the binary (default: git describe --always --dirty)")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "target architecture (GOARCH; the same name in Debian for amd64 and arm64)")
	flag.StringVar(&o.Maintainer, "maintainer", "hck-bpf maintainers <maintainers@hck-bpf.invalid>", "the package's Maintainer field")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "package: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	path, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// build writes the .deb into o.Out and returns its path.
func build(o options) (string, error) {
	if o.Root == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		o.Root = root
	}
	if o.Version == "" {
		v, err := gitVersion(o.Root)
		if err != nil {
			return "", err
		}
		o.Version = v
	}
	debVer, err := debVersion(o.Version)
	if err != nil {
		return "", err
	}

	stage, err := os.MkdirTemp("", "hck-bpf-package-")
	if err != nil {
		return "", fmt.Errorf("create staging dir: %w", err)
	}
	defer os.RemoveAll(stage)

	bin := filepath.Join(stage, "hck-bpf")
	if err := buildBinary(o, bin); err != nil {
		return "", err
	}
	unit := filepath.Join(stage, "hck-bpf.service")
	cfg := filepath.Join(stage, "config.yaml")
	postinst := filepath.Join(stage, "postinst")
	prerm := filepath.Join(stage, "prerm")
	postrm := filepath.Join(stage, "postrm")
	for _, f := range []struct {
		path string
		data []byte
	}{
		{unit, systemd.Unit(binPath)},
		{cfg, config.Template()},
		{postinst, []byte(postinstScript)},
		{prerm, []byte(prermScript)},
		{postrm, []byte(postrmScript)},
	} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", f.path, err)
		}
	}

	contents := files.Contents{
		{Source: bin, Destination: binPath, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		{Source: unit, Destination: unitPath, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		// config|noreplace: a conffile in the deb; dpkg keeps an edited
		// one on upgrade and removes it only on purge.
		{Source: cfg, Destination: configPath, Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o600}},
		{Source: filepath.Join(o.Root, "README.md"), Destination: docDir + "/README.md", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
	}
	licences, _ := filepath.Glob(filepath.Join(o.Root, "LICEN[CS]E*")) // none yet
	for _, l := range licences {
		contents = append(contents, &files.Content{Source: l, Destination: docDir + "/" + filepath.Base(l), FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}

	info := nfpm.WithDefaults(&nfpm.Info{
		Name:            "hck-bpf",
		Arch:            o.Arch,
		Platform:        "linux",
		Version:         debVer,
		VersionSchema:   "none", // debVersion made it a valid Debian version already
		Section:         "net",
		Priority:        "optional",
		Maintainer:      o.Maintainer,
		Homepage:        "https://github.com/hck-bpf/hck-bpf",
		DisableGlobbing: true,
		Description: "destroy hung TCP connections in the kernel\n" +
			"hck-bpf finds TCP connections stuck in CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2,\n" +
			"CLOSING, LAST_ACK and TIME_WAIT with a BPF tracker and destroys them by\n" +
			"socket cookie, without killing their process. The service is installed\n" +
			"but not enabled: systemctl enable --now hck-bpf.",
		Overridables: nfpm.Overridables{
			Recommends: []string{"bpftool"},
			Contents:   contents,
			Scripts:    nfpm.Scripts{PostInstall: postinst, PreRemove: prerm, PostRemove: postrm},
		},
	})
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("check package info: %w", err)
	}

	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", o.Out, err)
	}
	path := filepath.Join(o.Out, deb.Default.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("build %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// The maintainer scripts: systemd is told of the new unit when it runs
// (not when dpkg installs into another root, DPKG_ROOT); nothing enables
// or starts the service, an upgrade restarts it only if it runs, a
// removal stops and disables it.
const (
	postinstScript = `#!/bin/sh
set -e
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$1" = configure ] && [ -n "$2" ]; then
		systemctl try-restart hck-bpf.service || true
	fi
fi
`
	prermScript = `#!/bin/sh
set -e
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl disable --now hck-bpf.service || true
fi
`
	postrmScript = `#!/bin/sh
set -e
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
`
)

func buildBinary(o options, out string) error {
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-X main.version="+o.Version,
		"-o", out, "./cmd/hck-bpf")
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build hck-bpf: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("find the module: not inside hck-bpf's module")
	}
	return filepath.Dir(gomod), nil
}

func gitVersion(dir string) (string, error) {
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("read the version (git describe --always --dirty; or give -version): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

var (
	debUpstream = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
	fromTag     = regexp.MustCompile(`^(v[0-9]|[0-9]+\.[0-9])`) // v1..., 1.2...
)

// debVersion turns `git describe` output into a Debian version: a tag
// v1.2.3 gives 1.2.3, v1.2.3-4-gabc1234 gives 1.2.3+4.gabc1234, and a
// bare commit abc1234 (no tag yet) gives 0~gabc1234, which sorts below
// any tagged release; -dirty becomes .dirty.
func debVersion(describe string) (string, error) {
	if describe == "" {
		return "", fmt.Errorf("make a Debian version: no version given")
	}
	v := describe
	if !fromTag.MatchString(v) { // a commit's hash, which may start with a digit
		v = "0~g" + v
	} else if v = strings.TrimPrefix(v, "v"); strings.Contains(v, "-") {
		v = strings.Replace(v, "-", "+", 1)
	}
	v = strings.ReplaceAll(v, "-", ".")
	if !debUpstream.MatchString(v) {
		return "", fmt.Errorf("make a Debian version of %q: %q is not one (digits first, then letters, digits, . + ~)", describe, v)
	}
	return v, nil
}
