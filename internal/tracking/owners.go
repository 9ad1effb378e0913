package tracking

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// wantPin is the map of files the owners iterator looks for.
const wantPin = "hck_want"

// NeedsOwner reports whether a process may hold c: a timewait socket or an
// orphan (closed by its process) has no owner, and never will again.
func NeedsOwner(c *conn.Conn) bool { return !c.Timewait && !c.Orphan }

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
		if c.File != 0 && NeedsOwner(c) {
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
	raw, err := readIter(t.ownersIter, "owners iterator")
	if err != nil {
		return nil, err
	}
	// Other hck-bpf processes may be asking about other sockets at the
	// same time: keep the answers to our questions.
	return out, parseOwners(raw, func(cookie uint64, o conn.Owner) {
		if asked[cookie] && !containsPID(out[cookie], o.PID) {
			out[cookie] = append(out[cookie], o)
		}
	})
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
	want, err := ebpf.NewMapWithOptions(spec.Maps[bpf.OwnersMapHckWant], ebpf.MapOptions{PinPath: t.pinDir})
	if err != nil {
		return explainLoad(fmt.Errorf("%s: %w", wantPin, err), Options{PinDir: t.pinDir})
	}
	it, err := t.pinnedIter(ownersIterPin, bpf.OwnersDigest, func() (*ebpf.Program, io.Closer, error) {
		var objs bpf.OwnersObjects
		err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{
			MapReplacements: map[string]*ebpf.Map{bpf.OwnersMapHckWant: want},
		})
		if err != nil {
			return nil, nil, explainLoad(err, Options{PinDir: t.pinDir})
		}
		return objs.HckOwners, &objs, nil
	})
	if err != nil {
		want.Close()
		return err
	}
	t.want, t.ownersIter = want, it
	return nil
}

// pruneWant removes the files of sockets no longer tracked from hck_want.
func (t *Tracker) pruneWant() {
	if t.want == nil {
		m, err := ebpf.LoadPinnedMap(filepath.Join(t.pinDir, wantPin), nil)
		if err != nil {
			return // nothing asked yet
		}
		t.want = m
	}
	var file, cookie uint64
	var gone []uint64
	it := t.want.Iterate()
	for it.Next(&file, &cookie) {
		var v bpf.TrackerHckConn
		if t.objs.HckConns.Lookup(cookie, &v) != nil || v.File != file {
			gone = append(gone, file)
		}
	}
	for _, f := range gone {
		_ = t.want.Delete(f)
	}
}

func parseOwners(raw []byte, fn func(cookie uint64, o conn.Owner)) error {
	size := int(unsafe.Sizeof(bpf.OwnersHckOwner{}))
	if len(raw)%size != 0 {
		return fmt.Errorf("read owners iterator: %d bytes is not a whole number of %d-byte records", len(raw), size)
	}
	for off := 0; off < len(raw); off += size {
		rec := (*bpf.OwnersHckOwner)(unsafe.Pointer(&raw[off]))
		comm := make([]byte, 0, len(rec.Comm))
		for _, c := range rec.Comm {
			if c == 0 {
				break
			}
			comm = append(comm, byte(c))
		}
		fn(rec.Cookie, conn.Owner{PID: int(rec.Pid), Comm: string(comm)})
	}
	return nil
}

func containsPID(os []conn.Owner, pid int) bool {
	for _, o := range os {
		if o.PID == pid {
			return true
		}
	}
	return false
}
