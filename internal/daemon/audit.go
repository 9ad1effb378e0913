package daemon

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// Audited wraps the service's destroyer so that its log is an audit trail
// a SIGKILL cannot empty. Before each batch of destroys it logs one line
// per socket it is about to destroy and flushes the log: the lines of the
// batch, and the fate lines of the batches before it (logged after each
// sweep, held by the buffered writer), are written before the kernel is
// asked. Between two batches the buffered writer keeps its speed.
//
// So a killed service leaves a line for every socket the kernel destroyed:
// its fate line, or for the batch in flight at the kill, its
// "Terminating:" line.
//
// multi: several namespaces are in scope, and each line names the
// socket's.
func Audited(k sweep.Killer, log zerolog.Logger, flush func(), multi bool) sweep.Killer {
	return &audited{k: k, log: log, flush: flush, multi: multi}
}

type audited struct {
	k     sweep.Killer
	log   zerolog.Logger
	flush func()
	multi bool
}

func (a *audited) Kill(cs []*conn.Conn) []error {
	for _, c := range cs {
		report.Intent(a.log, c, a.multi)
	}
	a.flush()
	return a.k.Kill(cs)
}

// AuditedProcesses wraps --kill-process the same way as Audited: before it
// signals, it logs one "Signalling:" line per process and flushes the log,
// so that a killed service leaves a line for every process it may have
// signalled.
func AuditedProcesses(p sweep.Processes, grace time.Duration, log zerolog.Logger, flush func()) sweep.Processes {
	return &auditedProcs{Processes: p, grace: grace, log: log, flush: flush}
}

type auditedProcs struct {
	sweep.Processes
	grace time.Duration
	log   zerolog.Logger
	flush func()
}

func (a *auditedProcs) Terminate(ps []sweep.Process) []sweep.ProcessResult {
	for _, p := range ps {
		o := p.Owner()
		report.Signalling(a.log, &o, a.grace.String())
	}
	a.flush()
	return a.Processes.Terminate(ps)
}
