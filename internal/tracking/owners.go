package tracking

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// The maps of files the owners iterator looks for, and of what it found.
const (
	wantPin  = "hck_want"
	ownedPin = "hck_owned"
)

// Owners finds the processes holding the sockets cs (one socket can be
// shared after fork) by their open files: one pass of the owners iterator
// over every process's file table, which compares table slots with the
// files of cs and reads nothing else. Sockets nobody holds are absent, and
// so are sockets whose file is unknown (Conn.File 0: not yet accepted, or
// never seen with one).
func (t *Tracker) Owners(cs []*conn.Conn) (map[uint64][]conn.Owner, error) {
	out := make(map[uint64][]conn.Owner)
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
	if err := t.openOwners(); err != nil {
		return nil, err
	}
	if _, err := t.want.BatchUpdate(keys, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("write %s: %w", wantPin, err)
		}
		for i := range keys {
			if err := t.want.Put(keys[i], vals[i]); err != nil {
				return nil, fmt.Errorf("write %s: %w", wantPin, err)
			}
		}
	}
	// The walk records what it finds in hck_owned; what was seen before it
	// began may be out of date, and another hck-bpf's walk at the same time
	// may add sockets we did not ask about.
	began := conn.Now()
	raw, err := readIter(t.ownersIter, "owners iterator")
	if err != nil {
		return nil, err
	}
	if len(raw) > 0 {
		return nil, fmt.Errorf("owners iterator: %s is full: owners of %d processes not recorded", ownedPin, len(raw)/4)
	}
	return out, t.forEachOwned(func(k *bpf.OwnersHckOwnerKey, v *bpf.OwnersHckOwner) {
		if asked[k.Cookie] && v.SeenNs >= began && !containsPID(out[k.Cookie], int(k.Pid)) {
			out[k.Cookie] = append(out[k.Cookie], conn.Owner{PID: int(k.Pid), Comm: commString(v.Comm[:])})
		}
	})
}

// forEachOwned reads hck_owned in batches.
func (t *Tracker) forEachOwned(fn func(*bpf.OwnersHckOwnerKey, *bpf.OwnersHckOwner)) error {
	err := batchEach(t.owned, make([]bpf.OwnersHckOwnerKey, 1024), make([]bpf.OwnersHckOwner, 1024), fn)
	if err != nil {
		return fmt.Errorf("read %s: %w", ownedPin, err)
	}
	return nil
}

// openOwners finds the pinned owners iterator and its hck_want map, or
// loads, attaches and pins them.
func (t *Tracker) openOwners() error {
	if t.ownersIter != nil {
		return nil
	}
	spec, err := bpf.LoadOwners()
	if err != nil {
		return fmt.Errorf("load owners spec: %w", err)
	}
	spec.Maps[bpf.OwnersMapHckWant].MaxEntries = t.MapSize()
	spec.Maps[bpf.OwnersMapHckOwned].MaxEntries = t.MapSize()
	want, err := ebpf.NewMapWithOptions(spec.Maps[bpf.OwnersMapHckWant], ebpf.MapOptions{PinPath: t.pinDir})
	if err != nil {
		return explainLoad(fmt.Errorf("%s: %w", wantPin, err), Options{PinDir: t.pinDir})
	}
	owned, err := ebpf.NewMapWithOptions(spec.Maps[bpf.OwnersMapHckOwned], ebpf.MapOptions{PinPath: t.pinDir})
	if err != nil {
		want.Close()
		return explainLoad(fmt.Errorf("%s: %w", ownedPin, err), Options{PinDir: t.pinDir})
	}
	it, err := t.pinnedIter(ownersIterPin, bpf.OwnersDigest, func() (*ebpf.Program, io.Closer, error) {
		var objs bpf.OwnersObjects
		err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{
			MapReplacements: map[string]*ebpf.Map{bpf.OwnersMapHckWant: want, bpf.OwnersMapHckOwned: owned},
		})
		if err != nil {
			return nil, nil, explainLoad(err, Options{PinDir: t.pinDir})
		}
		return objs.HckOwners, &objs, nil
	})
	if err != nil {
		want.Close()
		owned.Close()
		return err
	}
	t.want, t.owned, t.ownersIter = want, owned, it
	return nil
}

// pruneOwners removes from hck_want and hck_owned what belongs to sockets
// no longer tracked.
func (t *Tracker) pruneOwners() {
	// Another process may have made them: open the pins if need be.
	for name, m := range map[string]**ebpf.Map{wantPin: &t.want, ownedPin: &t.owned} {
		if *m == nil {
			*m, _ = ebpf.LoadPinnedMap(filepath.Join(t.pinDir, name), nil)
		}
	}
	var v bpf.TrackerHckConn
	if t.want != nil {
		var file, cookie uint64
		var gone []uint64
		it := t.want.Iterate()
		for it.Next(&file, &cookie) {
			if t.objs.HckConns.Lookup(cookie, &v) != nil || v.File != file {
				gone = append(gone, file)
			}
		}
		for _, f := range gone {
			_ = t.want.Delete(f)
		}
	}
	if t.owned != nil {
		var gone []bpf.OwnersHckOwnerKey
		_ = t.forEachOwned(func(k *bpf.OwnersHckOwnerKey, _ *bpf.OwnersHckOwner) {
			if t.objs.HckConns.Lookup(k.Cookie, &v) != nil {
				gone = append(gone, *k)
			}
		})
		for _, k := range gone {
			_ = t.owned.Delete(k)
		}
	}
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
