// Package tracking loads, pins and reads the kernel tracker: the BPF program
// on inet_sock_set_state and the map of sockets in closing states it keeps.
package tracking

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/owners"
)

// DefaultMapSize is how many sockets the tracker holds unless told otherwise.
const DefaultMapSize = 262144

// Options say where, how big, and which namespaces.
type Options struct {
	PinDir string // bpffs directory; DefaultPinDir when empty
	// MapSize is how many sockets the map holds when Open creates it;
	// DefaultMapSize when 0. A map pinned already keeps its size: a
	// MapSize given and different is a *MapSizeError.
	MapSize uint32
	// Own makes this the pin dir's one service: Open takes the pin dir's
	// lock, held until Close (or the process's end), and fails with a
	// *BusyError naming the holder when another process has it.
	Own bool
	// Watch lists the network namespaces (inodes) whose sockets the
	// tracker records, added to those earlier users of the pin dir asked
	// for. WatchAll records every namespace.
	Watch    []uint32
	WatchAll bool
	// Enter runs fn inside network namespace ns (scope.Scope.Do), for
	// walks of namespaces other than the calling thread's; ErrGone (from
	// netns) when it is gone. nil: such a namespace is opened by inode.
	Enter func(ns uint32, fn func() error) error
}

// Tracker is an open handle on the pinned tracker. Close releases the handle;
// the tracker stays attached and pinned until Unload.
type Tracker struct {
	objs        bpf.TrackerObjects
	owners      *owners.Finder  // the sockets' owners, by the owners iterator
	socketsIter *link.Iter      // pinned sockets iterator, opened on first Reconcile
	lock        *pinLock        // the pin dir's lock (Options.Own)
	live        map[uint32]bool // network namespaces still reachable
	enter       func(ns uint32, fn func() error) error
	walkBuf     *walkBuf     // forEach's batch, reused
	entries     atomic.Int64 // hck_conns' entries at the last complete read, +1 (0: none yet)
	liveAt      time.Time
	// iterateOnly makes every walk use the sockets iterator, never a
	// sock_diag dump (tests compare the two).
	iterateOnly bool
	link        link.Link
	pinDir      string
	recentSeq   uint64 // the last kill Publish wrote (0: not read yet)
	// Attached is true when this Open attached the program: nothing was
	// pinned before, so every socket it tracks was first seen now.
	Attached bool
}

// Open attaches the tracker, or reuses the one pinned in opts.PinDir so that
// no timestamp gathered by an earlier process is lost.
func Open(opts Options) (_ *Tracker, err error) {
	if opts.PinDir == "" {
		opts.PinDir = DefaultPinDir
	}
	if err := kernel.CheckBTF(); err != nil {
		return nil, err
	}
	if err := CheckPinDir(opts.PinDir); err != nil {
		return nil, err
	}
	if err := ensurePinDir(opts.PinDir); err != nil {
		return nil, err
	}
	t := &Tracker{pinDir: opts.PinDir, enter: opts.Enter}
	if opts.Own {
		if t.lock, err = lockPinDir(opts.PinDir); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				t.lock.release()
			}
		}()
	}
	if err := checkPins(opts.PinDir); err != nil {
		return nil, err
	}
	size, err := mapSize(opts)
	if err != nil {
		return nil, err
	}
	linkPath := filepath.Join(opts.PinDir, linkPin)
	if l, err := link.LoadPinnedLink(linkPath, nil); err == nil {
		if err := verifyLink(l, opts.PinDir); err != nil {
			l.Close()
			return nil, err
		}
		// Attached already: the maps are all we need, no program to load.
		if err := bpf.OpenTracker(&t.objs, opts.PinDir, size, false); err != nil {
			l.Close()
			return nil, err
		}
		t.link = l
		if err := t.watch(opts); err != nil {
			t.Close()
			return nil, err
		}
		if !opts.Own {
			t.quietOrphanEvents()
		}
		return t, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load pinned link %s: %w", linkPath, err)
	}
	if err := bpf.OpenTracker(&t.objs, opts.PinDir, size, true); err != nil {
		return nil, err
	}
	// Watch before attaching: no transition of a watched namespace is missed.
	if err := t.watch(opts); err != nil {
		t.objs.Close()
		return nil, err
	}
	if err := t.attach(linkPath); err != nil {
		t.objs.Close()
		return nil, err
	}
	return t, nil
}

// MapSizeError: the socket map is pinned with one size and another was
// asked for. Only an unload (which forgets every tracked socket) lets a new
// size take effect.
type MapSizeError struct {
	PinDir         string
	Pinned, Wanted uint32
}

func (e *MapSizeError) Error() string {
	return fmt.Sprintf("--map-size %d: the socket map pinned in %s holds %d; leave --map-size out to use it, or run 'hck-bpf unload --pin-dir %s' first (every tracked socket is forgotten)",
		e.Wanted, e.PinDir, e.Pinned, e.PinDir)
}

