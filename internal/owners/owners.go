// Package owners finds the processes holding sockets, by their open files:
// one pass of the owners iterator (iter/task, bpf/owners.bpf.c) over every
// process's file table, comparing table slots with the files asked about
// and reading nothing else. No /proc text is parsed to find them; the
// processes found then have their cgroup read, once each, from
// /proc/PID/cgroup (internal/cgroup).
//
// Its maps are pinned in the pin dir beside the tracker's: hck_want (file
// address -> cookie, the sockets asked about) and hck_owned ((cookie, pid)
// -> what a walk found). The package keeps them clean itself: Prune drops
// what belongs to sockets no longer tracked.
package owners

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/cgroup"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// Finder finds owners with the iterator and maps pinned in one pin dir,
// loading (and pinning) them on first use.
type Finder struct {
	pinDir   string
	size     uint32           // entries of hck_want and hck_owned, when made
	prealloc bool             // make them preallocated (NewPrealloc)
	method   bpf.OwnersMethod // 0: the kernel's (bpf.ChooseOwners)
	want     *ebpf.Map        // hck_want: the files Owners asks about
	owned    *ebpf.Map        // hck_owned: what the walks found
	it       *link.Iter       // the pinned owners iterator, opened on first Owners
}

// New is a Finder for pinDir, whose maps hold size entries when it makes
// them (the tracker's socket map size). Nothing is loaded until Owners.
func New(pinDir string, size uint32) *Finder { return &Finder{pinDir: pinDir, size: size} }

// NewPrealloc is New with preallocated maps (bpf.OpenOwnersPrealloc): for
// small maps its user empties after every walk (kill's, in its own pin
// dir).
func NewPrealloc(pinDir string, size uint32) *Finder {
	return &Finder{pinDir: pinDir, size: size, prealloc: true}
}

// Use makes f walk with method whatever the kernel has, for tests that
// compare the methods on one kernel; called before the first Owners. (The
// whole suite takes a method from the environment: bpf.OwnersEnv.)
func (f *Finder) Use(method bpf.OwnersMethod) { f.method = method }

// Method is the method f walks with: the kernel's once f is open.
func (f *Finder) Method() bpf.OwnersMethod { return f.method }

// ProgramID is the ID of the program behind f's iterator, once open (for
// measurements: its BPF statistics).
func (f *Finder) ProgramID() (ebpf.ProgramID, error) {
	if f.it == nil {
		return 0, errors.New("read owners iterator: not open")
	}
	info, err := f.it.Info()
	if err != nil {
		return 0, fmt.Errorf("read owners iterator link: %w", err)
	}
	return info.Program, nil
}

