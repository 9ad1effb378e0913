package tracking

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// ErrEventsClosed is returned by Events.Read after Close.
var ErrEventsClosed = ringbuf.ErrClosed

// Events streams sockets as they enter a closing state, so a service can
// sleep until the next deadline instead of polling the map. One consumer at
// a time: the ring buffer has a single read position.
type Events struct {
	t   *Tracker
	rd  *ringbuf.Reader
	rec ringbuf.Record
}

// Event is what the tracker announces: a socket that entered a closing
// state, or (Overflow) that the map was full and a socket went untracked.
type Event struct {
	Conn conn.Conn
	// Overflow: hck_conns refused a socket. Sent once, then again only
	// after ArmOverflow.
	Overflow bool
}

// Events switches the tracker's notifications on, the overflow one
// included, and opens the stream.
func (t *Tracker) Events() (*Events, error) {
	rd, err := ringbuf.NewReader(t.objs.HckEvents)
	if err != nil {
		return nil, fmt.Errorf("open hck_events: %w", err)
	}
	if err := t.setNotify(bpf.TrackerHckCfg{Notify: 1, NotifyOverflow: 1}); err != nil {
		rd.Close()
		return nil, err
	}
	return &Events{t: t, rd: rd}, nil
}

// Read blocks until the tracker announces something.
func (e *Events) Read() (Event, error) {
	var ev bpf.TrackerHckEvent
	if err := e.rd.ReadInto(&e.rec); err != nil {
		return Event{}, err
	}
	if len(e.rec.RawSample) < int(unsafe.Sizeof(ev)) {
		return Event{}, fmt.Errorf("read hck_events: short record of %d bytes", len(e.rec.RawSample))
	}
	ev = *(*bpf.TrackerHckEvent)(unsafe.Pointer(&e.rec.RawSample[0]))
	if ev.Cookie == 0 {
		return Event{Overflow: true}, nil
	}
	return Event{Conn: fromBPF(ev.Cookie, &ev.Conn)}, nil
}

// ArmOverflow asks for one more overflow event: the next socket a full
// map refuses is announced.
func (e *Events) ArmOverflow() error {
	return e.t.setNotify(bpf.TrackerHckCfg{Notify: 1, NotifyOverflow: 1})
}

// Close stops the notifications and the stream; a blocked Read returns
// ErrEventsClosed.
func (e *Events) Close() error {
	return errors.Join(e.t.setNotify(bpf.TrackerHckCfg{}), e.rd.Close())
}

func (t *Tracker) setNotify(cfg bpf.TrackerHckCfg) error {
	if err := t.objs.HckConfig.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("write hck_config: %w", err)
	}
	return nil
}