// mapSize is the size of the socket map: the pinned one's, else the one
// asked for, else DefaultMapSize.
func mapSize(opts Options) (uint32, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(opts.PinDir, bpf.TrackerMapHckConns), nil)
	if errors.Is(err, os.ErrNotExist) {
		if opts.MapSize == 0 {
			return DefaultMapSize, nil
		}
		return opts.MapSize, nil
	}
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return 0, fmt.Errorf("load pinned map %s: %s (%s)", bpf.TrackerMapHckConns, bpf.WithoutMemlockHint(err), kernel.NeedBPF)
		}
		return 0, fmt.Errorf("load pinned map %s: %w", bpf.TrackerMapHckConns, err)
	}
	defer m.Close()
	if opts.MapSize != 0 && opts.MapSize != m.MaxEntries() {
		return 0, &ConfigError{&MapSizeError{PinDir: opts.PinDir, Pinned: m.MaxEntries(), Wanted: opts.MapSize}}
	}
	return m.MaxEntries(), nil
}

// watch adds opts' namespaces to the tracker's watched set. A namespace
// watched already keeps its value: whether a full walk has seeded it.
func (t *Tracker) watch(opts Options) error {
	ns := opts.Watch
	if opts.WatchAll {
		ns = append(ns, 0)
	}
	for _, n := range ns {
		err := t.objs.HckNetns.Update(n, uint64(0), ebpf.UpdateNoExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("watch network namespace %d: %w", n, err)
		}
	}
	return nil
}

// Watch adds network namespaces to the tracker's watched set (a namespace
// found after Open).
func (t *Tracker) Watch(ns ...uint32) error {
	return t.watch(Options{Watch: ns})
}

// Seeded reports whether the map holds every closing socket of network
// namespace netns that a walk could add: a full walk (Reconcile) of it
// has run since it was first watched, and no socket has been refused by a
// full map since. The tracker sees every transition of the full sockets
// after that; what it cannot see (a FIN_WAIT2 timewait socket moving to
// TIME_WAIT, a timewait socket expiring) a sweep checks for itself.
func (t *Tracker) Seeded(netns uint32) bool {
	var mark uint64
	if t.objs.HckNetns.Lookup(netns, &mark) != nil || mark == 0 {
		return false
	}
	lost, err := t.lost()
	return err == nil && mark == lost+1
}

// lost counts the sockets the tracker could not record, ever.
func (t *Tracker) lost() (uint64, error) {
	c, err := t.Counters()
	return c.Overflow + c.UpdateErrors, err
}

func (t *Tracker) attach(path string) error {
	l, err := bpf.AttachTracker(t.objs.HckSetState)
	if err != nil {
		return err
	}
	if err := l.Pin(path); err != nil {
		l.Close()
		if errors.Is(err, os.ErrExist) {
			// Another hck-bpf attached first: share its link, if it
			// is this pin dir's tracker.
			if l, err = link.LoadPinnedLink(path, nil); err == nil {
				if err := verifyLink(l, t.pinDir); err != nil {
					l.Close()
					return err
				}
				t.link = l
				return nil
			}
		}
		return fmt.Errorf("pin link %s: %w", path, err)
	}
	t.link = l
	t.Attached = true
	return nil
}

// Close releases this process's handles; the pins keep the tracker running.
func (t *Tracker) Close() error {
	var errs []error
	if t.link != nil {
		errs = append(errs, t.link.Close())
	}
	if t.socketsIter != nil {
		errs = append(errs, t.socketsIter.Close())
	}
	if t.owners != nil {
		errs = append(errs, t.owners.Close())
	}
	errs = append(errs, t.objs.Close(), t.lock.release())
	return errors.Join(errs...)
}

// PinDir is where the tracker is pinned.
func (t *Tracker) PinDir() string { return t.pinDir }

// Pinned reports whether a tracker is pinned in pinDir.
func Pinned(pinDir string) bool {
	_, err := os.Stat(filepath.Join(pinDir, linkPin))
	return err == nil
}

// Conns returns every tracked socket in network namespace netns (0: all).
func (t *Tracker) Conns(netns uint32) ([]conn.Conn, error) {
	var out []conn.Conn
	err := t.Walk(netns, func(c *conn.Conn) { out = append(out, *c) })
	return out, err
}

// Walk calls fn for every tracked socket in network namespace netns (0:
// all), reading the map a batch at a time into buffers it reuses: memory
// stays flat however many sockets are tracked. *c is only valid during the
// call; fn copies what it keeps.
func (t *Tracker) Walk(netns uint32, fn func(c *conn.Conn)) error {
	var c conn.Conn
	return t.forEach(func(cookie uint64, v *bpf.TrackerHckConn) {
		if netns == 0 || v.Netns == netns {
			c = fromBPF(cookie, v)
			fn(&c)
		}
	})
}

