package tracking

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// NStates is how many TCP states hck_states counts (indexed by conn.State).
const NStates = len(bpf.TrackerHckStateCounts{}.Entered)

// RecentMax is how many kills the pinned ring of recent kills holds.
const RecentMax = 128

// Recent is one socket a service destroyed, as kept in the pinned ring of
// recent kills (hck_recent) for `top`.
type Recent struct {
	Seq    uint64 // 1 for the ring's first kill, then one more each
	At     time.Time
	Conn   conn.Conn // Owner: the first owner known, with its comm only
	Age    time.Duration
	Reason string
	Rule   string
}

// View reads the maps pinned in a pin dir without attaching, creating or
// changing anything: `top`'s handle. A map not pinned (an older hck-bpf's
// pins, or nothing pinned) reads as absent.
type View struct {
	conns, states, recent, counters *ebpf.Map
	walk                            walkBuf
}

// OpenView opens what is pinned in pinDir. ok is false when no tracker is
// pinned there (no link): the View then reads nothing.
func OpenView(pinDir string) (v *View, ok bool, err error) {
	v = &View{}
	if !Pinned(pinDir) {
		return v, false, nil
	}
	for name, dst := range map[string]**ebpf.Map{bpf.TrackerMapHckConns: &v.conns, bpf.TrackerMapHckStates: &v.states,
		bpf.TrackerMapHckRecent: &v.recent, bpf.TrackerMapHckCounters: &v.counters} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if errors.Is(err, os.ErrNotExist) && name != bpf.TrackerMapHckConns {
			continue
		}
		if err != nil {
			v.Close()
			return nil, true, fmt.Errorf("open pinned %s: %w", name, err)
		}
		*dst = m
	}
	return v, true, nil
}

// Close releases the maps.
func (v *View) Close() {
	for _, m := range []*ebpf.Map{v.conns, v.states, v.recent, v.counters} {
		if m != nil {
			m.Close()
		}
	}
}

// Walk calls fn for every tracked socket (see Tracker.Walk).
func (v *View) Walk(fn func(c *conn.Conn)) error {
	if v.conns == nil {
		return nil
	}
	if v.walk.keys == nil {
		v.walk = walkBuf{keys: make([]uint64, walkBatch), vals: make([]bpf.TrackerHckConn, walkBatch)}
	}
	var c conn.Conn
	err := bpf.BatchEach(v.conns, v.walk.keys, v.walk.vals, func(k *uint64, val *bpf.TrackerHckConn) {
		c = fromBPF(*k, val)
		fn(&c)
	})
	if err != nil {
		return fmt.Errorf("walk hck_conns: %w", err)
	}
	return nil
}

// Entered sums the per-CPU entries per TCP state (hck_states); ok is false
// when the pins have no hck_states (a tracker pinned by an older hck-bpf).
func (v *View) Entered() (n [NStates]uint64, ok bool, err error) {
	if v.states == nil {
		return n, false, nil
	}
	var perCPU []bpf.TrackerHckStateCounts
	if err := v.states.Lookup(uint32(0), &perCPU); err != nil {
		return n, true, fmt.Errorf("read hck_states: %w", err)
	}
	for _, c := range perCPU {
		for i, e := range c.Entered {
			n[i] += e
		}
	}
	return n, true, nil
}

// Counters sums the tracker's per-CPU counters (Missed is not read).
func (v *View) Counters() (Counters, error) {
	if v.counters == nil {
		return Counters{}, nil
	}
	return readCounters(v.counters)
}

// MapSize is the capacity of the pinned socket map (0: none).
func (v *View) MapSize() uint32 {
	if v.conns == nil {
		return 0
	}
	return v.conns.MaxEntries()
}

// Recent reads the ring of recent kills, newest first (none when the pins
// have no ring).
func (v *View) Recent() ([]Recent, error) {
	if v.recent == nil {
		return nil, nil
	}
	return readRecent(v.recent)
}

