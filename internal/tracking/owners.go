package tracking

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// Owners maps each tracked socket held open by a process to those
// processes (one socket can be shared after fork). Sockets nobody holds,
// orphans and timewait sockets, are absent. One pass of iter/task_file over
// every open file on the host; only tracked sockets are reported.
func (t *Tracker) Owners() (map[uint64][]conn.Owner, error) {
	if t.owners == nil {
		spec, err := bpf.LoadOwners()
		if err != nil {
			return nil, fmt.Errorf("load owners spec: %w", err)
		}
		var objs bpf.OwnersObjects
		err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{
			MapReplacements: map[string]*ebpf.Map{"hck_conns": t.objs.HckConns},
		})
		if err != nil {
			return nil, explainLoad(err, Options{PinDir: t.pinDir})
		}
		t.owners = &objs
	}
	l, err := link.AttachIter(link.IterOptions{Program: t.owners.HckOwners})
	if err != nil {
		return nil, fmt.Errorf("attach iter/task_file: %w", err)
	}
	defer l.Close()
	it, err := l.Open()
	if err != nil {
		return nil, fmt.Errorf("open owners iterator: %w", err)
	}
	defer it.Close()
	raw, err := io.ReadAll(it)
	if err != nil {
		return nil, fmt.Errorf("read owners iterator: %w", err)
	}
	return parseOwners(raw)
}

func parseOwners(raw []byte) (map[uint64][]conn.Owner, error) {
	var rec bpf.OwnersHckOwner
	size := int(unsafe.Sizeof(rec))
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("read owners iterator: %d bytes is not a whole number of %d-byte records", len(raw), size)
	}
	out := make(map[uint64][]conn.Owner)
	r := bytes.NewReader(raw)
	for r.Len() > 0 {
		if err := binary.Read(r, binary.NativeEndian, &rec); err != nil {
			return nil, fmt.Errorf("decode owner record: %w", err)
		}
		comm := make([]byte, 0, len(rec.Comm))
		for _, c := range rec.Comm {
			if c == 0 {
				break
			}
			comm = append(comm, byte(c))
		}
		o := conn.Owner{PID: int(rec.Pid), Comm: string(comm)}
		if !containsPID(out[rec.Cookie], o.PID) {
			out[rec.Cookie] = append(out[rec.Cookie], o)
		}
	}
	return out, nil
}

func containsPID(os []conn.Owner, pid int) bool {
	for _, o := range os {
		if o.PID == pid {
			return true
		}
	}
	return false
}
