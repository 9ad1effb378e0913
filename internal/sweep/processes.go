package sweep

import (
	"errors"
	"fmt"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// Processes is --kill-process, the scripts' last resort for a hung socket
// the kernel could not destroy: its owners are sent SIGTERM, then SIGKILL
// after a grace period. A sweep holds the owners of the sockets it is
// about to destroy as it decides (Hold), and signals, after the destroys,
// only the owners of sockets whose destroy failed with something other
// than "already gone" (Failed); never in a dry run, never a process the
// policy spares (policy.Policy.Spares, asked again of the process as
// Hold read it).
type Processes interface {
	// Hold takes hold of process o so that a pid reused later is never
	// signalled (a pidfd), and reads it again: the Process's Owner. It fails
	// when o is no longer that process (gone, another comm) or may not be
	// signalled at all (hck-bpf itself, pid 1).
	Hold(o conn.Owner) (Process, error)
	// Terminate sends SIGTERM to each process, SIGKILL to those still
	// running after the grace period, and says what became of each, in
	// order. It releases nothing.
	Terminate(ps []Process) []ProcessResult
}

// Process is a process a sweep has taken hold of.
type Process interface {
	// Owner is the process as Hold read it (comm, cgroup).
	Owner() conn.Owner
	Release()
}

// ProcessOutcome is what --kill-process did with one owner.
type ProcessOutcome uint8

// What became of an owner of a socket that could not be destroyed.
const (
	// ProcessSpared: not signalled, ProcessResult.Err says why (protected,
	// excluded, another process than the owner read, hck-bpf itself).
	ProcessSpared ProcessOutcome = iota
	// ProcessGone: it had exited before it was signalled.
	ProcessGone
	// ProcessTerminated: it exited within the grace period after SIGTERM.
	ProcessTerminated
	// ProcessKilled: still running after the grace period, it was sent
	// SIGKILL (ProcessResult.Err set when it had still not exited a while
	// after).
	ProcessKilled
	// ProcessFailed: the signal was refused (ProcessResult.Err).
	ProcessFailed
)

func (o ProcessOutcome) String() string {
	switch o {
	case ProcessSpared:
		return "spared"
	case ProcessGone:
		return "gone"
	case ProcessTerminated:
		return "terminated"
	case ProcessKilled:
		return "killed"
	case ProcessFailed:
		return "failed"
	}
	return fmt.Sprintf("process_outcome(%d)", uint8(o))
}

// ProcessResult is what --kill-process did with one owner of a socket.
type ProcessResult struct {
	Owner   conn.Owner
	Outcome ProcessOutcome
	Err     error
	// Grace is how long it was given to exit after SIGTERM.
	Grace time.Duration
}

// hold is one process held at decision time, or why it could not be.
type hold struct {
	h   Process
	err error
	why ProcessOutcome // ProcessSpared or ProcessGone, when err is set
}

// holdOwners takes hold of the owners of the sockets about to be
// destroyed, once per process, before any destroy: a process that
// exits and whose pid is reused meanwhile is never signalled.
func holdOwners(ps Processes, opts *Options, kill []*Item) map[int]*hold {
	held := map[int]*hold{}
	for _, it := range kill {
		for _, o := range it.owners {
			if _, ok := held[o.PID]; ok {
				continue
			}
			h, err := ps.Hold(o)
			if err != nil {
				held[o.PID] = &hold{err: err, why: heldWhy(err)}
				continue
			}
			// The policy again, on the process as read now.
			now := h.Owner()
			if r, d := opts.Policy.Spares(&now); r != policy.NotSkipped {
				h.Release()
				held[o.PID] = &hold{err: errors.New(d), why: ProcessSpared}
				continue
			}
			held[o.PID] = &hold{h: h}
		}
	}
	return held
}

// ErrProcessGone is what a Processes' Hold wraps when the process has
// exited: reported as ProcessGone, not as spared.
var ErrProcessGone = errors.New("process already exited")

func heldWhy(err error) ProcessOutcome {
	if errors.Is(err, ErrProcessGone) {
		return ProcessGone
	}
	return ProcessSpared
}

// terminate signals the owners of the items whose destroy failed, each
// process once, and records what became of them.
func (r *Report) terminate(ps Processes, kill []*Item, held map[int]*hold) {
	var signal []Process
	at := map[int]int{} // pid -> index in signal
	for _, it := range kill {
		if it.Outcome != Failed {
			continue
		}
		for _, o := range it.owners {
			if h := held[o.PID]; h != nil && h.err == nil {
				if _, ok := at[o.PID]; !ok {
					at[o.PID] = len(signal)
					signal = append(signal, h.h)
				}
			}
		}
	}
	var res []ProcessResult
	if len(signal) > 0 {
		res = ps.Terminate(signal)
	}
	counted := map[int]bool{}
	for _, it := range kill {
		if it.Outcome != Failed {
			continue
		}
		for _, o := range it.owners {
			h := held[o.PID]
			var pr ProcessResult
			switch {
			case h == nil:
				continue
			case h.err != nil:
				pr = ProcessResult{Owner: o, Outcome: h.why, Err: h.err}
			default:
				pr = res[at[o.PID]]
			}
			it.Processes = append(it.Processes, pr)
			if counted[o.PID] {
				continue
			}
			counted[o.PID] = true
			switch pr.Outcome {
			case ProcessTerminated:
				r.ProcessesTerminated++
			case ProcessKilled:
				r.ProcessesKilled++
			}
		}
	}
}

func releaseAll(held map[int]*hold) {
	for _, h := range held {
		if h.h != nil {
			h.h.Release()
		}
	}
}
