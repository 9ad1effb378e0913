package tracking

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// ErrEventsClosed is returned by Events.Read after Close.
var ErrEventsClosed = ringbuf.ErrClosed

// Events is a service's line to the tracker. The service tells it when its
// timer fires (Arm, Fired); the tracker tells the service of a socket only
// when it is due before that timer, and lowers the timer itself, so a burst
// of transitions costs one event and the rest of the traffic none. Every
// other socket is found by the sweep the timer starts, which walks the map.
// One consumer at a time: the ring buffer has a single read position.
type Events struct {
	t     *Tracker
	rd    *ringbuf.Reader
	rec   ringbuf.Record
	cfg   bpf.TrackerHckCfg
	mem   []byte         // hck_armed, mapped
	armed *atomic.Uint64 // in mem: the timer as the tracker sees it
}

// Event is what the tracker announces: a socket due before the service's
// timer, or (Overflow) that the map was full and a socket went untracked.
type Event struct {
	Cookie uint64
	// Due is when a sweep must look at the socket (CLOCK_BOOTTIME ns):
	// the tracker has lowered the armed timer to it.
	Due uint64
	// Overflow: hck_conns refused a socket. Sent once, then again only
	// after ArmOverflow.
	Overflow bool
}

// Wakes say which sockets a service must hear of.
type Wakes struct {
	// NetNS is the service's scope: only sockets of these network
	// namespaces are announced; empty: those of every watched namespace
	// (a service covering every namespace). More than ScopeMax count as
	// empty: a socket of a namespace that another hck-bpf watches may then
	// wake the service for nothing.
	NetNS []uint32
	// After is, per closing state, how long after a socket enters it a
	// sweep may have to act on it: the smallest threshold the state can
	// have. A state missing, or ≤ 0, is never announced.
	After map[conn.State]time.Duration
}

// ScopeMax is the most namespaces the tracker tells apart for a service
// (Wakes.NetNS).
const ScopeMax = len(bpf.TrackerHckCfg{}.Scope)

// notArmed is hck_armed while a sweep runs: no timer, so the next socket
// due at all is announced.
const notArmed = math.MaxUint64

// Events switches the tracker's notifications on, the overflow one
// included, and opens the stream. The timer starts armed at 0: the
// service's first sweep is due at once.
func (t *Tracker) Events(w Wakes) (_ *Events, err error) {
	cfg, err := wakesCfg(w)
	if err != nil {
		return nil, fmt.Errorf("open events: %w", err)
	}
	e := &Events{t: t, cfg: cfg}
	e.mem, err = unix.Mmap(t.objs.HckArmed.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map hck_armed: %w", err)
	}
	e.armed = (*atomic.Uint64)(unsafe.Pointer(&e.mem[0]))
	e.armed.Store(0)
	if e.rd, err = ringbuf.NewReader(t.objs.HckEvents); err != nil {
		unix.Munmap(e.mem)
		return nil, fmt.Errorf("open hck_events: %w", err)
	}
	if err := t.setNotify(cfg); err != nil {
		e.rd.Close()
		unix.Munmap(e.mem)
		return nil, err
	}
	return e, nil
}

// wakesCfg is the tracker's configuration for w, notifications on.
func wakesCfg(w Wakes) (bpf.TrackerHckCfg, error) {
	cfg := bpf.TrackerHckCfg{Notify: 1, NotifyOverflow: 1}
	if len(w.NetNS) <= len(cfg.Scope) {
		cfg.Nscope = uint32(copy(cfg.Scope[:], w.NetNS))
	}
	for s, d := range w.After {
		if int(s) >= len(cfg.WakeNs) {
			return cfg, fmt.Errorf("no such TCP state %d", s)
		}
		if d > 0 {
			cfg.WakeNs[s] = uint64(d)
		}
	}
	return cfg, nil
}

// SetWakes changes which sockets the tracker announces (a reloaded
// configuration); the timer stays armed. It also asks for one more
// overflow event, as ArmOverflow does.
func (e *Events) SetWakes(w Wakes) error {
	cfg, err := wakesCfg(w)
	if err != nil {
		return fmt.Errorf("set wakes: %w", err)
	}
	if err := e.t.setNotify(cfg); err != nil {
		return err
	}
	e.cfg = cfg
	return nil
}

// Read blocks until the tracker announces something.
func (e *Events) Read() (Event, error) {
	var ev bpf.TrackerHckWake
	if err := e.rd.ReadInto(&e.rec); err != nil {
		return Event{}, err
	}
	if len(e.rec.RawSample) < int(unsafe.Sizeof(ev)) {
		return Event{}, fmt.Errorf("read hck_events: short record of %d bytes", len(e.rec.RawSample))
	}
	ev = *(*bpf.TrackerHckWake)(unsafe.Pointer(&e.rec.RawSample[0]))
	if ev.Cookie == 0 {
		return Event{Overflow: true}, nil
	}
	return Event{Cookie: ev.Cookie, Due: ev.DueNs}, nil
}

// Arm says the service's timer fires at at (CLOCK_BOOTTIME ns), or
// earlier: the tracker stays quiet about sockets due at or after it. The
// timer only moves earlier until it fires.
func (e *Events) Arm(at uint64) {
	for {
		old := e.armed.Load()
		if old <= at || e.armed.CompareAndSwap(old, at) {
			return
		}
	}
}

// Fired says the service's timer fired: until the next Arm, the tracker
// announces the next socket due at all. Call it before the sweep walks
// the map: a socket that entered its state before this is in the map for
// the walk; one after it, if earlier than the next timer, is announced.
func (e *Events) Fired() { e.armed.Store(notArmed) }

// ArmOverflow asks for one more overflow event: the next socket a full
// map refuses is announced.
func (e *Events) ArmOverflow() error {
	return e.t.setNotify(e.cfg)
}

// Close stops the notifications and the stream; a blocked Read returns
// ErrEventsClosed.
func (e *Events) Close() error {
	err := errors.Join(e.t.setNotify(bpf.TrackerHckCfg{}), e.rd.Close())
	e.armed = nil
	return errors.Join(err, unix.Munmap(e.mem))
}

func (t *Tracker) setNotify(cfg bpf.TrackerHckCfg) error {
	if err := t.objs.HckConfig.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("write hck_config: %w", err)
	}
	return nil
}
