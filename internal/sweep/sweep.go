// Package sweep is one pass over the tracked sockets: decide which overstayed
// their threshold, learn their owners, and destroy them (or, in a dry run,
// say exactly what would be destroyed).
package sweep

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// Source is where the tracked sockets come from (the kernel tracker).
type Source interface {
	// Reconcile brings the tracked set in line with the sockets of the
	// network namespaces in, each walked from inside itself; none: the
	// calling thread's namespace (timewait sockets, sockets older than the
	// tracker, entries whose socket died without an event). A namespace
	// that is gone is no error: its sockets went with it.
	Reconcile(in []uint32) (WalkStats, error)
	// Walk calls fn for every tracked socket of network namespace netns
	// (0: all); *c is only valid during the call.
	Walk(netns uint32, fn func(c *conn.Conn)) error
	// Owners finds the processes holding the given sockets.
	Owners(cs []*conn.Conn) (map[uint64][]conn.Owner, error)
	Forget(cookie uint64) error
}

// WalkStats says what one walk of the namespace's sockets (Reconcile)
// changed in the tracked set.
type WalkStats struct {
	Seen     int // sockets in closing states in the namespace
	Seeded   int // sockets the tracker had never seen (older than it, or lost to overflow)
	Updated  int // timewait sockets whose state or entry time became known
	Removed  int // entries whose socket is gone without an event
	Pruned   int // entries of network namespaces that no longer exist
	Overflow int // sockets that could not be seeded: the map is full
	// Iterated counts the namespaces walked with the sockets iterator
	// (iter/tcp), which takes a reference on every socket: those whose
	// closing sockets a sock_diag dump could not tell everything of (a
	// socket never tracked, one accepted or closed since). The others'
	// walk was the dump alone.
	Iterated int
}

// Add adds o's counts to s.
func (s *WalkStats) Add(o WalkStats) {
	s.Seen += o.Seen
	s.Seeded += o.Seeded
	s.Updated += o.Updated
	s.Removed += o.Removed
	s.Pruned += o.Pruned
	s.Overflow += o.Overflow
	s.Iterated += o.Iterated
}

// Lookup asks the kernel for sockets, by tuple and cookie, and destroys
// nothing: what a dry run needs to say exactly what a live run would do.
// It returns one error per socket: nil when the kernel has it in the state
// c.State names, ErrGone, a *StateError, or why the lookup failed.
type Lookup interface {
	Lookup(conns []*conn.Conn) []error
}

// Killer destroys sockets. It first asks the kernel for each socket by
// tuple and cookie, as Lookup does, and destroys only one the kernel has
// in the state c.State names: a socket in another state (a transition the
// tracker missed, a socket that connected again under the same cookie) is
// not the socket the sweep judged. It returns one error per socket: nil
// when destroyed, ErrGone, a *StateError, or why it failed.
type Killer interface {
	Kill(conns []*conn.Conn) []error
}

// ErrGone: the kernel no longer has the socket ("already gone"); nothing
// was done.
var ErrGone = errors.New("socket already gone")

// StateError: the kernel has the socket in another state than the one
// named; nothing was done.
type StateError struct {
	Want, Have conn.State
}

func (e *StateError) Error() string {
	return fmt.Sprintf("socket is %s, not %s", e.Have, e.Want)
}

// An Act is what a sweep does with the hung sockets it would destroy: look
// them up (DryRun) or destroy them (Live). A dry run's Act holds only a
// Lookup: it cannot destroy.
type Act struct {
	dry bool
	do  func(conns []*conn.Conn) []error
}

// DryRun looks the hung sockets up with l and destroys nothing.
func DryRun(l Lookup) Act { return Act{dry: true, do: l.Lookup} }

// Live destroys the hung sockets with k.
func Live(k Killer) Act { return Act{do: k.Kill} }

// DryRun reports whether a destroys nothing.
func (a Act) DryRun() bool { return a.dry }

