package tracking

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
)

// ErrNothingToUnload: the pin dir does not exist, or holds no hck-bpf pin.
// Nothing was changed.
var ErrNothingToUnload = errors.New("nothing to unload")

// UnloadOptions tune UnloadPins.
type UnloadOptions struct {
	// Force stops the service running on the pin dir (SIGTERM, then a wait
	// of up to StopTimeout for it to exit) instead of refusing.
	Force       bool
	StopTimeout time.Duration // 30s when 0
}

// Leftover is an entry of the pin dir that unload left alone.
type Leftover struct {
	Name string
	Why  string
}

// UnloadReport says what UnloadPins did.
type UnloadReport struct {
	Stopped    int        // pid of the service stopped first (Force)
	Removed    []string   // the pins removed, the tracker's link first
	Left       []Leftover // entries of the pin dir left alone
	DirRemoved bool       // the pin dir was empty afterwards and is gone
}

// UnloadPins detaches the tracker and removes hck-bpf's pins from pinDir:
// only entries whose name is one hck-bpf pins under (IsPinName) and that
// are pinned BPF objects, on a bpf filesystem. Anything else is left and
// reported; the directory goes only if nothing is left in it.
//
// A service running on pinDir (holding its lock) makes it refuse with a
// *BusyError, unless opts.Force. A pin dir that does not exist or holds no
// hck-bpf pin is ErrNothingToUnload; one not on bpffs a *ConfigError.
// Processes still holding the maps keep them until they exit.
func UnloadPins(pinDir string, opts UnloadOptions) (UnloadReport, error) {
	var rep UnloadReport
	if err := CheckPinDir(pinDir); err != nil {
		return rep, err
	}
	if _, err := os.Stat(pinDir); errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("%w: %s does not exist", ErrNothingToUnload, pinDir)
	}
	lock, err := lockPinDir(pinDir)
	var be *BusyError
	if errors.As(err, &be) && opts.Force {
		timeout := opts.StopTimeout
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		lock, rep.Stopped, err = stopHolder(pinDir, be, timeout)
	}
	if err != nil {
		return rep, err
	}
	defer lock.release()

	if _, err := os.ReadDir(pinDir); err != nil {
		return rep, fmt.Errorf("read pin dir %s: %w", pinDir, err)
	}
	ours, left := ownPins(pinDir)
	rep.Left = append(rep.Left, left...)
	// kill's own pins, in a subdirectory (bpf.KillPinDir).
	var kill []string
	killDir := filepath.Join(pinDir, bpf.KillPinDir)
	st, err := os.Lstat(killDir)
	hasKillDir := err == nil && st.IsDir()
	if hasKillDir {
		kill, left = ownPins(killDir)
		for _, l := range left {
			rep.Left = append(rep.Left, Leftover{filepath.Join(bpf.KillPinDir, l.Name), l.Why})
		}
	}
	if len(ours) == 0 && len(kill) == 0 {
		return rep, fmt.Errorf("%w: no hck-bpf pin in %s", ErrNothingToUnload, pinDir)
	}
	// The link first, so the tracker stops before its maps go; then the
	// iterators, then the maps.
	slices.SortFunc(ours, func(a, b string) int { return unloadRank(a) - unloadRank(b) })
	var errs []error
	for _, name := range ours {
		if err := os.Remove(filepath.Join(pinDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", name, err))
			continue
		}
		rep.Removed = append(rep.Removed, name)
	}
	if hasKillDir {
		for _, name := range kill {
			if err := os.Remove(filepath.Join(killDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("unpin %s: %w", filepath.Join(bpf.KillPinDir, name), err))
				continue
			}
			rep.Removed = append(rep.Removed, filepath.Join(bpf.KillPinDir, name))
		}
		if rest, err := os.ReadDir(killDir); err == nil && len(rest) == 0 {
			if err := os.Remove(killDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", killDir, err))
			}
		}
	}
	if rest, err := os.ReadDir(pinDir); err == nil && len(rest) == 0 && !mountPoint(pinDir) {
		if err := os.Remove(pinDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pin dir %s: %w", pinDir, err))
		} else {
			rep.DirRemoved = true
		}
	}
	return rep, errors.Join(errs...)
}

// ownPins lists the entries of dir that are hck-bpf's pins (a name
// hck-bpf pins under, a pinned BPF object), and what else it holds.
func ownPins(dir string) (ours []string, left []Leftover) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []Leftover{{".", err.Error()}}
	}
	for _, e := range entries {
		name := e.Name()
		if name == bpf.KillPinDir && e.IsDir() {
			continue // the caller looks inside
		}
		if !IsPinName(name) {
			left = append(left, Leftover{name, "not a name hck-bpf pins under"})
			continue
		}
		what, err := pinKind(filepath.Join(dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			left = append(left, Leftover{name, err.Error()})
		case what != "":
			left = append(left, Leftover{name, what + ", not a pinned BPF object"})
		default:
			ours = append(ours, name)
		}
	}
	return ours, left
}

func unloadRank(name string) int {
	switch {
	case name == linkPin:
		return 0
	case strings.HasPrefix(name, ownersIterPin), strings.HasPrefix(name, socketsIterPin):
		return 1
	}
	return 2
}

// mountPoint reports whether dir is where a filesystem is mounted (such as
// BPFFSRoot itself): never removed.
func mountPoint(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return true
	}
	var st, parent unix.Stat_t
	if unix.Stat(abs, &st) != nil || unix.Stat(filepath.Dir(abs), &parent) != nil {
		return true
	}
	return st.Dev != parent.Dev || abs == "/"
}

// Unload detaches the tracker and removes hck-bpf's pins from pinDir, as
// UnloadPins does without Force; a pin dir with nothing to unload is not
// an error.
func Unload(pinDir string) error {
	_, err := UnloadPins(pinDir, UnloadOptions{})
	if errors.Is(err, ErrNothingToUnload) {
		return nil
	}
	return err
}