// Owners finds the processes holding the sockets cs (owners.Finder): the
// pin dir's owners iterator, loaded and pinned on first use.
func (t *Tracker) Owners(cs []*conn.Conn) (map[uint64][]conn.Owner, error) {
	if t.owners == nil {
		t.owners = owners.New(t.pinDir, t.MapSize())
	}
	return t.owners.Owners(cs)
}

// pruneOwners has the owners' maps drop what belongs to sockets no longer
// tracked.
func (t *Tracker) pruneOwners() {
	if t.owners == nil {
		t.owners = owners.New(t.pinDir, t.MapSize())
	}
	var v bpf.TrackerHckConn
	t.owners.Prune(func(cookie uint64) (uint64, bool) {
		if t.objs.HckConns.Lookup(cookie, &v) != nil {
			return 0, false
		}
		return v.File, true
	})
}

// Forget removes a socket the kernel no longer has (destroyed, or found
// gone) so the map holds only live sockets.
func (t *Tracker) Forget(cookie uint64) error {
	err := t.objs.HckConns.Delete(cookie)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forget socket %d: %w", cookie, err)
	}
	return nil
}

// Counters are the tracker's totals since it was first attached.
type Counters struct {
	Tracked, Untracked, Overflow, UpdateErrors, EventsLost uint64
	// EventsSent counts the records written for a listening service.
	EventsSent uint64
	// Missed counts transitions the kernel did not run the tracker for:
	// a tracepoint that fires while the program is already running on the
	// same CPU (a softirq interrupting it) is skipped, and counted in the
	// program's recursion_misses. Such a socket's next transition, or the
	// next walk, corrects its entry; its age may then be a lower bound.
	Missed uint64
}

// Counters sums the per-CPU counters.
func (t *Tracker) Counters() (Counters, error) {
	c, err := readCounters(t.objs.HckCounters)
	if err != nil {
		return c, err
	}
	if info, err := t.link.Info(); err == nil {
		if prog, err := ebpf.NewProgramFromID(info.Program); err == nil {
			if st, err := prog.Stats(); err == nil {
				c.Missed = st.RecursionMisses
			}
			prog.Close()
		}
	}
	return c, nil
}

func readCounters(m *ebpf.Map) (Counters, error) {
	var c Counters
	dst := []*uint64{&c.Tracked, &c.Untracked, &c.Overflow, &c.UpdateErrors, &c.EventsLost, &c.EventsSent}
	for i, p := range dst {
		var perCPU []uint64
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return c, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			*p += v
		}
	}
	return c, nil
}

// MapSize is the capacity of the pinned socket map.
func (t *Tracker) MapSize() uint32 { return t.objs.HckConns.MaxEntries() }

func fromBPF(cookie uint64, v *bpf.TrackerHckConn) conn.Conn {
	c := conn.Conn{
		Cookie:   cookie,
		State:    conn.State(v.State),
		NetNS:    v.Netns,
		Ifindex:  v.Ifindex,
		Entered:  v.EnteredNs,
		Exact:    v.Flags&uint8(bpf.TrackerHckFlagHCK_F_LOWER_BOUND) == 0,
		Timewait: v.Flags&uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT) != 0,
		Orphan:   v.Flags&uint8(bpf.TrackerHckFlagHCK_F_ORPHAN) != 0,
		File:     v.File,
	}
	var src, dst netip.Addr
	if v.Family == unix.AF_INET6 {
		src, dst = netip.AddrFrom16(v.Saddr), netip.AddrFrom16(v.Daddr)
	} else {
		src = netip.AddrFrom4([4]byte(v.Saddr[:4]))
		dst = netip.AddrFrom4([4]byte(v.Daddr[:4]))
	}
	c.Local = netip.AddrPortFrom(src, v.Sport)
	c.Remote = netip.AddrPortFrom(dst, v.Dport)
	return c
}

// PinnedUsage reads, without attaching or changing anything, how full the
// socket map pinned in pinDir is and what the tracker lost: for doctor.
// ok is false when no tracker is pinned there.
func PinnedUsage(pinDir string) (c Counters, entries int, size uint32, ok bool, err error) {
	if !Pinned(pinDir) {
		return c, 0, 0, false, nil
	}
	conns, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "hck_conns"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return c, 0, 0, true, fmt.Errorf("open pinned hck_conns: %w", err)
	}
	defer conns.Close()
	counters, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "hck_counters"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return c, 0, 0, true, fmt.Errorf("open pinned hck_counters: %w", err)
	}
	defer counters.Close()
	if c, err = readCounters(counters); err != nil {
		return c, 0, 0, true, err
	}
	var key uint64
	var val bpf.TrackerHckConn
	it := conns.Iterate()
	for it.Next(&key, &val) {
		entries++
	}
	if err := it.Err(); err != nil {
		return c, entries, conns.MaxEntries(), true, fmt.Errorf("count hck_conns entries: %w", err)
	}
	return c, entries, conns.MaxEntries(), true, nil
}