// Options for one sweep.
type Options struct {
	Policy *policy.Policy
	// NetNS is the set of network namespaces in scope, each inode with
	// its readable name ("" when it has none): only their tracked sockets
	// are judged, a full walk walks each of them, and the hung ones carry
	// the name. Empty: none. nil: every tracked socket, walking the calling
	// thread's namespace (tests and tools).
	NetNS map[uint32]string
	// MaxKills is the most sockets destroyed in one sweep, whatever their
	// namespaces; 0: no cap.
	MaxKills int
	// WalkOnDemand skips the walk of the namespace's sockets (reconcile)
	// unless a hung socket needs it: a FIN_WAIT2 timewait socket may have
	// moved to TIME_WAIT, which no event reports. The service sets it for
	// sweeps at a deadline, so their cost does not grow with the sockets
	// that are not closing; it reconciles in full on its backstop timer.
	WalkOnDemand bool
	// Kernel is what SOCK_DESTROY can be trusted with on the running
	// kernel (kernel.Running); sockets it cannot destroy reliably are
	// reported, not destroyed. nil: every socket (the kernel's version is
	// unknown).
	Kernel *kernel.Capabilities
	// Walked is when the caller last walked every namespace in scope
	// (CLOCK_BOOTTIME, Report.Walked of an earlier sweep whose
	// Report.WalkedNS was nil); 0 when unknown. A FIN_WAIT2 timewait
	// socket seen then may have entered TIME_WAIT any time since, with no
	// event: it is worth a walk once it could be hung as that.
	Walked uint64
	// Processes, when set (--kill-process), signals the owners of the
	// sockets a live sweep failed to destroy (see Processes); the sweep
	// then waits for them, up to the grace period and a little more.
	Processes Processes
	// WalkedIn is, per namespace, a later walk of it alone (Report.Walked
	// of a sweep that walked only the namespaces in its WalkedNS).
	WalkedIn map[uint32]uint64
}

// walked is when namespace ns was last walked, as far as opts know.
func (o *Options) walked(ns uint32) uint64 {
	return max(o.Walked, o.WalkedIn[ns])
}

