// Package procs signals processes the way --kill-process does: the
// hung_connection_killer scripts' last resort (SIGTERM, then SIGKILL) for
// a socket the kernel could not destroy, made safe against pid reuse.
//
// A process is held by a pidfd (pidfd_open, Linux 5.3) from the moment it
// is chosen; every signal goes through that pidfd (pidfd_send_signal), so
// a process that exits and whose pid is taken by another is never hit:
// the pidfd then answers ESRCH. Hold also reads the process's comm again
// and refuses one whose comm is not the one the caller saw, hck-bpf
// itself, and pid 1. Which processes may be signalled at all (protected,
// excluded) is the caller's policy.
package procs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/cgroup"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// DefaultGrace is --kill-grace's default: how long a process is given to
// exit after SIGTERM before SIGKILL, the scripts' wait.
const DefaultGrace = 5 * time.Second

// KillWait is how long Terminate waits for a process to exit after
// SIGKILL: one in uninterruptible sleep dies only when it wakes.
const KillWait = 2 * time.Second

var (
	// ErrGone: the process has exited.
	ErrGone = errors.New("process already exited")
	// ErrSelf refuses to signal hck-bpf itself.
	ErrSelf = errors.New("refusing to signal hck-bpf itself")
	// ErrInit refuses to signal pid 1 (and pids below it).
	ErrInit = errors.New("refusing to signal pid 1")
)

// CommError: the process now has another comm than the one the caller saw
// (it exec'd something else, or renamed itself).
type CommError struct {
	PID       int
	Want, Has string
}

func (e *CommError) Error() string {
	return fmt.Sprintf("process %d is now %q, not %q: refusing to signal it", e.PID, e.Has, e.Want)
}

// Process is a process held by a pidfd.
type Process struct {
	owner conn.Owner // as Hold read it
	fd    int        // the pidfd; -1 once released
}

// Hold takes hold of process o.PID with a pidfd and checks it is the
// process o names: its comm (/proc/PID/comm) is o.Comm. It reads its
// cgroup again too (Owner). The pidfd is opened before anything is read,
// and the process is checked alive through it after: what was read is
// that process's.
func Hold(o conn.Owner) (*Process, error) {
	switch {
	case o.PID <= 1:
		return nil, fmt.Errorf("hold process %d: %w", o.PID, ErrInit)
	case o.PID == os.Getpid():
		return nil, fmt.Errorf("hold process %d: %w", o.PID, ErrSelf)
	}
	fd, err := unix.PidfdOpen(o.PID, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("hold process %d: %w", o.PID, ErrGone)
		}
		return nil, fmt.Errorf("hold process %d: pidfd_open: %w", o.PID, err)
	}
	p := &Process{owner: o, fd: fd}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(o.PID) + "/comm")
	if err != nil {
		p.Release()
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("hold process %d: %w", o.PID, ErrGone)
		}
		return nil, fmt.Errorf("hold process %d: read comm: %w", o.PID, err)
	}
	info, _ := cgroup.Read(o.PID)
	// Alive now through the pidfd: alive while comm and cgroup were read,
	// so they are this process's (a pid is not reused while it lives).
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		p.Release()
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("hold process %d: %w", o.PID, ErrGone)
		}
		return nil, fmt.Errorf("hold process %d: pidfd_send_signal: %w", o.PID, err)
	}
	has := strings.TrimSuffix(string(comm), "\n")
	if has != strings.TrimRight(o.Comm, "\x00") {
		p.Release()
		return nil, &CommError{PID: o.PID, Want: o.Comm, Has: has}
	}
	p.owner.Comm = has
	p.owner.Cgroup, p.owner.ContainerID, p.owner.PodUID = info.Path, info.ContainerID, info.PodUID
	return p, nil
}

// Owner is the process as Hold read it: pid, comm and cgroup.
func (p *Process) Owner() conn.Owner { return p.owner }

