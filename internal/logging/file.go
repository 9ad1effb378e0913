package logging

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// LogFileMode is the mode of a log file hck-bpf creates, whatever the
// umask: the log names the connections of every process on the host.
const LogFileMode = 0o600

// kernelFS are filesystems whose files are kernel interfaces, not storage:
// "appending a log line" to one writes a setting (/proc/sys/kernel/hostname
// renames the host) or fails on every line. A log file there is refused.
var kernelFS = map[uint32]string{
	unix.PROC_SUPER_MAGIC:    "proc",
	unix.SYSFS_MAGIC:         "sysfs",
	unix.CGROUP_SUPER_MAGIC:  "cgroup",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2",
	unix.DEBUGFS_MAGIC:       "debugfs",
	unix.TRACEFS_MAGIC:       "tracefs",
	unix.SECURITYFS_MAGIC:    "securityfs",
	unix.BPF_FS_MAGIC:        "bpf",
	unix.EFIVARFS_MAGIC:      "efivarfs",
	unix.PSTOREFS_MAGIC:      "pstore",
	unix.SELINUX_MAGIC:       "selinuxfs",
	unix.SMACK_MAGIC:         "smackfs",
	unix.BINFMTFS_MAGIC:      "binfmt_misc",
	unix.NSFS_MAGIC:          "nsfs",
	unix.HUGETLBFS_MAGIC:     "hugetlbfs",
	unix.DEVPTS_SUPER_MAGIC:  "devpts",
	0x62656570:               "configfs", // CONFIGFS_MAGIC
	0x65735543:               "fusectl",  // FUSE_CTL_SUPER_MAGIC
	unix.ANON_INODE_FS_MAGIC: "anon_inodefs",
	unix.PIPEFS_MAGIC:        "pipefs",
	unix.SOCKFS_MAGIC:        "sockfs",
}

// openLogFile opens path for appending log lines, or creates it, and
// refuses anything that is not plainly a log file of this user's:
//   - a symbolic link (O_NOFOLLOW): one planted in /tmp by another user
//     would make root append to the file it points at;
//   - anything but a regular file: a device (/dev/full loses every line), a
//     FIFO (with no reader, opening it would hang: it is opened
//     O_NONBLOCK), a directory, a socket;
//   - a file owned by another user, or with several hard links;
//   - a file on a kernel-interface filesystem (proc, sysfs, cgroup, ...).
//
// Nothing is opened for writing before the checks pass on an O_PATH
// descriptor, which has no side effect (opening some devices does); the
// file opened for writing must then be the very one checked. A new file is
// created LogFileMode, whatever the umask. Errors are one line, naming the
// path.
func openLogFile(path string) (*os.File, error) {
	const open = unix.O_WRONLY | unix.O_APPEND | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	if path == "" {
		return nil, errors.New("open log file: empty path")
	}
	for range 3 { // a file removed or created between two steps: try again
		fd, err := unix.Open(path, open|unix.O_CREAT|unix.O_EXCL, LogFileMode)
		if err == nil {
			// Ours, new and empty: only the mode needs fixing (the umask
			// may have taken bits, even the owner's write bit).
			f := os.NewFile(uintptr(fd), path)
			if err := finishOpen(f, path, true); err != nil {
				f.Close()
				os.Remove(path)
				return nil, err
			}
			return f, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return nil, openError(path, err)
		}
		f, err := openExisting(path, open)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("open log file %s: it keeps changing", path)
}

// openExisting checks path through an O_PATH descriptor, then opens it.
func openExisting(path string, flags int) (*os.File, error) {
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(path, err)
	}
	defer unix.Close(pfd)
	want, err := checkLogFile(pfd, path)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return nil, openError(path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("open log file %s: %w", path, err)
	}
	if st.Dev != want.Dev || st.Ino != want.Ino {
		f.Close()
		return nil, fmt.Errorf("open log file %s: it was replaced while being opened", path)
	}
	if err := finishOpen(f, path, false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkLogFile holds the rules of openLogFile for the file fd refers to.
func checkLogFile(fd int, path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return st, fmt.Errorf("open log file %s: %w", path, err)
	}
	if k := st.Mode & unix.S_IFMT; k != unix.S_IFREG {
		return st, fmt.Errorf("open log file %s: %s, not a regular file", path, fileKind(k))
	}
	if uid := uint32(os.Geteuid()); st.Uid != uid {
		return st, fmt.Errorf("open log file %s: owned by uid %d, not by this user (uid %d)", path, st.Uid, uid)
	}
	if st.Nlink > 1 {
		return st, fmt.Errorf("open log file %s: it has %d hard links; a log file has one", path, st.Nlink)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return st, fmt.Errorf("open log file %s: %w", path, err)
	}
	if name, ok := kernelFS[uint32(fs.Type)]; ok {
		return st, fmt.Errorf("open log file %s: on %s, a kernel interface, not storage", path, name)
	}
	return st, nil
}

// finishOpen checks the opened file, sets the mode of a new one, and
// makes writes blocking again (O_NONBLOCK only guarded the open).
func finishOpen(f *os.File, path string, created bool) error {
	fd := int(f.Fd())
	if _, err := checkLogFile(fd, path); err != nil {
		return err
	}
	if created {
		if err := unix.Fchmod(fd, LogFileMode); err != nil {
			return fmt.Errorf("open log file %s: set mode: %w", path, err)
		}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return fmt.Errorf("open log file %s: %w", path, err)
	}
	return nil
}

// openError explains the errors O_NOFOLLOW and O_NONBLOCK give.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("open log file %s: a symbolic link; give the file it points at", path)
	case errors.Is(err, unix.ENXIO):
		return fmt.Errorf("open log file %s: a FIFO or socket, not a regular file", path)
	}
	return fmt.Errorf("open log file %s: %w", path, err)
}

func fileKind(k uint32) string {
	switch k {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symbolic link"
	}
	return fmt.Sprintf("a file of type %#o", k)
}
