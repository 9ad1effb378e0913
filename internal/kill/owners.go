package kill

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/owners"
)

// Who holds the sockets a kill picked. A sock_diag dump names a socket by
// tuple, cookie and inode, not by its open file, and the file is how the
// owners iterator recognises a socket in a process's file table without
// reading every open file of the host (reading each file for its inode
// made that walk 4x slower: 14 ms instead of 3.5 ms over 60,000 open
// sockets). So, in two steps:
//
//  1. the sockfile program (bpf/sockfile.bpf.c), run on a thread in the
//     sockets' namespace, finds each socket with the kernel's own hash
//     lookup by tuple, checks its cookie, and gives its file's address
//     (0.6 ms for 1,000 sockets);
//  2. the owners iterator walks every process's file table once for all
//     those files (internal/owners), as a sweep does.
//
// Both are pinned in the pin dir's subdirectory bpf.KillPinDir, with maps
// of their own: the service's owners maps are pruned by every sweep of
// the sockets it does not track, which would race with a kill. Kills take
// turns on that directory (an flock) and leave its maps empty.

const (
	// ownersSize is the size of the kill's owners maps (files asked about,
	// owners found); larger kills ask in batches of ownersBatch.
	ownersSize  = 16384
	ownersBatch = 4096
	// filesBatch is how many sockets one run of the sockfile program
	// looks up (its map's size).
	filesBatch = 4096
	// lockWait bounds the wait for another kill to finish with the pins.
	lockWait = 30 * time.Second
)

// ownerLookup is the kill's owner lookup, its pin dir locked.
type ownerLookup struct {
	dir    string
	lockFD int
	prog   *ebpf.Program // the sockfile program
	files  *ebpf.Map     // its hck_sockfiles
	finder *owners.Finder
	// want and owned are the finder's maps, opened again to empty them.
	want, owned *ebpf.Map
	// clearing is the clear of the last batch's entries, which runs
	// while the kill goes on (it destroys meanwhile); nil when none.
	clearing chan error
}

// openOwners opens (loading and pinning on first use) the kill's owner
// lookup under pinDir, which must exist, and takes its lock.
func openOwners(pinDir string) (_ *ownerLookup, err error) {
	o := &ownerLookup{dir: filepath.Join(pinDir, bpf.KillPinDir), lockFD: -1}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	if err := os.Mkdir(o.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", o.dir, err)
	}
	if err := o.lock(); err != nil {
		return nil, err
	}
	if o.prog, o.files, err = bpf.OpenSockfile(o.dir); err != nil {
		return nil, err
	}
	o.finder = owners.NewPrealloc(o.dir, ownersSize)
	if err := o.finder.Open(); err != nil {
		return nil, err
	}
	for name, m := range map[string]**ebpf.Map{bpf.OwnersMapHckWant: &o.want, bpf.OwnersMapHckOwned: &o.owned} {
		if *m, err = ebpf.LoadPinnedMap(filepath.Join(o.dir, name), nil); err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
	}
	// What a kill that died midway left in the maps.
	return o, o.clear(nil, nil)
}

// lock takes the directory's lock, waiting up to lockWait for another kill.
func (o *ownerLookup) lock() error {
	fd, err := unix.Open(o.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", o.dir, err)
	}
	o.lockFD = fd
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, unix.EWOULDBLOCK):
			return fmt.Errorf("lock %s: %w", o.dir, err)
		case time.Now().After(deadline):
			return fmt.Errorf("lock %s: another kill has held it for %s", o.dir, lockWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// close waits for the last clear, and releases everything, the lock last.
func (o *ownerLookup) close() error {
	err := o.wait()
	if o.finder != nil {
		_ = o.finder.Close()
	}
	for _, m := range []*ebpf.Map{o.want, o.owned} {
		if m != nil {
			m.Close()
		}
	}
	if o.prog != nil {
		o.prog.Close()
	}
	if o.files != nil {
		o.files.Close()
	}
	if o.lockFD >= 0 {
		unix.Close(o.lockFD) // drops the lock
	}
	return err
}

// wait waits for the clear under way, if any.
func (o *ownerLookup) wait() error {
	if o.clearing == nil {
		return nil
	}
	err := <-o.clearing
	o.clearing = nil
	return err
}

// fileOf is what the sockfile program said of one socket.
type fileOf struct {
	found bool   // the socket was found by tuple and cookie
	file  uint64 // its open file; 0: none (a kernel socket)
}

// findFiles looks the sockets socks of namespace ns up by tuple and
// cookie, and returns what it found, by cookie.
func (o *ownerLookup) findFiles(ns *netns.NS, socks []*Socket) (map[uint64]fileOf, error) {
	out := make(map[uint64]fileOf, len(socks))
	n := min(len(socks)+1, filesBatch)
	keys := make([]uint32, 0, n)
	vals := make([]bpf.SockfileHckSockfile, 0, n)
	for lo := 0; lo < len(socks); lo += filesBatch - 1 {
		batch := socks[lo:min(len(socks), lo+filesBatch-1)]
		keys, vals = keys[:0], vals[:0]
		for i, s := range batch {
			keys = append(keys, uint32(i))
			vals = append(vals, sockfileOf(&s.Conn))
		}
		// The list ends at an entry of family 0.
		keys = append(keys, uint32(len(batch)))
		vals = append(vals, bpf.SockfileHckSockfile{})
		if _, err := o.files.BatchUpdate(keys, vals, nil); err != nil {
			return nil, fmt.Errorf("write %s: %w", bpf.SockfileMapHckSockfiles, err)
		}
		err := ns.Do(func() error {
			_, err := o.prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}) // an Ethernet header's worth
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("run the sockfile program in network namespace %s: %w", ns, err)
		}
		var cur ebpf.MapBatchCursor
		n, err := o.files.BatchLookup(&cur, keys, vals, nil)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, fmt.Errorf("read %s: %w", bpf.SockfileMapHckSockfiles, err)
		}
		for i := range min(n, len(batch)) {
			out[batch[i].Cookie] = fileOf{found: vals[i].Found == 1 && vals[i].Cookie == batch[i].Cookie, file: vals[i].File}
		}
	}
	return out, nil
}

