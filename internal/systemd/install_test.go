package systemd

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var template = []byte("# config\n")

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestInstallModes: the files and directories get their modes whatever
// the umask; a second install rewrites the unit and keeps the config.
func TestInstallModes(t *testing.T) {
	root := t.TempDir()
	old := unixUmask(0o022 | 0o577) // a umask that would take every bit
	defer unixUmask(old)
	steps, err := Install{Root: root, Bin: "/usr/bin/hck-bpf", Config: template}.Do()
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{{UnitFile(root), "wrote"}, {ConfigFile(root), "wrote"}}
	if !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
	for path, m := range map[string]os.FileMode{
		UnitFile(root):                     UnitMode,
		filepath.Dir(UnitFile(root)):       UnitDirMode,
		ConfigFile(root):                   ConfigMode,
		filepath.Dir(ConfigFile(root)):     ConfigDirMode,
		filepath.Join(root, "etc"):         0o755,
		filepath.Join(root, "etc/systemd"): 0o755,
	} {
		if got := mode(t, path); got != m {
			t.Errorf("%s: mode %#o, want %#o", path, got, m)
		}
	}
	if err := os.WriteFile(ConfigFile(root), []byte("edited\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(UnitFile(root), []byte("old unit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	steps, err = Install{Root: root, Bin: "/opt/hck-bpf", Config: template}.Do()
	if err != nil {
		t.Fatal(err)
	}
	if want := []Step{{UnitFile(root), "wrote"}, {ConfigFile(root), "kept"}}; !slices.Equal(steps, want) {
		t.Errorf("second install: steps %v, want %v", steps, want)
	}
	if b, _ := os.ReadFile(ConfigFile(root)); string(b) != "edited\n" {
		t.Errorf("config overwritten: %q", b)
	}
	if b, _ := os.ReadFile(UnitFile(root)); !strings.Contains(string(b), "ExecStart=/opt/hck-bpf run") {
		t.Errorf("unit not rewritten:\n%s", b)
	}
	if got := mode(t, UnitFile(root)); got != UnitMode {
		t.Errorf("rewritten unit: mode %#o", got)
	}
	if ents, _ := os.ReadDir(filepath.Dir(UnitFile(root))); len(ents) != 1 {
		t.Errorf("unit dir holds %d files, want only the unit (no temporary file left)", len(ents))
	}
}

// TestUninstall: an unedited config goes with its directory; an edited
// one stays unless purged; nothing installed is ErrNotInstalled.
func TestUninstall(t *testing.T) {
	for _, c := range []struct {
		name        string
		edit, purge bool
		keepConfig  bool
	}{
		{"unedited", false, false, false},
		{"edited", true, false, true},
		{"edited purged", true, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			if _, err := (Install{Root: root, Bin: "/usr/bin/hck-bpf", Config: template}).Do(); err != nil {
				t.Fatal(err)
			}
			if c.edit {
				if err := os.WriteFile(ConfigFile(root), []byte("rules: []\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			steps, err := Uninstall{Root: root, Purge: c.purge, Template: template}.Do()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(UnitFile(root)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("unit after uninstall: %v", err)
			}
			_, err = os.Stat(ConfigFile(root))
			if kept := err == nil; kept != c.keepConfig {
				t.Errorf("config kept %v, want %v (steps %v)", kept, c.keepConfig, steps)
			}
			_, err = os.Stat(filepath.Dir(ConfigFile(root)))
			if kept := err == nil; kept != c.keepConfig {
				t.Errorf("config dir kept %v, want %v", kept, c.keepConfig)
			}
			if c.keepConfig {
				return
			}
			if _, err := (Uninstall{Root: root, Template: template}).Do(); !errors.Is(err, ErrNotInstalled) {
				t.Errorf("second uninstall: %v, want ErrNotInstalled", err)
			}
		})
	}
}

// TestUninstallKeepsOthersFiles: the config directory goes only when empty.
func TestUninstallKeepsOthersFiles(t *testing.T) {
	root := t.TempDir()
	if _, err := (Install{Root: root, Bin: "/usr/bin/hck-bpf", Config: template}).Do(); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(filepath.Dir(ConfigFile(root)), "notes")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (Uninstall{Root: root, Template: template}).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another file in the config dir: %v", err)
	}
}

func TestCheckBin(t *testing.T) {
	for _, bin := range []string{"hck-bpf", "./hck-bpf", "/usr/bin/../bin/hck-bpf", "/usr/bin/hck bpf", "/usr/bin/hck-$x", "/a;b"} {
		if err := CheckBin(bin, false); err == nil {
			t.Errorf("CheckBin(%q) accepted", bin)
		}
	}
	if err := CheckBin("/usr/bin/hck-bpf", false); err != nil {
		t.Error(err)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{dir, plain, filepath.Join(dir, "missing")} {
		if err := CheckBin(bin, true); err == nil {
			t.Errorf("CheckBin(%q, exists) accepted", bin)
		}
	}
}
