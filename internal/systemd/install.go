package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Modes of what install writes: the unit is world-readable, as units are;
// the config and its directory are root's alone (a config may hold webhook
// URLs with their tokens).
const (
	UnitMode      = 0o644
	UnitDirMode   = 0o755
	ConfigMode    = 0o600
	ConfigDirMode = 0o700
)

// Install is what `hck-bpf install` does.
type Install struct {
	// Root is the directory to install under ("" or "/": this system).
	Root string
	// Bin is the absolute path the unit runs (in the installed system).
	Bin string
	// Config is the config file to write when there is none
	// (config.Template()).
	Config []byte
}

// Step is one thing install or uninstall did, for the command to say.
type Step struct {
	Path   string // the file, under the root
	Action string // "wrote", "kept", "removed", "kept (edited)"
}

// CheckRoot refuses a root that is not an existing directory (a usage
// error: nothing is written).
func CheckRoot(root string) error {
	if root == "" {
		return nil
	}
	if !filepath.IsAbs(root) {
		abs, err := filepath.Abs(root)
		if err != nil {
			return fmt.Errorf("check --root %s: %w", root, err)
		}
		root = abs
	}
	st, err := os.Stat(root)
	switch {
	case err != nil:
		return fmt.Errorf("check --root %s: %w", root, err)
	case !st.IsDir():
		return fmt.Errorf("check --root %s: not a directory", root)
	}
	return nil
}

// CheckBin refuses a binary path the unit cannot run: not absolute, or,
// when checkExists (installing on this system), not an executable regular
// file.
func CheckBin(bin string, checkExists bool) error {
	if !filepath.IsAbs(bin) {
		return fmt.Errorf("check --bin %q: not an absolute path (systemd runs ExecStart by absolute path)", bin)
	}
	if bin != filepath.Clean(bin) {
		return fmt.Errorf("check --bin %q: not a clean path (want %s)", bin, filepath.Clean(bin))
	}
	for _, r := range bin {
		if r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == '$' || r == '%' || r == ';' {
			return fmt.Errorf("check --bin %q: holds %q, which a unit's ExecStart would read otherwise", bin, r)
		}
	}
	if !checkExists {
		return nil
	}
	st, err := os.Stat(bin)
	switch {
	case err != nil:
		return fmt.Errorf("check --bin %s: %w", bin, err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("check --bin %s: not a regular file", bin)
	case st.Mode()&0o111 == 0:
		return fmt.Errorf("check --bin %s: not executable", bin)
	}
	return nil
}

// under is path p (absolute, in the installed system) under root.
func under(root, p string) string {
	if root == "" {
		return p
	}
	return filepath.Join(root, p)
}

// UnitFile and ConfigFile are where the unit and the config go under root.
func UnitFile(root string) string   { return under(root, filepath.Join(UnitDir, UnitName)) }
func ConfigFile(root string) string { return under(root, ConfigPath) }

// Do writes the unit (replacing an older one) and, when there is none
// yet, the config file. Missing directories are made: the unit's 0755,
// the config's 0700.
func (in Install) Do() ([]Step, error) {
	var steps []Step
	unitFile := UnitFile(in.Root)
	if err := mkdirAll(filepath.Dir(unitFile), UnitDirMode); err != nil {
		return steps, err
	}
	if err := writeFile(unitFile, Unit(in.Bin), UnitMode, true); err != nil {
		return steps, err
	}
	steps = append(steps, Step{unitFile, "wrote"})

	cfgFile := ConfigFile(in.Root)
	cfgDir := filepath.Dir(cfgFile)
	if err := mkdirAll(filepath.Dir(cfgDir), UnitDirMode); err != nil {
		return steps, err
	}
	if err := mkdirAll(cfgDir, ConfigDirMode); err != nil {
		return steps, err
	}
	err := writeFile(cfgFile, in.Config, ConfigMode, false)
	switch {
	case errors.Is(err, fs.ErrExist):
		steps = append(steps, Step{cfgFile, "kept"})
	case err != nil:
		return steps, err
	default:
		steps = append(steps, Step{cfgFile, "wrote"})
	}
	return steps, nil
}

// mkdirAll makes dir and its missing parents with mode, whatever the
// umask; directories that exist are left as they are.
func mkdirAll(dir string, mode os.FileMode) error {
	if st, err := os.Stat(dir); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("make %s: not a directory", dir)
		}
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAll(parent, UnitDirMode); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("make %s: %w", dir, err)
	} else if err == nil {
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("set mode of %s: %w", dir, err)
		}
	}
	return nil
}

// writeFile writes data to path with mode, whatever the umask: through a
// temporary file renamed over path when replace, else created exclusively
// (fs.ErrExist when path exists: nothing is written).
func writeFile(path string, data []byte, mode os.FileMode, replace bool) error {
	if !replace {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, mode)
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				return err
			}
			return fmt.Errorf("write %s: %w", path, err)
		}
		return finish(f, path, data, mode, func() error { return nil })
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = finish(f, path, data, mode, func() error { return os.Rename(tmp, path) })
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// finish writes data to f, sets its mode, syncs and closes it, then calls
// done; a failure removes nothing but says what failed.
func finish(f *os.File, path string, data []byte, mode os.FileMode, done func() error) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = done()
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Uninstall is what `hck-bpf uninstall` does to the files.
type Uninstall struct {
	Root string
	// Purge removes the config even when it was edited.
	Purge bool
	// Template is the config install writes (config.Template()): a
	// config that still reads exactly so was not edited, and goes.
	Template []byte
}

// ErrNotInstalled: neither the unit nor the config is there.
var ErrNotInstalled = errors.New("not installed")

// Installed reports whether the unit file is under root.
func Installed(root string) bool {
	_, err := os.Lstat(UnitFile(root))
	return err == nil
}

// Do removes the unit and the config (an edited one only with Purge), and
// the config's directory when nothing else is left in it.
func (u Uninstall) Do() ([]Step, error) {
	var steps []Step
	unitFile, cfgFile := UnitFile(u.Root), ConfigFile(u.Root)
	found := false
	switch err := os.Remove(unitFile); {
	case err == nil:
		found = true
		steps = append(steps, Step{unitFile, "removed"})
	case !errors.Is(err, fs.ErrNotExist):
		return steps, fmt.Errorf("remove %s: %w", unitFile, err)
	}
	data, err := os.ReadFile(cfgFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil && !u.Purge:
		return steps, fmt.Errorf("read %s: %w", cfgFile, err)
	case !u.Purge && !bytes.Equal(data, u.Template):
		found = true
		steps = append(steps, Step{cfgFile, "kept (edited; --purge removes it)"})
	default:
		found = true
		if err := os.Remove(cfgFile); err != nil {
			return steps, fmt.Errorf("remove %s: %w", cfgFile, err)
		}
		steps = append(steps, Step{cfgFile, "removed"})
		// Only when empty: another file there is someone's.
		if err := unix.Rmdir(filepath.Dir(cfgFile)); err == nil {
			steps = append(steps, Step{filepath.Dir(cfgFile), "removed"})
		}
	}
	if !found {
		return nil, ErrNotInstalled
	}
	return steps, nil
}
