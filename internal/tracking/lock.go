package tracking

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
)

// One service per pin dir: "hck-bpf run" holds an exclusive flock(2) on
// the pin dir for as long as it runs. The kernel drops the lock when the
// process dies, however it dies (SIGKILL included), so a lock is never
// stale. /proc/locks names the holder's pid.

// BusyError says that another process holds the pin dir's lock: a running
// service (or an unload stopping one).
type BusyError struct {
	Dir  string
	PID  int    // 0 when /proc/locks does not show it (another pid namespace)
	Comm string // the holder's process name, when known
}

func (e *BusyError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("pin dir %s is locked by another process (its pid is not visible here)", e.Dir)
	}
	if e.Comm != "" {
		return fmt.Sprintf("pin dir %s is locked by pid %d, %s", e.Dir, e.PID, e.Comm)
	}
	return fmt.Sprintf("pin dir %s is locked by pid %d", e.Dir, e.PID)
}

// pinLock is a held lock on a pin dir.
type pinLock struct{ fd int }

// lockPinDir takes the pin dir's lock without waiting: a *BusyError, naming
// the holder, when another process holds it.
func lockPinDir(dir string) (*pinLock, error) {
	l, err := tryLockPinDir(dir)
	if errors.Is(err, errLocked) {
		return nil, busy(dir)
	}
	return l, err
}

// errLocked: another process holds the pin dir's lock.
var errLocked = errors.New("pin dir locked by another process")

// tryLockPinDir is lockPinDir without naming the holder (errLocked): finding
// it reads /proc/locks, which took 7-10 ms on a busy host (Linux 6.18),
// most of a scan's time, for an answer only an error message needs.
func tryLockPinDir(dir string) (*pinLock, error) {
	for range 3 {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open pin dir %s: %w", dir, err)
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errLocked
			}
			return nil, fmt.Errorf("lock pin dir %s: %w", dir, err)
		}
		// An unload may have removed the directory between the open and
		// the lock: a lock on a directory no path leads to guards nothing.
		var held, now unix.Stat_t
		if unix.Fstat(fd, &held) == nil && unix.Stat(dir, &now) == nil && held.Dev == now.Dev && held.Ino == now.Ino {
			return &pinLock{fd: fd}, nil
		}
		unix.Close(fd) // replaced meanwhile: lock the new one
	}
	return nil, fmt.Errorf("lock pin dir %s: it keeps being removed and made again", dir)
}

// release drops the lock.
func (l *pinLock) release() error {
	if l == nil || l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	return err
}

// busy describes the holder of dir's lock.
func busy(dir string) error {
	e := &BusyError{Dir: dir}
	if pid, err := lockHolder(dir); err == nil {
		e.PID = pid
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
			e.Comm = strings.TrimSpace(string(b))
		}
	}
	return e
}

// ServicePID is the pid of the process holding dir's lock (a running
// service), read from /proc/locks without touching the lock: 0 when none
// is held, or its holder is not visible from this pid namespace.
func ServicePID(dir string) int {
	pid, _ := lockHolder(dir)
	return pid
}

// lockHolder finds the flock on dir in /proc/locks, whose lines read
//
//	1: FLOCK  ADVISORY  WRITE 13074 00:27:260137 0 EOF
//
// (pid, then major:minor:inode of the locked file, major and minor in hex).
// A waiting lock ("1: -> FLOCK ...") is not the holder.
func lockHolder(dir string) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", dir, err)
	}
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0, fmt.Errorf("read lock holders: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != id {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || pid <= 0 {
			continue
		}
		return pid, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read lock holders: %w", err)
	}
	return 0, fmt.Errorf("no lock on %s (%s) in /proc/locks", dir, id)
}

// stopHolder sends SIGTERM to the process holding dir's lock and waits up
// to timeout for the lock, which it then holds. It returns the pid stopped.
func stopHolder(dir string, be *BusyError, timeout time.Duration) (*pinLock, int, error) {
	if be.PID == 0 {
		return nil, 0, fmt.Errorf("stop the service: %w", be)
	}
	if err := syscall.Kill(be.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return nil, 0, fmt.Errorf("stop the service, pid %d: %w", be.PID, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		l, err := tryLockPinDir(dir)
		if err == nil {
			return l, be.PID, nil
		}
		if !errors.Is(err, errLocked) {
			return nil, 0, err
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("stop the service, pid %d: still running %v after SIGTERM", be.PID, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quietOrphanEvents switches the tracker's event notifications off when
// they are on but no service holds the pin dir: a service killed with
// SIGKILL could not switch them off, and nobody reads them now. The lock
// is held meanwhile, so a service starting at the same moment, which turns
// them on only once it holds the lock, is never undone.
func (t *Tracker) quietOrphanEvents() {
	var cfg bpf.TrackerHckCfg
	if t.objs.HckConfig == nil || t.objs.HckConfig.Lookup(uint32(0), &cfg) != nil || cfg.Notify == 0 {
		return
	}
	l, err := tryLockPinDir(t.pinDir)
	if err != nil {
		return
	}
	defer l.release()
	_ = t.setNotify(bpf.TrackerHckCfg{})
}
