package tracking

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// Reconcile walks every TCP socket of the network namespaces in (none: the
// calling thread's), each with iter/tcp created inside it, and brings the
// map in line with the kernel:
//   - a closing socket the tracker never saw is seeded, its age counted
//     from now (a lower bound) unless the TIME_WAIT timer gives it exactly;
//   - a timewait socket that moved from FIN_WAIT2 to TIME_WAIT, which no
//     event reports, gets its state and exact entry time;
//   - an entry of a walked namespace whose socket no longer exists (an
//     expired or reused timewait socket) is removed;
//   - an entry of a namespace that no longer exists is removed (a deleted
//     namespace takes its sockets without an event).
//
// A namespace that cannot be entered because it is gone is skipped: no
// error, its entries pruned. Another namespace's failure is returned,
// joined with the others', after the rest were walked.
func (t *Tracker) Reconcile(in []uint32) (sweep.WalkStats, error) {
	var st sweep.WalkStats
	here, err := netns.CurrentInode()
	if err != nil {
		return st, err
	}
	if len(in) == 0 {
		in = []uint32{here}
	}
	lost, err := t.lost()
	if err != nil {
		return st, err
	}
	// What the map holds before the walk: an entry written after this may
	// belong to a socket the walk has passed already, and is left alone.
	// Seen sockets leave the snapshot; what stays has no socket behind it.
	tracked := make(map[uint64]snap)
	if err := t.forEach(func(cookie uint64, v *bpf.TrackerHckConn) { tracked[cookie] = snapOf(v) }); err != nil {
		return st, err
	}
	start := conn.Now()
	m := t.objs.HckConns
	walked := make(map[uint32]bool, len(in))
	var full map[uint32]bool // namespaces with a socket the full map refused
	var errs []error
	for _, ns := range in {
		if walked[ns] {
			continue
		}
		recs, iterated, err := t.walkIn(ns, here, tracked)
		if errors.Is(err, netns.ErrGone) {
			continue // its sockets went with it; its entries are pruned below
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		walked[ns] = true
		if iterated {
			st.Iterated++
		}
		if err := t.merge(recs, tracked, start, &st, &full); err != nil {
			return st, errors.Join(append(errs, err)...)
		}
	}
	if len(walked) == 0 && len(errs) > 0 {
		return st, errors.Join(errs...)
	}
	// Entries with no socket behind them: a walked namespace's are stale;
	// other namespaces' go if their namespace is gone.
	var stale, foreign []uint64
	var foreignNS []uint32
	for cookie, v := range tracked {
		if !walked[v.netns] {
			foreign, foreignNS = append(foreign, cookie), append(foreignNS, v.netns)
		} else {
			stale = append(stale, cookie)
		}
	}
	if len(foreign) > 0 {
		live, fresh := t.liveNetNS(false), false
		for i, c := range foreign {
			if !live[foreignNS[i]] && !fresh {
				// A cached list predates namespaces made since: look
				// again before deleting what may be a new one's entries.
				live, fresh = t.liveNetNS(true), true
			}
			if !live[foreignNS[i]] && m.Delete(c) == nil {
				st.Pruned++
			}
		}
	}
	t.unwatchDead(walked)
	for _, c := range stale {
		if err := m.Delete(c); err == nil {
			st.Removed++
		}
	}
	t.pruneOwners()
	for ns := range walked {
		if !full[ns] {
			// Seeded: from now on the tracker alone keeps this
			// namespace's full sockets exact (see Seeded).
			_ = t.objs.HckNetns.Update(ns, lost+1, ebpf.UpdateAny)
		}
	}
	return st, errors.Join(errs...)
}

// walkIn walks namespace ns's sockets from inside it: on the calling
// thread when it is there (here), else through the Enter of the tracker's
// options, else opened by inode (a walk of /proc). The walk is a sock_diag
// dump of the closing states, or the sockets iterator when the dump leaves
// out what tracked (the map before the walk) needs (needsIterator) or
// fails; iterated tells which.
func (t *Tracker) walkIn(ns, here uint32, tracked map[uint64]snap) (recs []socketRec, iterated bool, err error) {
	walk := func() error {
		recs, iterated, err = t.walkHere(ns, tracked)
		return err
	}
	switch {
	case ns == here:
		err = walk()
	case t.enter != nil:
		err = t.enter(ns, walk)
	default:
		var h *netns.NS
		if h, err = netns.FromInode(ns); err != nil {
			return nil, false, err
		}
		defer h.Close()
		err = h.Do(walk)
	}
	return recs, iterated, err
}

// walkHere walks the calling thread's namespace (inode ns), as walkIn.
func (t *Tracker) walkHere(ns uint32, tracked map[uint64]snap) ([]socketRec, bool, error) {
	if !t.iterateOnly {
		if d, err := dumpClosing(ns); err == nil && !needsIterator(d, tracked) {
			recs := make([]socketRec, len(d))
			for i := range d {
				recs[i] = d[i].socketRec
			}
			return recs, false, nil
		}
	}
	recs, err := t.walkSockets()
	return recs, true, err
}

// merge brings the entries of one namespace's walk (recs) in line with
// it; tracked is the snapshot before the walks, whose seen sockets leave
// it. A socket the full map refused marks its namespace in *full.
func (t *Tracker) merge(recs []socketRec, tracked map[uint64]snap, start uint64, st *sweep.WalkStats, full *map[uint32]bool) error {
	st.Seen += len(recs)
	m := t.objs.HckConns
	for i := range recs {
		r := &recs[i]
		old, ok := tracked[r.Cookie]
		if !ok {
			v := r.Conn
			if v.EnteredNs == 0 {
				v.EnteredNs = start
				v.Flags |= uint8(bpf.TrackerHckFlagHCK_F_LOWER_BOUND)
			}
			// NoExist: never clobber what the tracepoint wrote meanwhile.
			if err := m.Update(r.Cookie, &v, ebpf.UpdateNoExist); err == nil {
				st.Seeded++
			} else if errors.Is(err, unix.E2BIG) {
				st.Overflow++
				if *full == nil {
					*full = map[uint32]bool{}
				}
				(*full)[v.Netns] = true
			} else if !errors.Is(err, ebpf.ErrKeyExist) {
				return fmt.Errorf("seed socket %d: %w", r.Cookie, err)
			}
			continue
		}
		delete(tracked, r.Cookie)
		merge := func(cur, rec bpf.TrackerHckConn) (bpf.TrackerHckConn, bool) {
			return fullUpdate(cur, rec, start, old)
		}
		if r.Conn.Flags&uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT) != 0 {
			merge = func(cur, rec bpf.TrackerHckConn) (bpf.TrackerHckConn, bool) {
				return timewaitUpdate(cur, rec, start)
			}
		}
		if _, changed := merge(old.conn(), r.Conn); !changed {
			continue
		}
		// Merge into the entry as it is now: the tracepoint may have
		// moved the socket on since the snapshot.
		var cur bpf.TrackerHckConn
		if m.Lookup(r.Cookie, &cur) != nil {
			continue
		}
		if next, changed := merge(cur, r.Conn); changed {
			if err := m.Update(r.Cookie, &next, ebpf.UpdateExist); err == nil {
				st.Updated++
			}
		}
	}
	return nil
}

