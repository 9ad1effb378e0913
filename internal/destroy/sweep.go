package destroy

import (
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// Lookup is Check as a sweep asks it (sweep.Lookup): one error per
// connection, nil when the kernel has the socket in c.State,
// sweep.ErrGone, a *sweep.StateError carrying the kernel's state, or why
// the lookup failed. It destroys nothing.
func (d *Destroyer) Lookup(conns []*conn.Conn) []error { return errorsOf(conns, d.Check(conns)) }

// Kill is Destroy as a sweep asks it (sweep.Killer): one error per
// connection, nil when destroyed, sweep.ErrGone, a *sweep.StateError, or
// why it failed.
func (d *Destroyer) Kill(conns []*conn.Conn) []error { return errorsOf(conns, d.Destroy(conns)) }

func errorsOf(conns []*conn.Conn, res []Result) []error {
	errs := make([]error, len(res))
	for i, r := range res {
		errs[i] = r.error(conns[i])
	}
	return errs
}

// error is r as one error for c: nil for Destroyed and Confirmed.
func (r Result) error(c *conn.Conn) error {
	switch r.Outcome {
	case Destroyed, Confirmed:
		return nil
	case Gone:
		return sweep.ErrGone
	case Changed:
		want := conn.State(0)
		if c != nil {
			want = c.State
		}
		return &sweep.StateError{Want: want, Have: r.State}
	}
	if r.Err != nil {
		return r.Err
	}
	return ErrNoAnswer
}
