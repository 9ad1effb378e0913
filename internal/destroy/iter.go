package destroy

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// iterKiller is the fallback for kernels built without
// CONFIG_INET_DIAG_DESTROY, where SOCK_DESTROY answers EOPNOTSUPP: it
// destroys full sockets in one walk of the namespace's TCP sockets, an
// iter/tcp program calling the bpf_sock_destroy() kfunc (Linux >= 6.5) for
// each socket whose cookie is in its kill map, in the state named there,
// and writing what it did back into the map. The kfunc cannot destroy
// timewait sockets. It is only a fallback: measured on Linux 6.18 (2
// cores, 2,000 loopback CLOSE_WAIT sockets a call, lookups included) it
// took 12.8-28.8 us a socket where netlink took 7.0-8.0 us, the walk
// visiting every TCP socket of the namespace (about 0.65 us each: iter/tcp
// takes a reference and the lock of each).
type iterKiller struct {
	objs  bpf.DestroyObjects
	link  *link.Iter
	netns uint32 // the namespace the kills are meant for
	cap   int    // the kill map's capacity: most sockets per walk
	keys  []uint64
	vals  []bpf.DestroyHckKill
}

// newIterKiller loads the destroy iterator. It fails on kernels without
// the kfunc (< 6.5) or without iter/tcp (< 5.9).
func newIterKiller(netns uint32) (*iterKiller, error) {
	spec, err := bpf.LoadDestroy()
	if err != nil {
		return nil, fmt.Errorf("load destroy iterator spec: %w", err)
	}
	k := &iterKiller{netns: netns, cap: int(spec.Maps[bpf.DestroyMapHckKills].MaxEntries)}
	if err := spec.LoadAndAssign(&k.objs, nil); err != nil {
		return nil, bpf.ExplainLoad("destroy iterator", err) // names the kfunc and 6.5 when it is missing
	}
	if k.link, err = link.AttachIter(link.IterOptions{Program: k.objs.HckDestroy}); err != nil {
		k.objs.Close()
		return nil, fmt.Errorf("attach destroy iterator: %w", err)
	}
	return k, nil
}

func (k *iterKiller) close() error {
	return errors.Join(k.link.Close(), k.objs.Close())
}

// iterResult is what the walk did with one socket.
type iterResult struct {
	destroyed bool // bpf_sock_destroy() returned 0
	// changed: the socket was found in another state than the one named
	// (state), and left alone.
	changed bool
	state   conn.State
	// errno is the kfunc's error when it failed; 0 when the socket was not
	// found as a full socket (gone, or a timewait socket by now).
	errno unix.Errno
}

// destroy destroys the full sockets named by cookies (at most k.cap, no
// duplicates) in one walk, each only if the walk finds it in states[i],
// and calls fn with the result for each cookie. The walk covers the
// namespace of the thread that opens it: in runs a function on a thread of
// the namespace meant (see Destroyer.inNetns). When it returns an error,
// the kill map may still hold entries: the caller must stop using k.
func (k *iterKiller) destroy(cookies []uint64, states []conn.State, in func(func() error) error, fn func(i int, r iterResult)) error {
	if len(cookies) > k.cap {
		return fmt.Errorf("%d sockets to destroy: the kill map holds %d", len(cookies), k.cap)
	}
	m := k.objs.HckKills
	if cap(k.vals) < len(cookies) {
		k.vals = make([]bpf.DestroyHckKill, len(cookies))
	}
	vals := k.vals[:len(cookies)]
	for i := range vals {
		vals[i] = bpf.DestroyHckKill{Netns: k.netns, Want: uint8(states[i])}
	}
	// Batch updates take no BPF_NOEXIST; the map is empty between walks.
	if _, err := m.BatchUpdate(cookies, vals, nil); err != nil {
		// A partial update leaves entries behind: clear them before
		// anything else runs the walk.
		return errors.Join(fmt.Errorf("fill kill map: %w", err), k.clear())
	}
	walkErr := k.walk(in)
	// Read back and empty the map, walk or not: a socket the walk did not
	// finish is still pending and goes to netlink.
	idx := make(map[uint64]int, len(cookies))
	for i, c := range cookies {
		idx[c] = i
	}
	if cap(k.keys) < k.cap {
		k.keys = make([]uint64, min(k.cap, 4096))
	}
	keys := k.keys[:min(len(k.keys), 4096)]
	out := make([]bpf.DestroyHckKill, len(keys))
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookupAndDelete(&cursor, keys, out, nil)
		for j := range n {
			i, ok := idx[keys[j]]
			if !ok {
				continue
			}
			v := &out[j]
			r := iterResult{}
			switch bpf.DestroyHckKillState(v.State) {
			case bpf.DestroyHckKillStateHCK_KILL_DONE:
				if v.Ret == 0 {
					r.destroyed = true
				} else {
					r.errno = unix.Errno(-v.Ret)
				}
			case bpf.DestroyHckKillStateHCK_KILL_CHANGED:
				r.changed, r.state = true, conn.State(v.Seen)
			}
			fn(i, r)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return errors.Join(fmt.Errorf("read kill map: %w", err), walkErr)
		}
	}
	return walkErr
}

// walk runs the iterator once. The iterator is opened by a thread in the
// namespace meant (in): the kernel captures the opener's namespace, and
// the walk covers it whichever thread reads. The program writes no
// output; reading to the end drives the walk.
func (k *iterKiller) walk(in func(func() error) error) error {
	var it io.ReadCloser
	err := in(func() (err error) {
		it, err = k.link.Open()
		return err
	})
	if err != nil {
		return fmt.Errorf("open destroy iterator: %w", err)
	}
	defer it.Close()
	var buf [64]byte
	for {
		n, err := it.Read(buf[:])
		if err == io.EOF || n == 0 && err == nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("run destroy iterator: %w", err)
		}
	}
}

// clear empties the kill map.
func (k *iterKiller) clear() error {
	var key uint64
	var keys []uint64
	it := k.objs.HckKills.Iterate()
	var v bpf.DestroyHckKill
	for it.Next(&key, &v) {
		keys = append(keys, key)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("clear kill map: %w", err)
	}
	for _, c := range keys {
		if err := k.objs.HckKills.Delete(c); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear kill map: %w", err)
		}
	}
	return nil
}
