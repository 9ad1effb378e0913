package sweep

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// failKiller destroys every socket but those it has an error for.
type failKiller struct {
	errs  map[uint64]error
	trail *[]string
}

func (k *failKiller) Kill(cs []*conn.Conn) []error {
	*k.trail = append(*k.trail, "kill")
	out := make([]error, len(cs))
	for i, c := range cs {
		out[i] = k.errs[c.Cookie]
	}
	return out
}

// fakeProcs holds every process but those it has an error for, reads
// some of them again with another cgroup, and ends each as told.
type fakeProcs struct {
	holdErr  map[int]error
	moved    map[int]string // pid -> cgroup as Hold reads it
	ends     map[int]ProcessOutcome
	trail    *[]string
	released []int
	signals  [][]int // pids of each Terminate call
}

type fakeProc struct {
	o conn.Owner
	f *fakeProcs
}

func (p *fakeProc) Owner() conn.Owner { return p.o }
func (p *fakeProc) Release()          { p.f.released = append(p.f.released, p.o.PID) }

func (f *fakeProcs) Hold(o conn.Owner) (Process, error) {
	*f.trail = append(*f.trail, fmt.Sprintf("hold %d", o.PID))
	if err := f.holdErr[o.PID]; err != nil {
		return nil, err
	}
	if cg, ok := f.moved[o.PID]; ok {
		o.Cgroup = cg
	}
	return &fakeProc{o: o, f: f}, nil
}

func (f *fakeProcs) Terminate(ps []Process) []ProcessResult {
	*f.trail = append(*f.trail, "terminate")
	var pids []int
	out := make([]ProcessResult, len(ps))
	for i, p := range ps {
		pids = append(pids, p.Owner().PID)
		out[i] = ProcessResult{Owner: p.Owner(), Outcome: f.ends[p.Owner().PID]}
	}
	f.signals = append(f.signals, pids)
	return out
}

func owned(cookie uint64, os ...conn.Owner) (conn.Conn, []conn.Owner) {
	return hung(cookie, conn.CloseWait, false), os
}

// TestKillProcess: --kill-process holds the owners before any destroy,
// and signals only the owners of sockets whose destroy failed (not gone,
// not changed, not destroyed), each process once, never one the policy
// spares as read again, never one that is gone; counted once each.
func TestKillProcess(t *testing.T) {
	app := conn.Owner{PID: 10, Comm: "app", Cgroup: "/ok"}
	worker := conn.Owner{PID: 11, Comm: "worker", Cgroup: "/ok"}
	mover := conn.Owner{PID: 15, Comm: "mover", Cgroup: "/ok"}
	ghost := conn.Owner{PID: 16, Comm: "ghost", Cgroup: "/ok"}
	eperm := errors.New("destroy: operation not permitted")
	src := &fakeSource{owners: map[uint64][]conn.Owner{}}
	add := func(c conn.Conn, os []conn.Owner) {
		src.conns = append(src.conns, c)
		if len(os) > 0 {
			src.owners[c.Cookie] = os
		}
	}
	add(owned(1, app))
	add(owned(2, worker, app)) // shared: both signalled, app once in all
	add(owned(3, conn.Owner{PID: 12, Comm: "gone", Cgroup: "/ok"}))
	add(owned(4, conn.Owner{PID: 13, Comm: "moved", Cgroup: "/ok"}))
	add(owned(5, conn.Owner{PID: 14, Comm: "fine", Cgroup: "/ok"}))
	add(orphaned(hung(6, conn.LastAck, false)), nil)
	add(owned(7, mover))
	add(owned(8, ghost))
	for i := range src.conns {
		src.conns[i].Entered += uint64(i) // oldest first: in cookie order
	}
	errs := map[uint64]error{1: eperm, 2: eperm, 3: ErrGone, 4: &StateError{Want: conn.CloseWait, Have: conn.Established},
		6: eperm, 7: eperm, 8: eperm}
	var trail []string
	procs := &fakeProcs{
		holdErr: map[int]error{16: fmt.Errorf("%w: pid 16", ErrProcessGone)},
		moved:   map[int]string{15: "/excluded/now"},
		ends:    map[int]ProcessOutcome{10: ProcessTerminated, 11: ProcessKilled},
		trail:   &trail,
	}
	pol := policy.Default()
	pol.ExcludeCgroups = []string{"/excluded"}
	rep, err := Run(src, Live(&failKiller{errs: errs, trail: &trail}), Options{Policy: &pol, Processes: procs}, 1000*sec)
	if err != nil {
		t.Fatal(err)
	}
	// Every owner of a socket about to be destroyed held, once, before
	// the destroys; signals after.
	want := []string{"hold 10", "hold 11", "hold 12", "hold 13", "hold 14", "hold 15", "hold 16", "kill", "terminate"}
	if !slices.Equal(trail, want) {
		t.Errorf("calls %q, want %q", trail, want)
	}
	if len(procs.signals) != 1 || !slices.Equal(procs.signals[0], []int{10, 11}) {
		t.Errorf("signalled %v, want [[10 11]]: the owners of the failed sockets, each once", procs.signals)
	}
	slices.Sort(procs.released)
	if !slices.Equal(procs.released, []int{10, 11, 12, 13, 14, 15}) {
		t.Errorf("released %v, want every process held", procs.released)
	}
	if rep.ProcessesTerminated != 1 || rep.ProcessesKilled != 1 || rep.Failed != 5 {
		t.Errorf("report: %d terminated, %d killed, %d failed; want 1, 1, 5", rep.ProcessesTerminated, rep.ProcessesKilled, rep.Failed)
	}
	got := map[uint64]string{}
	for _, it := range rep.Items {
		var s []string
		for _, p := range it.Processes {
			s = append(s, fmt.Sprintf("%d %s", p.Owner.PID, p.Outcome))
		}
		got[it.Conn.Cookie] = strings.Join(s, ", ")
		if it.Conn.Cookie == 7 && (len(it.Processes) != 1 || !strings.Contains(fmt.Sprint(it.Processes[0].Err), "excluded by /excluded")) {
			t.Errorf("mover's result %+v, want spared by its cgroup as read again", it.Processes)
		}
	}
	wantGot := map[uint64]string{1: "10 terminated", 2: "11 killed, 10 terminated", 3: "", 4: "", 5: "", 6: "", 7: "15 spared", 8: "16 gone"}
	for c, w := range wantGot {
		if got[c] != w {
			t.Errorf("socket %d: processes %q, want %q", c, got[c], w)
		}
	}

	// A dry run holds and signals nothing.
	trail, procs.signals = nil, nil
	if _, err := Run(src, DryRun(&fakeKiller{}), Options{Policy: &pol, Processes: procs}, 1000*sec); err != nil {
		t.Fatal(err)
	}
	if len(trail) != 0 {
		t.Errorf("dry run: calls %q, want none", trail)
	}
	// Without owners (they could not be read), nothing is destroyed, and
	// no process signalled.
	trail = nil
	src.ownerErr = errors.New("owners: boom")
	if _, err := Run(src, Live(&failKiller{errs: errs, trail: &trail}), Options{Policy: &pol, Processes: procs}, 1000*sec); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(trail, func(s string) bool { return s != "kill" }) {
		t.Errorf("owners unknown: calls %q, want no hold and no signal", trail)
	}
}