// Owners finds the processes holding the sockets cs (one socket can be
// shared after fork). Sockets nobody holds are absent, and so are sockets
// no process may hold (conn.Conn.MayHaveOwner) or whose file is unknown
// (Conn.File 0: not yet accepted, or never seen with one).
func (f *Finder) Owners(cs []*conn.Conn) (map[uint64][]conn.Owner, error) {
	out := make(map[uint64][]conn.Owner, len(cs))
	keys := make([]uint64, 0, len(cs))
	vals := make([]uint64, 0, len(cs))
	asked := make(map[uint64]bool, len(cs))
	for _, c := range cs {
		if c.File != 0 && c.MayHaveOwner() {
			keys, vals = append(keys, c.File), append(vals, c.Cookie)
			asked[c.Cookie] = true
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	if err := f.open(); err != nil {
		return nil, err
	}
	if _, err := f.want.BatchUpdate(keys, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("write %s: %w", bpf.OwnersMapHckWant, err)
		}
		for i := range keys {
			if err := f.want.Put(keys[i], vals[i]); err != nil {
				return nil, fmt.Errorf("write %s: %w", bpf.OwnersMapHckWant, err)
			}
		}
	}
	// The walk records what it finds in hck_owned; what was seen before it
	// began may be out of date, and another hck-bpf's walk at the same time
	// may add sockets we did not ask about.
	began := conn.Now()
	raw, err := bpf.ReadIter(f.it, "owners iterator")
	if err != nil {
		return nil, err
	}
	if len(raw) > 0 {
		return nil, fmt.Errorf("owners iterator: %s is full: owners of %d processes not recorded", bpf.OwnersMapHckOwned, len(raw)/4)
	}
	comms := map[[16]int8]string{} // a few processes own many sockets: one string each
	err = f.eachOwned(func(k *bpf.OwnersHckOwnerKey, v *bpf.OwnersHckOwner) {
		if !asked[k.Cookie] || v.SeenNs < began || containsPID(out[k.Cookie], int(k.Pid)) {
			return
		}
		comm, ok := comms[v.Comm]
		if !ok {
			comm = commString(v.Comm[:])
			comms[v.Comm] = comm
		}
		out[k.Cookie] = append(out[k.Cookie], conn.Owner{PID: int(k.Pid), Comm: comm})
	})
	if err != nil {
		return nil, err
	}
	addCgroups(out)
	return out, nil
}

// addCgroups gives every owner its cgroup, read once per process (a few
// processes own many sockets). A process that exited since the walk keeps
// an empty cgroup.
func addCgroups(out map[uint64][]conn.Owner) {
	groups := map[int]cgroup.Info{}
	for _, os := range out {
		for i := range os {
			o := &os[i]
			info, ok := groups[o.PID]
			if !ok {
				info, _ = cgroup.Read(o.PID)
				groups[o.PID] = info
			}
			o.Cgroup, o.ContainerID, o.PodUID = info.Path, info.ContainerID, info.PodUID
		}
	}
}

// eachOwned reads hck_owned in batches.
func (f *Finder) eachOwned(fn func(*bpf.OwnersHckOwnerKey, *bpf.OwnersHckOwner)) error {
	err := bpf.BatchEach(f.owned, make([]bpf.OwnersHckOwnerKey, 4096), make([]bpf.OwnersHckOwner, 4096), fn)
	if err != nil {
		return fmt.Errorf("read %s: %w", bpf.OwnersMapHckOwned, err)
	}
	return nil
}

// Open finds the pinned owners iterator and its maps, or loads, attaches
// and pins them, ahead of the first Owners (which opens them otherwise).
func (f *Finder) Open() error { return f.open() }

// open finds the pinned owners iterator and its maps, or loads, attaches
// and pins them.
func (f *Finder) open() error {
	if f.it != nil {
		return nil
	}
	if f.method == 0 {
		m, err := bpf.ChooseOwnersIn(f.pinDir, false)
		if err != nil {
			return err
		}
		f.method = m
	}
	want, owned, it, err := bpf.OpenOwnersWith(f.method, f.pinDir, f.size, f.prealloc)
	if err != nil {
		return err
	}
	f.closeMaps()
	f.want, f.owned, f.it = want, owned, it
	return nil
}

// Prune removes from hck_want and hck_owned what belongs to sockets no
// longer tracked: tracked gives the file of a tracked socket, ok false
// when the cookie is not tracked. Maps another process made are opened
// from their pins; none pinned yet, nothing to do.
func (f *Finder) Prune(tracked func(cookie uint64) (file uint64, ok bool)) {
	for name, m := range map[string]**ebpf.Map{bpf.OwnersMapHckWant: &f.want, bpf.OwnersMapHckOwned: &f.owned} {
		if *m == nil {
			*m, _ = ebpf.LoadPinnedMap(filepath.Join(f.pinDir, name), nil)
		}
	}
	if f.want != nil {
		var file, cookie uint64
		var gone []uint64
		it := f.want.Iterate()
		for it.Next(&file, &cookie) {
			if have, ok := tracked(cookie); !ok || have != file {
				gone = append(gone, file)
			}
		}
		for _, g := range gone {
			_ = f.want.Delete(g)
		}
	}
	if f.owned != nil {
		var gone []bpf.OwnersHckOwnerKey
		_ = f.eachOwned(func(k *bpf.OwnersHckOwnerKey, _ *bpf.OwnersHckOwner) {
			if _, ok := tracked(k.Cookie); !ok {
				gone = append(gone, *k)
			}
		})
		for _, k := range gone {
			_ = f.owned.Delete(k)
		}
	}
}

// Close releases this process's handles; the pins stay.
func (f *Finder) Close() error {
	var errs []error
	if f.it != nil {
		errs = append(errs, f.it.Close())
		f.it = nil
	}
	errs = append(errs, f.closeMaps())
	return errors.Join(errs...)
}

func (f *Finder) closeMaps() error {
	var errs []error
	for _, m := range []**ebpf.Map{&f.want, &f.owned} {
		if *m != nil {
			errs = append(errs, (*m).Close())
			*m = nil
		}
	}
	return errors.Join(errs...)
}

func commString(c []int8) string {
	b := make([]byte, 0, len(c))
	for _, ch := range c {
		if ch == 0 {
			break
		}
		b = append(b, byte(ch))
	}
	return string(b)
}

func containsPID(os []conn.Owner, pid int) bool {
	for _, o := range os {
		if o.PID == pid {
			return true
		}
	}
	return false
}
