package tracking

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/pin"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
)

// BPFFSRoot is the one place hck-bpf mounts bpffs itself, when nothing is
// mounted there (a fresh machine).
const BPFFSRoot = "/sys/fs/bpf"

// ConfigError is a problem with the pin dir the user chose or with what
// it holds: nothing was loaded, pinned or removed. Commands exit 2 for it.
type ConfigError struct{ err error }

func (e *ConfigError) Error() string { return e.err.Error() }
func (e *ConfigError) Unwrap() error { return e.err }

func configErrorf(format string, a ...any) error {
	return &ConfigError{fmt.Errorf(format, a...)}
}

// CheckPinDir says whether pinDir can hold hck-bpf's pins, without
// creating or mounting anything: it must be on a bpf filesystem, or not
// exist yet with its nearest existing parent on one. The one exception is
// BPFFSRoot: when nothing is mounted there, hck-bpf mounts bpffs at it
// before making a pin dir under it (never anywhere else: a mount over a
// user's directory would hide its files).
func CheckPinDir(pinDir string) error {
	if pinDir == "" {
		return configErrorf("pin dir is empty: give a directory on a bpf filesystem, e.g. %s", DefaultPinDir)
	}
	abs, err := filepath.Abs(pinDir)
	if err != nil {
		return fmt.Errorf("resolve pin dir %s: %w", pinDir, err)
	}
	if within(abs, BPFFSRoot) {
		if ok, _, err := onBPFFS(BPFFSRoot); err == nil && !ok || errors.Is(err, fs.ErrNotExist) {
			return nil // hck-bpf mounts bpffs at BPFFSRoot first
		}
	}
	// The pin dir, or the directory it would be made in.
	dir := abs
	for {
		st, err := os.Stat(dir)
		if err == nil {
			if !st.IsDir() {
				return configErrorf("pin dir %s: %s is not a directory: choose a directory under %s (default %s)",
					pinDir, dir, BPFFSRoot, DefaultPinDir)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return fmt.Errorf("check pin dir %s: %w", pinDir, err)
		}
		dir = filepath.Dir(dir)
	}
	ok, fsType, err := onBPFFS(dir)
	if err != nil {
		return fmt.Errorf("check pin dir %s: %w", pinDir, err)
	}
	if !ok {
		where := fmt.Sprintf("is not on a bpf filesystem (it is on %s)", fsType)
		if dir != abs {
			where = fmt.Sprintf("would be made in %s, which is not on a bpf filesystem (it is on %s)", dir, fsType)
		}
		return configErrorf("pin dir %s %s: choose a directory under %s (default %s)",
			pinDir, where, BPFFSRoot, DefaultPinDir)
	}
	return nil
}

// within reports whether path is dir or below it (both clean and absolute).
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Filesystem magic numbers (statfs f_type), to name what a pin dir is on.
var fsNames = map[int64]string{
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.EXT4_SUPER_MAGIC:      "ext4",
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.SYSFS_MAGIC:           "sysfs",
	unix.PROC_SUPER_MAGIC:      "proc",
	unix.OVERLAYFS_SUPER_MAGIC: "overlay",
	unix.NFS_SUPER_MAGIC:       "nfs",
}

// onBPFFS reports whether path is on a bpf filesystem, and names the
// filesystem it is on.
func onBPFFS(path string) (bool, string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, "", fmt.Errorf("statfs %s: %w", path, err)
	}
	if uint32(st.Type) == bpffsMagic {
		return true, "bpf", nil
	}
	name, ok := fsNames[int64(st.Type)]
	if !ok {
		name = fmt.Sprintf("0x%x", uint32(st.Type))
	}
	return false, name, nil
}

// The names hck-bpf pins under (bpf's loader pins them).
const (
	linkPin        = bpf.LinkPin
	ownersIterPin  = bpf.OwnersIterPin
	socketsIterPin = bpf.SocketsIterPin
)

// pinMaps are the maps of every BPF object that are pinned by name.
var pinMaps = bpf.PinnedMaps

// PinNames are the fixed names hck-bpf pins under; the iterators add
// hck_owners_iter_<digest> and hck_sockets_iter_<digest>.
func PinNames() []string { return append([]string{linkPin}, pinMaps()...) }

// IsPinName reports whether hck-bpf pins something under name: one of
// PinNames, or an iterator of any build.
func IsPinName(name string) bool { return bpf.IsPinName(name) }

// pinKind says what sits at path, if it is not a BPF object: "" for a
// pinned object (bpffs shows them as regular files), or what else it is.
func pinKind(path string) (string, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	switch m := st.Mode(); {
	case m.IsRegular():
		return "", nil
	case m.IsDir():
		return "a directory", nil
	case m&fs.ModeSymlink != 0:
		return "a symlink", nil
	default:
		return "a " + m.Type().String() + " file", nil
	}
}

// checkPins makes sure that every pin name in pinDir that hck-bpf is about
// to load holds what hck-bpf would have pinned there: a map where a map
// goes, a link where a link goes. Anything else (a directory, a symlink, a
// program, a link in a map's place) is a ConfigError naming it, before
// anything is loaded.
func checkPins(pinDir string) error {
	want := map[string]string{linkPin: "link"}
	for _, m := range pinMaps() {
		want[m] = "map"
	}
	entries, err := os.ReadDir(pinDir)
	if err != nil {
		return fmt.Errorf("read pin dir %s: %w", pinDir, err)
	}
	for _, e := range entries {
		kind, ok := want[e.Name()]
		if !ok {
			if !IsPinName(e.Name()) {
				continue
			}
			kind = "link" // an iterator
		}
		path := filepath.Join(pinDir, e.Name())
		what, err := pinKind(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("check pin %s: %w", path, err)
		}
		if what == "" {
			if what, err = pinnedKind(path); err != nil {
				return err
			}
			if what == kind {
				continue
			}
			what = "a pinned " + what
		}
		return configErrorf("%s is %s, not hck-bpf's pinned %s: move it away, or choose another --pin-dir", path, what, kind)
	}
	return nil
}

// pinnedKind opens the BPF object pinned at path and says what it is.
func pinnedKind(path string) (string, error) {
	obj, err := pin.Load(path, nil)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("open pin %s: %w (%s)", path, err, kernel.NeedBPF)
		}
		return "", fmt.Errorf("open pin %s: %w", path, err)
	}
	defer obj.Close()
	switch obj.(type) {
	case *ebpf.Map:
		return "map", nil
	case *ebpf.Program:
		return "program", nil
	default:
		return "link", nil
	}
}
