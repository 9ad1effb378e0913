// Package kill destroys TCP connections on demand, in any state,
// ESTABLISHED included: the sockets a Filter picks (peer addresses, ports,
// states, owning process) in chosen network namespaces, each destroyed by
// its cookie.
//
// The candidates come from a sock_diag dump of each namespace, filtered
// in the kernel (the state mask and INET_DIAG_REQ_BYTECODE; hck-bpf's
// tracker holds only sockets in closing states), and are matched again in
// userspace. Their owners come from the sockfile program and the owners
// iterator (owners.go). A socket on port 22, or held by a protected
// process (policy.ProtectedProcesses), is refused unless Force. The
// destroyer (internal/destroy) destroys each socket only if the kernel
// still has it, by tuple and cookie, in the state the dump saw.
package kill

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

const (
	// sizeof(struct nlmsghdr)
	nlmsgHdrLen = 16
	// dumpTimeout bounds the wait for each part of a dump's answer.
	dumpTimeout = 5 * time.Second
	// sshPort is refused without Force: the way back into the host.
	sshPort = 22
)

// Options for one kill.
type Options struct {
	Filter Filter
	// DryRun looks every socket up and destroys nothing.
	DryRun bool
	// Force destroys what is otherwise refused: port 22, protected
	// processes, sockets whose owner could not be found.
	Force bool
	// PinDir is the pin dir (on bpffs, existing) under whose
	// bpf.KillPinDir the owner lookup is pinned.
	PinDir string
	// Kernel is what SOCK_DESTROY can be trusted with (kernel.Running);
	// nil: everything.
	Kernel *kernel.Capabilities
	// Processes, when set (--kill-process), signals the owners of the
	// sockets a live kill failed to destroy (as a sweep does: see
	// sweep.Processes). A protected process is never signalled, Force
	// or not.
	Processes sweep.Processes
}

// Outcome is what became of one socket.
type Outcome uint8

// Outcomes.
const (
	Planned     Outcome = iota // dry run: the kernel has it as dumped; live would destroy it
	Destroyed                  // SOCK_DESTROY succeeded
	Gone                       // the kernel no longer has it
	Changed                    // the kernel has it in a state the filter does not pick
	Failed                     // Item.Err says why
	Refused                    // Item.Refusal says why; Force destroys it
	Unsupported                // the running kernel cannot destroy it reliably
)

func (o Outcome) String() string {
	return [...]string{"planned", "destroyed", "gone", "changed", "failed", "refused", "unsupported"}[o]
}

// Refusal is why a socket was not destroyed without Force.
type Refusal uint8

// Refusals, in the order they are checked.
const (
	NotRefused Refusal = iota
	RefusedPort
	RefusedProtected
	RefusedUnknownOwner
)

// Refusals lists every refusal, for summaries.
var Refusals = []Refusal{RefusedPort, RefusedProtected, RefusedUnknownOwner}

func (r Refusal) String() string {
	return [...]string{"not refused", "port 22", "protected process", "owner unknown"}[r]
}

// Item is one socket the filter picked and what the kill did with it.
type Item struct {
	Conn conn.Conn // Owner: the owner named in output (the refusing or matching one), nil when none
	// Owners are every process holding the socket.
	Owners []conn.Owner
	Target *Target
	Outcome
	// Refusal and Detail: why it was refused (Outcome Refused), or, with
	// Force, what was overridden (Forced).
	Refusal Refusal
	Detail  string
	Forced  bool
	Err     error
	// KernelState is the state the kernel reported when it was not the
	// dumped one (Changed, or a socket destroyed in its new state).
	KernelState conn.State
	// Processes: what --kill-process did with its owners, when its
	// destroy failed (each process once, on the first of its sockets).
	Processes []sweep.ProcessResult
}

// Report is what one kill saw and did.
type Report struct {
	Items       []Item
	Matched     int // sockets the filter picked
	Planned     int
	Destroyed   int
	Gone        int
	Changed     int
	Failed      int
	Unsupported int
	Refused     map[Refusal]int
	// ProcessesTerminated and ProcessesKilled count the owners
	// --kill-process ended with SIGTERM and with SIGKILL.
	ProcessesTerminated, ProcessesKilled int
	// NSErrors are the namespaces that could not be dumped; their sockets
	// are not in Items.
	NSErrors []NSError
	// OwnerErr: owners could not be looked up. Without Force, no socket a
	// process may hold was destroyed.
	OwnerErr error
	Took     time.Duration
	Steps    Steps
}

