package tracking

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

const bpffsMagic = 0xcafe4a11

// DefaultPinDir is where a real installation pins its maps and link.
const DefaultPinDir = "/sys/fs/bpf/hck-bpf"

// ensurePinDir makes pinDir, which CheckPinDir has accepted, first
// mounting bpffs at BPFFSRoot when pinDir is under it and nothing is
// mounted there (a fresh machine has no bpffs).
func ensurePinDir(pinDir string) error {
	if abs, err := filepath.Abs(pinDir); err == nil && within(abs, BPFFSRoot) {
		if err := mountBPFFS(BPFFSRoot); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return fmt.Errorf("create pin dir %s: %w", pinDir, err)
	}
	if ok, fsType, err := onBPFFS(pinDir); err != nil {
		return err
	} else if !ok { // changed since CheckPinDir
		return configErrorf("pin dir %s is not on a bpf filesystem (it is on %s): choose a directory under %s", pinDir, fsType, BPFFSRoot)
	}
	return nil
}

func mountBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && uint32(st.Type) == bpffsMagic {
		return nil
	} else if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("mount bpffs at %s: %w (needs CAP_SYS_ADMIN; or mount it first: mount -t bpf bpf %s)", dir, err, dir)
		}
		return fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return nil
}

// EnsurePinDir makes pinDir, which CheckPinDir has accepted, as the
// tracker does before pinning (bpffs mounted at BPFFSRoot first when
// pinDir is under it and nothing is mounted there): for commands that pin
// without a tracker (kill).
func EnsurePinDir(pinDir string) error { return ensurePinDir(pinDir) }