// inodes lists the namespaces in scope; nil when opts.NetNS is nil.
func (o *Options) inodes() []uint32 {
	if o.NetNS == nil {
		return nil
	}
	out := make([]uint32, 0, len(o.NetNS))
	for ino := range o.NetNS {
		out = append(out, ino)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Outcome of one hung socket.
type Outcome int

// What happened to a hung socket.
const (
	Skipped     Outcome = iota // policy kept it: Verdict.Skip says why
	Planned                    // dry run: live mode would destroy it
	Held                       // over --max-kills: left for a later sweep
	Destroyed                  // SOCK_DESTROY succeeded
	Gone                       // the kernel no longer had it
	Failed                     // SOCK_DESTROY failed: Item.Err says why
	Unsupported                // the running kernel cannot destroy it: reported only
	// Changed: the kernel has the socket in another state than the map
	// said (Item.KernelState): not the socket that was judged, so it is
	// left alone, and the sweep corrects the map with a walk.
	Changed
)

func (o Outcome) String() string {
	return [...]string{"skipped", "planned", "held", "destroyed", "gone", "failed", "unsupported", "changed"}[o]
}

// Item is one hung socket and what the sweep did with it.
type Item struct {
	Conn    conn.Conn
	Verdict policy.Verdict
	Outcome Outcome
	Err     error
	// KernelState is the socket's state as the kernel reported it just
	// before the destroy (0 when it did not: gone, or no answer).
	KernelState conn.State
	// Processes is what --kill-process did with the socket's owners,
	// when its destroy failed (Options.Processes).
	Processes []ProcessResult

	owners []conn.Owner // every process holding it
}

// Report is what one sweep saw and did.
type Report struct {
	Scanned   int // tracked sockets in scope
	Hung      int // overstayed their threshold
	Skipped   map[policy.SkipReason]int
	Planned   int
	Held      int
	Destroyed int
	Gone      int
	Failed    int
	// Unsupported counts hung sockets the running kernel cannot destroy.
	Unsupported int
	// Changed counts hung sockets the kernel had in another state.
	Changed int
	// ProcessesTerminated and ProcessesKilled count the owners
	// --kill-process signalled (each process once) that exited after
	// SIGTERM, and that were sent SIGKILL.
	ProcessesTerminated, ProcessesKilled int
	Items                                []Item // the hung sockets, oldest first
	// Next is the earliest CLOCK_BOOTTIME at which a socket still tracked
	// becomes hung, should be retried, or may have become hung without an
	// event (a FIN_WAIT2 timewait socket entering TIME_WAIT); 0 when
	// nothing is pending.
	Next uint64
	// Walked is when this sweep's walk began (CLOCK_BOOTTIME); 0 when it
	// walked nothing. WalkedNS lists the namespaces it walked when it
	// walked only some of those in scope (those of the hung sockets that
	// needed it), nil when it walked them all.
	Walked       uint64
	WalkedNS     []uint32
	Reconciled   WalkStats
	ReconcileErr error // the walk failed: ages of timewait sockets may be stale
	// OwnerErr is set when owners could not be read: they show as unknown
	// and process rules cannot protect anything, so nothing is destroyed.
	OwnerErr error
	Took     time.Duration
	// Steps says where Took went.
	Steps Steps
	// Namespaces is how many network namespaces were in scope.
	Namespaces int
	// ByState counts the tracked sockets in scope by state (indexed by
	// conn.State): read while the sweep reads them, so it costs nothing
	// more (metrics report it).
	ByState [StateSlots]int
}

// StateSlots is the size of an array indexed by conn.State (1 to 12).
const StateSlots = 16

// Steps are the parts of a sweep's time: walking the namespace (Walk),
// reading the tracked sockets (Read), finding the owners of the hung ones
// (Owners), and looking them up or destroying them (Act).
type Steps struct {
	Walk, Read, Owners, Act time.Duration
}

// RetryAfter is how long a sweep waits before trying a failed destroy again.
const RetryAfter = 10 * time.Second

// Run performs one sweep at now (CLOCK_BOOTTIME ns), doing act with the
// hung sockets it would destroy.
func Run(src Source, act Act, opts Options, now uint64) (Report, error) {
	if act.do == nil {
		return Report{}, errors.New("sweep: no act: want DryRun or Live")
	}
	start := time.Now()
	rep := Report{Skipped: map[policy.SkipReason]int{}, Namespaces: len(opts.NetNS)}
	if opts.NetNS == nil {
		rep.Namespaces = 1
	}
	step := start
	lap := func(d *time.Duration) {
		t := time.Now()
		*d += t.Sub(step)
		step = t
	}
	// walk walks the namespaces in (nil: every one in scope).
	walk := func(in []uint32) {
		if opts.NetNS != nil && len(opts.NetNS) == 0 {
			return // nothing in scope
		}
		rep.Walked = now // the walk begins at now or later: never too late a mark
		all := in == nil
		if all {
			in = opts.inodes()
		} else {
			rep.WalkedNS = in
		}
		rep.Reconciled, rep.ReconcileErr = src.Reconcile(in)
		if rep.ReconcileErr == nil {
			if all {
				opts.Walked = rep.Walked
			} else {
				opts.WalkedIn = maps.Clone(opts.WalkedIn)
				if opts.WalkedIn == nil {
					opts.WalkedIn = map[uint32]uint64{}
				}
				for _, ns := range in {
					opts.WalkedIn[ns] = rep.Walked
				}
			}
		}
		lap(&rep.Steps.Walk)
	}
	walked := !opts.WalkOnDemand
	if walked {
		walk(nil)
	}
	found, err := collect(src, opts, now)
	if err != nil {
		return rep, err
	}
	lap(&rep.Steps.Read)
	if !walked && len(found.stale) > 0 {
		// Walk only the namespaces a hung socket needs walked.
		var in []uint32
		if opts.NetNS != nil && len(found.stale) < len(opts.NetNS) {
			in = slices.Sorted(maps.Keys(found.stale))
		}
		walk(in)
		if found, err = collect(src, opts, now); err != nil {
			return rep, err
		}
		lap(&rep.Steps.Read)
	}
	rep.Scanned, rep.Next, rep.ByState = found.scanned, found.next, found.byState

	rep.Hung = len(found.hung)
	if len(found.hung) > 0 {
		// Only sockets a process may hold need a look at file tables.
		var ask []*conn.Conn
		for i := range found.hung {
			if found.hung[i].MayHaveOwner() {
				ask = append(ask, &found.hung[i])
			}
		}
		var owners map[uint64][]conn.Owner
		if len(ask) > 0 {
			owners, rep.OwnerErr = src.Owners(ask)
		}
		lap(&rep.Steps.Owners)
		rep.Items = make([]Item, 0, len(found.hung))
		for _, c := range found.hung {
			item := decideOwned(opts.Policy, c, owners[c.Cookie], now)
			if !item.Verdict.Hung {
				// Due, without the owners, took the shortest threshold a
				// rule on processes or cgroups could give; the rule that
				// decides gives a later one.
				rep.Hung--
				if d := item.Verdict.Deadline; d > now {
					rep.next(d)
				}
				continue
			}
			switch {
			case item.Outcome == Skipped:
			case rep.OwnerErr != nil:
				// Without owners a protected process could be hit.
				item.Outcome, item.Err = Failed, rep.OwnerErr
			case opts.Kernel != nil && !opts.Kernel.Destroys(item.Conn.Timewait, len(owners[c.Cookie]) > 0):
				item.Outcome = Unsupported
			}
			rep.Items = append(rep.Items, item)
		}
	}
	sort.SliceStable(rep.Items, func(a, b int) bool {
		return rep.Items[a].Conn.Entered < rep.Items[b].Conn.Entered
	})

	var kill []*Item
	for i := range rep.Items {
		it := &rep.Items[i]
		switch {
		case it.Outcome == Skipped || it.Outcome == Failed || it.Outcome == Unsupported:
		case opts.MaxKills > 0 && len(kill) >= opts.MaxKills:
			it.Outcome = Held
		default:
			kill = append(kill, it)
		}
	}
	var changed map[uint32]bool // namespaces of sockets the map was wrong about
	if len(kill) > 0 {
		var held map[int]*hold
		if opts.Processes != nil && !act.dry {
			held = holdOwners(opts.Processes, &opts, kill)
			defer releaseAll(held)
		}
		targets := make([]*conn.Conn, len(kill))
		for i, it := range kill {
			targets[i] = &it.Conn
		}
		for i, err := range act.do(targets) {
			it := kill[i]
			var se *StateError
			switch {
			case err == nil && act.dry:
				it.Outcome = Planned
			case err == nil:
				it.Outcome = Destroyed
			case errors.Is(err, ErrGone):
				it.Outcome = Gone
			case errors.As(err, &se):
				it.Outcome, it.KernelState = Changed, se.Have
				if changed == nil {
					changed = map[uint32]bool{}
				}
				changed[it.Conn.NetNS] = true
			default:
				it.Outcome, it.Err = Failed, err
			}
			// A destroyed full socket passes through CLOSE and the tracker
			// drops its entry itself; a timewait socket, or one found gone,
			// leaves no event behind.
			if it.Outcome == Gone || it.Outcome == Destroyed && it.Conn.Timewait {
				_ = src.Forget(it.Conn.Cookie)
			}
		}
		if held != nil {
			rep.terminate(opts.Processes, kill, held)
		}
		lap(&rep.Steps.Act)
	}
	if len(changed) > 0 {
		// The map was wrong about a socket: a walk of its namespace gives
		// each entry the kernel's state (a lower-bound age when it moved
		// on to another closing state) and drops the others.
		var in []uint32
		if opts.NetNS != nil {
			in = slices.Sorted(maps.Keys(changed))
		}
		var st WalkStats
		st, rep.ReconcileErr = src.Reconcile(in)
		rep.Reconciled.Add(st)
		lap(&rep.Steps.Walk)
	}
	for _, it := range rep.Items {
		switch it.Outcome {
		case Skipped:
			rep.Skipped[it.Verdict.Skip]++
		case Planned:
			rep.Planned++
		case Held:
			rep.Held++
			rep.next(now) // more to do right away
		case Destroyed:
			rep.Destroyed++
		case Gone:
			rep.Gone++
		case Failed:
			rep.Failed++
			rep.next(now + uint64(RetryAfter))
		case Unsupported:
			rep.Unsupported++
		case Changed:
			rep.Changed++
		}
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// found is what one pass over the tracked sockets keeps: the hung ones, the
// earliest deadline of the others, and the count. Memory follows the hung
// sockets, not the tracked ones.
type found struct {
	hung    []conn.Conn
	next    uint64 // earliest deadline still ahead; 0: none
	scanned int
	byState [StateSlots]int
	// stale holds the namespaces where what the map says of a hung socket
	// may be out of date in a way no event reports (see stale), and only
	// a walk of the namespace says.
	stale map[uint32]bool
}

// collect reads the tracked sockets of opts.NetNS as they stream from src,
// deciding on each with the cheap policy.Due; the full decision, with its
// reason, is made later for the hung ones only. Hung sockets carry their
// namespace's name.
func collect(src Source, opts Options, now uint64) (found, error) {
	var f found
	var only uint32 // the one namespace in scope; 0: look each up
	switch len(opts.NetNS) {
	case 0:
		if opts.NetNS != nil {
			return f, nil // nothing in scope
		}
	case 1:
		for ino := range opts.NetNS {
			only = ino
		}
	}
	names := opts.NetNS != nil && opts.Policy.UsesNetNSNames() // a rule matches namespace names
	err := src.Walk(only, func(c *conn.Conn) {
		if only == 0 && opts.NetNS != nil {
			if _, ok := opts.NetNS[c.NetNS]; !ok {
				return
			}
		}
		f.scanned++
		if int(c.State) < len(f.byState) {
			f.byState[c.State]++
		}
		if names {
			c.NetNSName = opts.NetNS[c.NetNS]
		}
		hung, deadline := opts.Policy.Due(c, now)
		st, check := stale(opts.Policy, c, hung, opts.walked(c.NetNS), now)
		if st {
			if f.stale == nil {
				f.stale = map[uint32]bool{}
			}
			f.stale[c.NetNS] = true
		}
		if hung {
			f.hung = append(f.hung, *c)
			f.hung[len(f.hung)-1].NetNSName = opts.NetNS[c.NetNS]
		} else {
			f.later(deadline, now)
		}
		f.later(check, now)
	})
	return f, err
}

// later keeps t as the next deadline if it is ahead of now and earlier
// than the one kept.
func (f *found) later(t, now uint64) {
	if t > now && (f.next == 0 || t < f.next) {
		f.next = t
	}
}

// stale reports whether what the map says of c may be out of date in a way
// that matters to this sweep (conn.Conn.MayBeStale, the rule list uses
// too), and when a walk is worth making for it. It matters for a hung
// socket, and for a FIN_WAIT2 timewait socket that could be hung as
// TIME_WAIT: one that received the peer's FIN is in TIME_WAIT by now, with
// no event, having entered it after it entered FIN_WAIT2 and after the
// last walk (walked) that saw it in FIN_WAIT2, so not before
// max(entered, walked) + TIME_WAIT's threshold; check is that moment.
func stale(p *policy.Policy, c *conn.Conn, hung bool, walked, now uint64) (bool, uint64) {
	var check uint64
	twHung := false
	if c.Timewait && c.State == conn.FinWait2 {
		twHung, check = timewaitDue(p, c, walked, now)
	}
	return (hung || twHung) && c.MayBeStale(now), check
}

// timewaitDue is whether the FIN_WAIT2 socket c, last seen in FIN_WAIT2 by
// a walk at walked, could be hung as a TIME_WAIT socket at now, and from
// when it could be.
func timewaitDue(p *policy.Policy, c *conn.Conn, walked, now uint64) (bool, uint64) {
	tw := *c
	tw.State, tw.Entered = conn.TimeWait, max(c.Entered, walked)
	return p.Due(&tw, now)
}

// Wake is the earliest moment a sweep must look at c, a socket the tracker
// has just announced: when it reaches its threshold, or, for a FIN_WAIT2
// socket, which may go on to TIME_WAIT as an orphan with no event, when it
// could be hung as that. 0: never.
func Wake(p *policy.Policy, c *conn.Conn) uint64 {
	_, at := p.Due(c, 0)
	if c.State == conn.FinWait2 {
		if _, tw := timewaitDue(p, c, 0, 0); tw != 0 && (at == 0 || tw < at) {
			at = tw
		}
	}
	return at
}

// decideOwned decides with the owners known: a socket shared by several
// processes is kept if any of them is protected or excluded, or if the
// rule one of them falls under does not make it hung yet (its Verdict
// then not Hung, with the latest such deadline).
func decideOwned(p *policy.Policy, c conn.Conn, owners []conn.Owner, now uint64) Item {
	if len(owners) == 0 {
		return itemFor(c, p.Decide(&c, now))
	}
	var first Item
	var notYet *Item
	for i := range owners {
		cc := c
		cc.Owner = &owners[i]
		it := itemFor(cc, p.Decide(&cc, now))
		if it.Outcome == Skipped {
			return it
		}
		if !it.Verdict.Hung && (notYet == nil || it.Verdict.Deadline > notYet.Verdict.Deadline) {
			notYet = &it
		}
		if i == 0 {
			first = it
		}
	}
	if notYet != nil {
		return *notYet
	}
	first.owners = owners
	return first
}

func itemFor(c conn.Conn, v policy.Verdict) Item {
	if v.Action == policy.Skip {
		return Item{Conn: c, Verdict: v, Outcome: Skipped}
	}
	return Item{Conn: c, Verdict: v, Outcome: Planned}
}

func (r *Report) next(t uint64) {
	if r.Next == 0 || t < r.Next {
		r.Next = t
	}
}

// Decide is what a sweep at now decides for c with its owners (none
// known: nil): the verdict the service and `list` act on, for viewers
// (top). A socket shared by several processes is decided as decideOwned
// says.
func Decide(p *policy.Policy, c conn.Conn, owners []conn.Owner, now uint64) policy.Verdict {
	return decideOwned(p, c, owners, now).Verdict
}
