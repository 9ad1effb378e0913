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

// Events switches the tracker's notifications on and opens the stream.
func (t *Tracker) Events() (*Events, error) {
	rd, err := ringbuf.NewReader(t.objs.HckEvents)
	if err != nil {
		return nil, fmt.Errorf("open hck_events: %w", err)
	}
	if err := t.setNotify(true); err != nil {
		rd.Close()
		return nil, err
	}
	return &Events{t: t, rd: rd}, nil
}

// Read blocks until a socket enters a closing state.
func (e *Events) Read() (conn.Conn, error) {
	var ev bpf.TrackerHckEvent
	if err := e.rd.ReadInto(&e.rec); err != nil {
		return conn.Conn{}, err
	}
	if len(e.rec.RawSample) < int(unsafe.Sizeof(ev)) {
		return conn.Conn{}, fmt.Errorf("read hck_events: short record of %d bytes", len(e.rec.RawSample))
	}
	ev = *(*bpf.TrackerHckEvent)(unsafe.Pointer(&e.rec.RawSample[0]))
	return fromBPF(ev.Cookie, &ev.Conn), nil
}

// Close stops the notifications and the stream; a blocked Read returns
// ErrEventsClosed.
func (e *Events) Close() error {
	return errors.Join(e.t.setNotify(false), e.rd.Close())
}

func (t *Tracker) setNotify(on bool) error {
	cfg := bpf.TrackerHckCfg{}
	if on {
		cfg.Notify = 1
	}
	if err := t.objs.HckConfig.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("write hck_config: %w", err)
	}
	return nil
}