// snap is what Reconcile keeps of an entry before its walk: what the merges
// compare, in a third of the entry's size.
type snap struct {
	entered, file uint64
	netns         uint32
	state, flags  uint8
}

func snapOf(v *bpf.TrackerHckConn) snap {
	return snap{entered: v.EnteredNs, file: v.File, netns: v.Netns, state: v.State, flags: v.Flags}
}

func (s snap) conn() bpf.TrackerHckConn {
	return bpf.TrackerHckConn{EnteredNs: s.entered, File: s.file, Netns: s.netns, State: s.state, Flags: s.flags}
}

// fullUpdate merges what the iterator saw of a full socket: its holder's
// file (accepted since it entered its state) and whether it was closed, and
// its state when the entry says another. The kernel may skip the tracker
// for a transition (a tracepoint firing while the program runs on the same
// CPU, counted in recursion_misses); the socket then entered its state at
// some unknown moment before the walk: its age counts from the walk's
// start, a lower bound, so it is never judged older than it is. An entry
// the tracker rewrote since the snapshot before the walk (before: what it
// held then) is newer than what the walk saw, and keeps its state.
func fullUpdate(cur, full bpf.TrackerHckConn, start uint64, before snap) (bpf.TrackerHckConn, bool) {
	orphan := uint8(bpf.TrackerHckFlagHCK_F_ORPHAN)
	lower := uint8(bpf.TrackerHckFlagHCK_F_LOWER_BOUND)
	timewait := uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT)
	next := cur
	if full.File != 0 {
		next.File = full.File
	}
	next.Flags |= full.Flags & orphan
	if cur.State != full.State && cur.State == before.state && cur.EnteredNs == before.entered {
		next.State, next.EnteredNs = full.State, start
		next.Flags = next.Flags&^timewait | lower
	}
	return next, next != cur
}

