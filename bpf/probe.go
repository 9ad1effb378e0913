package bpf

import (
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// probeMapSize bounds the socket map of a probe: the verifier does not care
// how big it is, and a probe should cost the kernel next to nothing.
const probeMapSize = 64

// unpinned drops every pin flag of spec, so that loading it neither reads
// nor creates anything on bpffs: its maps are fresh, private and gone when
// closed. (Without a pin path a pinned-by-name map would not even load.)
func unpinned(spec *ebpf.CollectionSpec) {
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	if m := spec.Maps[TrackerMapHckConns]; m != nil {
		m.MaxEntries = probeMapSize
	}
}

// ProbeTracker proves that this kernel runs the tracker: it loads the
// tracker's programs with fresh, unpinned maps (the verifier checks them),
// attaches tp_btf/inet_sock_set_state and detaches it at once. Nothing is
// pinned, nothing already pinned is touched, and no earlier tracker is
// disturbed.
func ProbeTracker() error {
	spec, err := LoadTracker()
	if err != nil {
		return fmt.Errorf("load tracker spec: %w", err)
	}
	unpinned(spec)
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return explainLoad("tracker", "", 0, err)
	}
	defer coll.Close()
	prog := coll.Programs[TrackerProgHckSetState]
	if prog == nil {
		return fmt.Errorf("load tracker: no program %s in the object", TrackerProgHckSetState)
	}
	l, err := AttachTracker(prog)
	if err != nil {
		return err
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("detach tp_btf/inet_sock_set_state: %w", err)
	}
	return nil
}

// ProbeOwners proves that this kernel runs the owners iterator of method:
// it loads it with a fresh, unpinned hck_want map, attaches iter/task and
// reads it once. The map is empty, so the pass reports no socket; it
// returns how many bytes it read (0 unless the program changed).
func ProbeOwners(method OwnersMethod) (int, error) {
	spec, _, _, name, err := method.spec()
	if err != nil {
		return 0, err
	}
	unpinned(spec)
	what := "owners iterator (" + method.String() + ")"
	coll, err := ebpf.NewCollection(onlyProgram(spec, name))
	if err != nil {
		return 0, explainLoad(what, "", 0, err)
	}
	defer coll.Close()
	return ReadIterOnce(coll.Programs[name])
}

// ProbeSockets proves that this kernel runs the sockets iterator: it loads
// hck_sockets (the verifier checks it), attaches iter/tcp and reads one
// pass over the calling thread's network namespace. The program only
// reports: it changes no socket and no map. It returns how many bytes the
// pass produced.
func ProbeSockets() (int, error) {
	spec, err := LoadSockets()
	if err != nil {
		return 0, fmt.Errorf("load sockets spec: %w", err)
	}
	unpinned(spec)
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return 0, explainLoad("sockets iterator", "", 0, err)
	}
	defer coll.Close()
	prog := coll.Programs[SocketsProgHckSockets]
	if prog == nil {
		return 0, fmt.Errorf("load sockets iterator: no program %s in the object", SocketsProgHckSockets)
	}
	return ReadIterOnce(prog)
}

// ReadIterOnce attaches an iterator program, reads one full pass and
// detaches it. It returns how many bytes the pass produced.
func ReadIterOnce(prog *ebpf.Program) (int, error) {
	l, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return 0, fmt.Errorf("attach iterator: %w", err)
	}
	defer l.Close()
	it, err := l.Open()
	if err != nil {
		return 0, fmt.Errorf("open iterator: %w", err)
	}
	defer it.Close()
	n, err := io.Copy(io.Discard, it)
	if err != nil {
		return int(n), fmt.Errorf("read iterator: %w", err)
	}
	return int(n), nil
}
