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

// ensurePinDir mounts bpffs at /sys/fs/bpf when nothing is mounted there (a
// fresh machine has no bpffs), then makes pinDir, which must live on bpffs.
func ensurePinDir(pinDir string) error {
	if err := mountBPFFS("/sys/fs/bpf"); err != nil {
		return err
	}
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return fmt.Errorf("create pin dir %s: %w", pinDir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(pinDir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", pinDir, err)
	}
	if uint32(st.Type) != bpffsMagic {
		return fmt.Errorf("pin dir %s is not on a bpf filesystem (mount -t bpf bpf %s)", pinDir, filepath.Dir(pinDir))
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
		return fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return nil
}