func readRecent(m *ebpf.Map) ([]Recent, error) {
	var out []Recent
	var key uint32
	var val bpf.TrackerHckRecentKill
	it := m.Iterate()
	for it.Next(&key, &val) {
		if val.Seq == 0 {
			continue
		}
		r := Recent{Seq: val.Seq, At: time.Unix(0, int64(val.AtNs)), Conn: fromBPF(val.Cookie, &val.Conn),
			Age: time.Duration(val.AgeNs), Reason: cString(val.Reason[:]), Rule: cString(val.Rule[:])}
		if val.Pid != 0 {
			r.Conn.Owner = &conn.Owner{PID: int(val.Pid), Comm: cString(val.Comm[:])}
		}
		out = append(out, r)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read hck_recent: %w", err)
	}
	slices.SortFunc(out, func(a, b Recent) int { return int(b.Seq - a.Seq) })
	return out, nil
}

// Publish adds kills to the ring of recent kills, each in the slot of its
// number (Seq, which Publish assigns): the oldest are overwritten. The ring
// is created with the tracker's maps; one pinned by an older hck-bpf
// without it is created now.
func (t *Tracker) Publish(kills []Recent) error {
	if len(kills) == 0 {
		return nil
	}
	if t.recentSeq == 0 {
		last, err := readRecent(t.objs.HckRecent)
		if err != nil {
			return err
		}
		if len(last) > 0 {
			t.recentSeq = last[0].Seq
		}
	}
	for _, k := range kills {
		t.recentSeq++
		val := toRecentBPF(t.recentSeq, &k)
		if err := t.objs.HckRecent.Put(uint32(t.recentSeq%RecentMax), &val); err != nil {
			return fmt.Errorf("publish kill of socket %d: %w", k.Conn.Cookie, err)
		}
	}
	return nil
}

func toRecentBPF(seq uint64, k *Recent) bpf.TrackerHckRecentKill {
	c := &k.Conn
	val := bpf.TrackerHckRecentKill{Seq: seq, AtNs: uint64(k.At.UnixNano()), Cookie: c.Cookie, AgeNs: uint64(max(k.Age, 0))}
	val.Conn = bpf.TrackerHckConn{EnteredNs: c.Entered, Sport: c.Local.Port(), Dport: c.Remote.Port(), Netns: c.NetNS,
		Ifindex: c.Ifindex, State: uint8(c.State), Family: unix.AF_INET}
	if c.Local.Addr().Is6() && !c.Local.Addr().Is4In6() {
		val.Conn.Family = unix.AF_INET6
		val.Conn.Saddr, val.Conn.Daddr = c.Local.Addr().As16(), c.Remote.Addr().As16()
	} else {
		s, d := c.Local.Addr().Unmap().As4(), c.Remote.Addr().Unmap().As4()
		copy(val.Conn.Saddr[:], s[:])
		copy(val.Conn.Daddr[:], d[:])
	}
	if !c.Exact {
		val.Conn.Flags |= uint8(bpf.TrackerHckFlagHCK_F_LOWER_BOUND)
	}
	if c.Owner != nil {
		val.Pid = uint32(c.Owner.PID)
		putCString(val.Comm[:], c.Owner.Comm)
	}
	putCString(val.Rule[:], k.Rule)
	putCString(val.Reason[:], k.Reason)
	return val
}

// cString is a NUL-terminated C string as Go's.
func cString[T ~int8 | ~uint8](b []T) string {
	s := make([]byte, len(b))
	for i, c := range b {
		s[i] = byte(c)
	}
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// putCString copies s into b, cut to leave room for a NUL (never in the
// middle of a UTF-8 sequence).
func putCString[T ~int8 | ~uint8](b []T, s string) {
	if len(s) > len(b)-1 {
		n := len(b) - 1
		for n > 0 && s[n]&0xc0 == 0x80 {
			n--
		}
		s = s[:n]
	}
	for i := range b {
		b[i] = 0
	}
	for i := 0; i < len(s); i++ {
		b[i] = T(s[i])
	}
}