// unwatchDead removes namespaces that no longer exist from the watched set.
// Those just walked (alive) exist: the list of live namespaces, a walk of
// every thread in /proc, is read only when another is watched.
func (t *Tracker) unwatchDead(alive map[uint32]bool) {
	var (
		ns    uint32
		mark  uint64
		other []uint32
		dead  []uint32
	)
	it := t.objs.HckNetns.Iterate()
	for it.Next(&ns, &mark) {
		if ns != 0 && !alive[ns] {
			other = append(other, ns)
		}
	}
	if len(other) == 0 {
		return
	}
	live := t.liveNetNS(false)
	for _, n := range other {
		if !live[n] {
			dead = append(dead, n)
		}
	}
	if len(dead) > 0 {
		live = t.liveNetNS(true) // the cache may predate a new namespace
		for _, n := range dead {
			if !live[n] {
				_ = t.objs.HckNetns.Delete(n)
			}
		}
	}
}

// timewaitUpdate merges what the iterator saw of a timewait socket into
// its entry: the kernel's substate wins; an exact entry time beats a guess.
func timewaitUpdate(cur, tw bpf.TrackerHckConn, now uint64) (bpf.TrackerHckConn, bool) {
	lower := uint8(bpf.TrackerHckFlagHCK_F_LOWER_BOUND)
	next := cur
	next.Flags |= uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT)
	switch {
	case cur.State != tw.State:
		// FIN_WAIT2 -> TIME_WAIT inside the timewait socket: no event.
		next.State = tw.State
		if tw.EnteredNs != 0 {
			next.EnteredNs, next.Flags = tw.EnteredNs, next.Flags&^lower
		} else {
			next.EnteredNs, next.Flags = now, next.Flags|lower
		}
	case cur.Flags&lower != 0 && tw.EnteredNs != 0:
		// Seeded as a lower bound; the timer now gives it exactly.
		next.EnteredNs, next.Flags = tw.EnteredNs, next.Flags&^lower
	}
	return next, next != cur
}

type socketRec = bpf.TrackerHckEvent

func (t *Tracker) walkSockets() ([]socketRec, error) {
	if t.socketsIter == nil {
		it, err := bpf.OpenSockets(t.pinDir, kernel.HZ())
		if err != nil {
			return nil, err
		}
		t.socketsIter = it
	}
	// The iterator walks the namespace of the thread that reads it.
	raw, err := bpf.ReadIter(t.socketsIter, "iter/tcp")
	if err != nil {
		return nil, err
	}
	size := int(unsafe.Sizeof(socketRec{}))
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("read iter/tcp: %d bytes is not a whole number of %d-byte records", len(raw), size)
	}
	recs := make([]socketRec, len(raw)/size)
	for i := range recs {
		recs[i] = *(*socketRec)(unsafe.Pointer(&raw[i*size]))
	}
	return recs, nil
}
