package procs

import (
	"errors"
	"fmt"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// Sweep is --kill-process as a sweep asks it (sweep.Processes): Hold and
// Terminate with a grace period of Grace.
type Sweep struct {
	Grace time.Duration
}

// Hold is Hold as a sweep asks it: a process that has exited fails with
// sweep.ErrProcessGone.
func (s Sweep) Hold(o conn.Owner) (sweep.Process, error) {
	p, err := Hold(o)
	if err != nil {
		if errors.Is(err, ErrGone) {
			return nil, fmt.Errorf("%w: %w", sweep.ErrProcessGone, err)
		}
		return nil, err
	}
	return p, nil
}

// Terminate is Terminate over processes Hold gave.
func (s Sweep) Terminate(ps []sweep.Process) []sweep.ProcessResult {
	own := make([]*Process, len(ps))
	out := make([]sweep.ProcessResult, len(ps))
	for i, p := range ps {
		own[i] = p.(*Process)
	}
	for i, r := range Terminate(own, s.Grace) {
		out[i] = sweep.ProcessResult{Owner: own[i].Owner(), Err: r.Err, Grace: s.Grace,
			Outcome: map[Outcome]sweep.ProcessOutcome{Failed: sweep.ProcessFailed, Gone: sweep.ProcessGone,
				Terminated: sweep.ProcessTerminated, Killed: sweep.ProcessKilled}[r.Outcome]}
	}
	return out
}