// sockfileOf is c as the sockfile program takes it: an IPv4-mapped IPv6
// connection as IPv4, the way the kernel hashes it.
func sockfileOf(c *conn.Conn) bpf.SockfileHckSockfile {
	v := bpf.SockfileHckSockfile{Cookie: c.Cookie, Sport: c.Local.Port(), Dport: c.Remote.Port()}
	l, r := c.Local.Addr(), c.Remote.Addr()
	if l.Is4In6() && r.Is4In6() {
		l, r = l.Unmap(), r.Unmap()
	}
	if l.Is4() {
		v.Family = unix.AF_INET
		a, b := l.As4(), r.As4()
		copy(v.Saddr[:], a[:])
		copy(v.Daddr[:], b[:])
	} else {
		v.Family = unix.AF_INET6
		v.Saddr, v.Daddr = l.As16(), r.As16()
	}
	return v
}

// owners finds the processes holding cs (each with its File set) by one
// walk of every file table per ownersBatch sockets, and empties the maps
// after each (the last one while the caller goes on: close waits for it).
func (o *ownerLookup) owners(cs []*conn.Conn) (map[uint64][]conn.Owner, error) {
	out := make(map[uint64][]conn.Owner, len(cs))
	for lo := 0; lo < len(cs); lo += ownersBatch {
		batch := cs[lo:min(len(cs), lo+ownersBatch)]
		if err := o.wait(); err != nil {
			return nil, err
		}
		found, err := o.finder.Owners(batch)
		if err != nil {
			return nil, err
		}
		var files []uint64
		var keys []bpf.OwnersHckOwnerKey
		for _, c := range batch {
			if c.File != 0 {
				files = append(files, c.File)
			}
			for _, w := range found[c.Cookie] {
				keys = append(keys, bpf.OwnersHckOwnerKey{Cookie: c.Cookie, Pid: uint32(w.PID)})
			}
			if len(found[c.Cookie]) > 0 {
				out[c.Cookie] = found[c.Cookie]
			}
		}
		o.clearing = make(chan error, 1)
		go func() { o.clearing <- o.clear(files, keys) }()
	}
	return out, nil
}

// clear deletes files from the kill's hck_want and keys from its
// hck_owned; with neither given, everything in them (what a kill that died
// midway left behind).
func (o *ownerLookup) clear(files []uint64, keys []bpf.OwnersHckOwnerKey) error {
	if files == nil && keys == nil {
		var f, v uint64
		for it := o.want.Iterate(); it.Next(&f, &v); {
			files = append(files, f)
		}
		var k bpf.OwnersHckOwnerKey
		var w bpf.OwnersHckOwner
		for it := o.owned.Iterate(); it.Next(&k, &w); {
			keys = append(keys, k)
		}
	}
	if err := deleteAll(o.want, files); err != nil {
		return fmt.Errorf("clear %s: %w", bpf.OwnersMapHckWant, err)
	}
	if err := deleteAll(o.owned, keys); err != nil {
		return fmt.Errorf("clear %s: %w", bpf.OwnersMapHckOwned, err)
	}
	return nil
}

// deleteAll deletes keys from m, in one batch where the kernel can.
func deleteAll[K any](m *ebpf.Map, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchDelete(keys, nil)
	if err == nil {
		return nil
	}
	// A key already gone stops a batch: delete one by one.
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}