// Release closes the pidfd.
func (p *Process) Release() {
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

// Outcome is what became of one process Terminate signalled.
type Outcome uint8

const (
	// Failed: the signal was refused (Result.Err).
	Failed Outcome = iota
	// Gone: it had exited before SIGTERM.
	Gone
	// Terminated: it exited within the grace period after SIGTERM.
	Terminated
	// Killed: still running after the grace period, it was sent SIGKILL;
	// Result.Err is set when it had still not exited KillWait later.
	Killed
)

func (o Outcome) String() string {
	switch o {
	case Failed:
		return "failed"
	case Gone:
		return "gone"
	case Terminated:
		return "terminated"
	case Killed:
		return "killed"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Result is what Terminate did with one process.
type Result struct {
	Outcome Outcome
	Err     error
}

// Terminate sends SIGTERM to every process, waits up to grace for them to
// exit (all at once: one grace period for the lot), sends SIGKILL to
// those still running and waits up to KillWait for them. One Result per
// process, in order. It releases nothing.
func Terminate(ps []*Process, grace time.Duration) []Result {
	res := make([]Result, len(ps))
	var wait []int // indexes of the processes signalled, not yet exited
	for i, p := range ps {
		switch err := p.signal(unix.SIGTERM); {
		case errors.Is(err, ErrGone):
			res[i] = Result{Outcome: Gone}
		case err != nil:
			res[i] = Result{Outcome: Failed, Err: err}
		default:
			wait = append(wait, i)
		}
	}
	left := waitExit(ps, wait, grace)
	for _, i := range wait {
		if !left[i] {
			res[i] = Result{Outcome: Terminated}
		}
	}
	var killed []int
	for _, i := range wait {
		if !left[i] {
			continue
		}
		switch err := ps[i].signal(unix.SIGKILL); {
		case errors.Is(err, ErrGone):
			res[i] = Result{Outcome: Terminated} // it exited just then
		case err != nil:
			res[i] = Result{Outcome: Failed, Err: err}
		default:
			res[i] = Result{Outcome: Killed}
			killed = append(killed, i)
		}
	}
	for i := range waitExit(ps, killed, KillWait) {
		res[i].Err = fmt.Errorf("process %d still running %s after SIGKILL", ps[i].owner.PID, KillWait)
	}
	return res
}

// signal sends sig through the pidfd.
func (p *Process) signal(sig unix.Signal) error {
	if p.fd < 0 {
		return fmt.Errorf("signal process %d: released", p.owner.PID)
	}
	for {
		err := unix.PidfdSendSignal(p.fd, sig, nil, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ESRCH):
			return fmt.Errorf("signal process %d: %w", p.owner.PID, ErrGone)
		}
		return fmt.Errorf("send %s to process %d: %w", unix.SignalName(sig), p.owner.PID, err)
	}
}

// waitExit waits up to d for the processes ps[which] to exit (a pidfd
// becomes readable when its process exits) and returns those still
// running.
func waitExit(ps []*Process, which []int, d time.Duration) map[int]bool {
	left := make(map[int]bool, len(which))
	for _, i := range which {
		left[i] = true
	}
	deadline := time.Now().Add(d)
	for len(left) > 0 {
		fds := make([]unix.PollFd, 0, len(left))
		idx := make([]int, 0, len(left))
		for i := range left {
			fds = append(fds, unix.PollFd{Fd: int32(ps[i].fd), Events: unix.POLLIN})
			idx = append(idx, i)
		}
		ms := time.Until(deadline).Milliseconds()
		if ms <= 0 {
			ms = 0
		}
		n, err := unix.Poll(fds, int(ms))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return left
		}
		bad := false
		for k, f := range fds {
			switch {
			case f.Revents&unix.POLLNVAL != 0:
				bad = true // not a pidfd any more: nothing to wait for
			case f.Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0:
				delete(left, idx[k])
			}
		}
		if bad || n == 0 && ms == 0 {
			return left
		}
	}
	return left
}
