package tracking

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// ReconcileStats says what one reconcile changed.
type ReconcileStats struct {
	Seen     int // sockets in closing states in the namespace
	Seeded   int // sockets the tracker had never seen (older than it, or lost to overflow)
	Updated  int // timewait sockets whose state or entry time became known
	Removed  int // entries whose socket is gone without an event
	Pruned   int // entries of network namespaces that no longer exist
	Overflow int // sockets that could not be seeded: the map is full
}

// Reconcile walks every TCP socket of the calling thread's network
// namespace with iter/tcp and brings the map in line with the kernel:
//   - a closing socket the tracker never saw is seeded, its age counted
//     from now (a lower bound) unless the TIME_WAIT timer gives it exactly;
//   - a timewait socket that moved from FIN_WAIT2 to TIME_WAIT, which no
//     event reports, gets its state and exact entry time;
//   - an entry of this namespace whose socket no longer exists (an expired
//     or reused timewait socket) is removed;
//   - an entry of a namespace that no longer exists is removed (a deleted
//     namespace takes its sockets without an event).
func (t *Tracker) Reconcile() (ReconcileStats, error) {
	var st ReconcileStats
	netns, err := CurrentNetNS()
	if err != nil {
		return st, err
	}
	start := conn.Now()
	recs, err := t.walkSockets()
	if err != nil {
		return st, err
	}
	st.Seen = len(recs)
	seen := make(map[uint64]struct{}, len(recs))
	m := t.objs.HckConns
	for i := range recs {
		r := &recs[i]
		seen[r.Cookie] = struct{}{}
		var cur bpf.TrackerHckConn
		err := m.Lookup(r.Cookie, &cur)
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
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
			} else if !errors.Is(err, ebpf.ErrKeyExist) {
				return st, fmt.Errorf("seed socket %d: %w", r.Cookie, err)
			}
		case err != nil:
			return st, fmt.Errorf("look up socket %d: %w", r.Cookie, err)
		case r.Conn.Flags&uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT) != 0:
			if next, changed := timewaitUpdate(cur, r.Conn, start); changed {
				if err := m.Update(r.Cookie, &next, ebpf.UpdateExist); err == nil {
					st.Updated++
				}
			}
		}
	}
	// Entries of this namespace with no socket behind them. One entered
	// after the walk started may belong to a socket the walk had passed.
	var stale, foreign []uint64
	var foreignNS []uint32
	err = t.forEach(func(cookie uint64, v *bpf.TrackerHckConn) {
		switch _, ok := seen[cookie]; {
		case v.Netns != netns:
			foreign, foreignNS = append(foreign, cookie), append(foreignNS, v.Netns)
		case !ok && v.EnteredNs < start:
			stale = append(stale, cookie)
		}
	})
	if err != nil {
		return st, err
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
	t.unwatchDead()
	for _, c := range stale {
		if err := m.Delete(c); err == nil {
			st.Removed++
		}
	}
	return st, nil
}

// unwatchDead removes namespaces that no longer exist from the watched set.
func (t *Tracker) unwatchDead() {
	var (
		ns   uint32
		one  uint8
		dead []uint32
	)
	live := t.liveNetNS(false)
	it := t.objs.HckNetns.Iterate()
	for it.Next(&ns, &one) {
		if ns != 0 && !live[ns] {
			dead = append(dead, ns)
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
	if t.sockets == nil {
		spec, err := bpf.LoadSockets()
		if err != nil {
			return nil, fmt.Errorf("load sockets spec: %w", err)
		}
		if err := spec.Variables["hck_hz"].Set(kernelHZ()); err != nil {
			return nil, fmt.Errorf("set hck_hz: %w", err)
		}
		var objs bpf.SocketsObjects
		if err := spec.LoadAndAssign(&objs, nil); err != nil {
			return nil, explainLoad(err, Options{PinDir: t.pinDir})
		}
		t.sockets = &objs
	}
	l, err := link.AttachIter(link.IterOptions{Program: t.sockets.HckSockets})
	if err != nil {
		return nil, fmt.Errorf("attach iter/tcp: %w", err)
	}
	defer l.Close()
	// The iterator walks the namespace of the thread that opens it.
	it, err := l.Open()
	if err != nil {
		return nil, fmt.Errorf("open iter/tcp: %w", err)
	}
	defer it.Close()
	raw, err := io.ReadAll(it)
	if err != nil {
		return nil, fmt.Errorf("read iter/tcp: %w", err)
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

// kernelHZ reads CONFIG_HZ from the running kernel's config; 0 if unknown.
func kernelHZ() uint32 {
	var u unix.Utsname
	_ = unix.Uname(&u)
	release := unix.ByteSliceToString(u.Release[:])
	for _, path := range []string{"/proc/config.gz", "/boot/config-" + release} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		var r io.Reader = f
		if strings.HasSuffix(path, ".gz") {
			gz, err := gzip.NewReader(f)
			if err != nil {
				f.Close()
				continue
			}
			r = gz
		}
		hz := parseHZ(r)
		f.Close()
		if hz != 0 {
			return hz
		}
	}
	return 0
}

func parseHZ(r io.Reader) uint32 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("CONFIG_HZ=")); ok {
			n, err := strconv.ParseUint(string(v), 10, 32)
			if err == nil {
				return uint32(n)
			}
		}
	}
	return 0
}