// Steps are the parts of Took: the dumps, the owner lookup, and the
// lookups and destroys.
type Steps struct {
	Dump, Owners, Act time.Duration
}

// NSError is a namespace a kill could not work in.
type NSError struct {
	Target *Target
	Err    error
}

// Run kills what opts.Filter picks in targets.
func Run(targets []Target, opts Options) (Report, error) {
	rep := Report{Refused: map[Refusal]int{}}
	f := &opts.Filter
	if !f.HasConnFilter() {
		return rep, errors.New("kill: no connection filter: refusing to destroy every connection")
	}
	for i := range targets {
		targets[i].named = len(targets) > 1 || !targets[i].Own
	}
	start := time.Now()
	step := start
	lap := func(d *time.Duration) {
		t := time.Now()
		*d += t.Sub(step)
		step = t
	}

	// The owner lookup opens (and takes its lock) while the namespaces
	// are dumped: the dumps are the kernel's work, on another CPU.
	opening := make(chan openResult, 1)
	go func() {
		o, err := openOwners(opts.PinDir)
		opening <- openResult{o, err}
	}()

	// 1. The candidates of each namespace.
	prog, ok := f.program()
	if !ok {
		prog = nil // too large for the kernel's filter: matched here only
	}
	found := make([][]*Socket, len(targets))
	for i := range targets {
		socks, err := dumpTarget(&targets[i], f.states(), prog, f)
		if err != nil {
			rep.NSErrors = append(rep.NSErrors, NSError{&targets[i], err})
			continue
		}
		found[i] = socks
	}
	lap(&rep.Steps.Dump)

	// 2. Their owners: needed to refuse protected processes, to match
	// --process, and said in every line.
	op := <-opening
	if op.o != nil {
		defer op.o.close() // waits for its maps to be cleared
	}
	owners, files, ownerErr := lookupOwners(op, targets, found)
	rep.OwnerErr = ownerErr
	lap(&rep.Steps.Owners)

	// 3. Decide.
	todo := make([][]int, len(targets)) // per target, indexes into rep.Items
	for i := range targets {
		for _, s := range found[i] {
			it, keep := decide(s, &targets[i], owners[s.Cookie], files, ownerErr, &opts)
			if !keep {
				continue
			}
			rep.Items = append(rep.Items, it)
			if it.Outcome == Planned {
				todo[i] = append(todo[i], len(rep.Items)-1)
			}
		}
	}

	// 4. Destroy (or, in a dry run, look up), from inside each namespace;
	// with --kill-process, the owners are held first (a pidfd each: a pid
	// reused by the time one is signalled is never hit).
	held := holdOwners(rep.Items, todo, &opts)
	defer func() {
		for _, p := range held {
			p.Release()
		}
	}()
	for i := range targets {
		if len(todo[i]) == 0 {
			continue
		}
		if err := act(&targets[i], rep.Items, todo[i], &opts); err != nil {
			for _, k := range todo[i] {
				rep.Items[k].Outcome, rep.Items[k].Err = Failed, err
			}
		}
	}
	terminate(&rep, held, opts.Processes)
	lap(&rep.Steps.Act)

	for _, it := range rep.Items {
		rep.Matched++
		switch it.Outcome {
		case Planned:
			rep.Planned++
		case Destroyed:
			rep.Destroyed++
		case Gone:
			rep.Gone++
		case Changed:
			rep.Changed++
		case Failed:
			rep.Failed++
		case Refused:
			rep.Refused[it.Refusal]++
		case Unsupported:
			rep.Unsupported++
		}
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// dumpTarget lists the sockets of t that f picks (but for its processes).
func dumpTarget(t *Target, states uint32, prog []byte, f *Filter) ([]*Socket, error) {
	d, err := openDumper(t.NS)
	if err != nil {
		return nil, err
	}
	defer d.close()
	var out []*Socket
	err = d.dump(states, prog, t.NS.Inode(), func(s *Socket) {
		if f.Match(&s.Conn) {
			c := *s
			out = append(out, &c)
		}
	})
	return out, err
}

// openResult is the owner lookup, opened, or why not.
type openResult struct {
	o   *ownerLookup
	err error
}

// lookupOwners finds the owners of every socket found that a process may
// hold (its inode is set: it belongs to a struct socket), and the open
// files the sockfile program found for them.
func lookupOwners(op openResult, targets []Target, found [][]*Socket) (map[uint64][]conn.Owner, map[uint64]fileOf, error) {
	held := false
	for _, socks := range found {
		for _, s := range socks {
			held = held || s.Inode != 0
		}
	}
	if !held {
		return nil, nil, nil
	}
	if op.err != nil {
		return nil, nil, fmt.Errorf("look up owners: %w", op.err)
	}
	o := op.o
	files := map[uint64]fileOf{}
	var ask []*conn.Conn
	for i := range targets {
		var held []*Socket
		for _, s := range found[i] {
			if s.Inode != 0 {
				held = append(held, s)
			}
		}
		if len(held) == 0 {
			continue
		}
		got, err := o.findFiles(targets[i].NS, held)
		if err != nil {
			return nil, nil, fmt.Errorf("look up owners: %w", err)
		}
		for _, s := range held {
			fo := got[s.Cookie]
			files[s.Cookie] = fo
			if fo.found && fo.file != 0 {
				c := s.Conn
				c.File = fo.file
				ask = append(ask, &c)
			}
		}
	}
	owners, err := o.owners(ask)
	if err != nil {
		return nil, nil, fmt.Errorf("look up owners: %w", err)
	}
	return owners, files, nil
}

// decide says what to do with one socket the filter picked: keep false
// when its process does not match; otherwise an Item, Planned when it is
// to be destroyed (or looked up, in a dry run).
func decide(s *Socket, t *Target, owners []conn.Owner, files map[uint64]fileOf, ownerErr error, opts *Options) (Item, bool) {
	it := Item{Conn: s.Conn, Owners: owners, Target: t, Outcome: Planned}
	f := &opts.Filter
	if len(owners) > 0 {
		it.Conn.Owner = &owners[0]
	}
	if len(f.Processes) > 0 {
		if ownerErr != nil {
			return it, false // no owner known: matches no name
		}
		o, ok := f.MatchProcess(owners)
		if !ok {
			return it, false
		}
		it.Conn.Owner = &o
	}
	held := s.Inode != 0 // a struct socket holds it: a process may
	// Why it would be refused, whether or not Force overrides it.
	lp, rp := s.Local.Port(), s.Remote.Port()
	switch {
	case lp == sshPort || rp == sshPort:
		it.Refusal = RefusedPort
		end := "local"
		if lp != sshPort {
			end = "remote"
		}
		it.Detail = fmt.Sprintf("%s port %d", end, sshPort)
	case protectedOwner(owners) != nil:
		o := protectedOwner(owners)
		it.Conn.Owner = o
		it.Refusal, it.Detail = RefusedProtected, fmt.Sprintf("process %s (pid %d) is protected", showComm(o.Comm), o.PID)
	case held && len(owners) == 0 && ownerErr == nil && files[s.Cookie].file != 0:
		it.Refusal, it.Detail = RefusedUnknownOwner, "its open file is in no process's file table (passed over a unix socket, or registered with io_uring): the owner is unknown"
	case held && len(owners) == 0 && ownerErr == nil && !files[s.Cookie].found:
		it.Refusal, it.Detail = RefusedUnknownOwner, "it could not be looked up by its tuple: the owner is unknown"
	}
	switch {
	case it.Refusal != NotRefused && opts.Force:
		it.Forced = true
	case it.Refusal != NotRefused:
		it.Outcome = Refused
		return it, true
	case held && ownerErr != nil && !opts.Force:
		// Without owners a protected process could be hit.
		it.Outcome, it.Err = Failed, ownerErr
		return it, true
	}
	// A socket no struct socket holds may be an orphan (SOCK_DEAD), which
	// SOCK_DESTROY cannot be trusted with before Linux 6.11.
	if opts.Kernel != nil && !opts.Kernel.Destroys(s.Timewait, held) {
		it.Outcome = Unsupported
	}
	return it, true
}

// showComm is a process name as a detail shows it: quoted unless plain (a
// comm is whatever the process set, newlines included).
func showComm(comm string) string {
	if strings.ContainsFunc(comm, func(r rune) bool { return r == ' ' || !strconv.IsPrint(r) }) {
		return strconv.Quote(comm)
	}
	return comm
}

// protectedOwner is the first protected process among owners, or nil.
func protectedOwner(owners []conn.Owner) *conn.Owner {
	for i := range owners {
		if _, ok := policy.ProtectedBy(owners[i].Comm); ok {
			return &owners[i]
		}
	}
	return nil
}

// act destroys (or looks up) items[todo[...]] from inside t's namespace.
// A socket found in another state the filter also picks (ESTABLISHED gone
// to CLOSE_WAIT meanwhile) is tried once more in that state.
func act(t *Target, items []Item, todo []int, opts *Options) error {
	d, err := destroy.NewAt(t.NS)
	if err != nil {
		return err
	}
	defer d.Close()
	run := d.Destroy
	if opts.DryRun {
		run = d.Check
	}
	for round := 0; round < 2 && len(todo) > 0; round++ {
		conns := make([]*conn.Conn, len(todo))
		for j, k := range todo {
			conns[j] = &items[k].Conn
		}
		var again []int
		for j, r := range run(conns) {
			it := &items[todo[j]]
			switch r.Outcome {
			case destroy.Destroyed:
				it.Outcome = Destroyed
			case destroy.Confirmed:
				it.Outcome = Planned
			case destroy.Gone:
				it.Outcome = Gone
			case destroy.Changed:
				it.Outcome, it.KernelState = Changed, r.State
				if round == 0 && opts.Filter.states()&(1<<r.State) != 0 {
					// Still a socket the filter picks: in its new state.
					it.Conn.State = r.State
					again = append(again, todo[j])
				}
			default:
				it.Outcome, it.Err = Failed, r.Err
			}
		}
		todo = again
	}
	return nil
}

// Named reports whether output names the item's namespace: the kill was
// of more than hck-bpf's own namespace alone.
func (it *Item) Named() bool { return it.Target != nil && it.Target.named }

// holdOwners takes hold of the owners of the sockets about to be
// destroyed, for --kill-process: every process once, never a protected
// one, nothing in a dry run.
func holdOwners(items []Item, todo [][]int, opts *Options) map[int]sweep.Process {
	if opts.Processes == nil || opts.DryRun {
		return nil
	}
	held := map[int]sweep.Process{}
	for _, ks := range todo {
		for _, k := range ks {
			for _, o := range items[k].Owners {
				if _, ok := held[o.PID]; ok {
					continue
				}
				if _, protected := policy.ProtectedBy(o.Comm); protected {
					continue
				}
				p, err := opts.Processes.Hold(o)
				if err != nil {
					continue // gone, or not the process read: never signalled
				}
				if _, protected := policy.ProtectedBy(p.Owner().Comm); protected {
					p.Release()
					continue
				}
				held[o.PID] = p
			}
		}
	}
	return held
}

// terminate signals the held owners of the sockets whose destroy failed
// (not gone, not changed, not refused), each process once, and records
// what became of each on the first of its failed sockets.
func terminate(rep *Report, held map[int]sweep.Process, procs sweep.Processes) {
	if len(held) == 0 {
		return
	}
	var ps []sweep.Process
	first := map[int]int{} // pid -> index of its first failed item
	for k := range rep.Items {
		if rep.Items[k].Outcome != Failed {
			continue
		}
		for _, o := range rep.Items[k].Owners {
			p, ok := held[o.PID]
			if _, done := first[o.PID]; !ok || done {
				continue
			}
			first[o.PID] = k
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return
	}
	for _, r := range procs.Terminate(ps) {
		k := first[r.Owner.PID]
		rep.Items[k].Processes = append(rep.Items[k].Processes, r)
		switch r.Outcome {
		case sweep.ProcessTerminated:
			rep.ProcessesTerminated++
		case sweep.ProcessKilled:
			rep.ProcessesKilled++
		}
	}
}
