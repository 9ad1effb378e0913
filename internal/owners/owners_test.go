package owners

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

func entries(t *testing.T, pin, name string) int {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, name), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	n := 0
	it := m.Iterate()
	k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
	for it.Next(&k, &v) {
		n++
	}
	return n
}

// TestOwnersAndPrune: only sockets a process may hold, with a known file,
// are asked about; what was asked stays in the pinned maps, and Prune
// drops it once the socket is no longer tracked (and not before), from
// this process or another.
func TestOwnersAndPrune(t *testing.T) {
	ns := testnet.New(t)
	pin := testnet.PinDir(t)
	if err := os.MkdirAll(pin, 0o700); err != nil {
		t.Fatal(err)
	}
	s, _ := ns.CloseWait(t, "tcp4")
	// No tracker here: the file addresses are made up (the tracking and
	// sweep tests find real owners through the tracker's entries).
	f := New(pin, 64)
	t.Cleanup(func() {
		f.Close()
		for _, n := range []string{bpf.OwnersMapHckWant, bpf.OwnersMapHckOwned, bpf.OwnersIterPin + bpf.OwnersDigest} {
			_ = os.Remove(filepath.Join(pin, n))
		}
	})
	// A socket no process may hold, or whose file is unknown, is not
	// asked about: nothing is loaded for it.
	got, err := f.Owners([]*conn.Conn{{Cookie: s.Cookie, State: conn.CloseWait, Timewait: true, File: 1}, {Cookie: 2, State: conn.CloseWait}})
	if err != nil || len(got) != 0 || f.it != nil {
		t.Fatalf("owners of sockets nobody may hold: %v %v (iterator loaded: %v)", got, err, f.it != nil)
	}
	// A file address no process has: asked about, found nowhere.
	got, err = f.Owners([]*conn.Conn{{Cookie: s.Cookie, State: conn.CloseWait, File: 0xffff888000000000}})
	if err != nil || len(got) != 0 {
		t.Fatalf("owners of an unheld file: %v %v", got, err)
	}
	if n := entries(t, pin, bpf.OwnersMapHckWant); n != 1 {
		t.Fatalf("%s holds %d entries, want the 1 asked about", bpf.OwnersMapHckWant, n)
	}
	f.Prune(func(cookie uint64) (uint64, bool) { return 0xffff888000000000, cookie == s.Cookie })
	if n := entries(t, pin, bpf.OwnersMapHckWant); n != 1 {
		t.Errorf("Prune dropped the entry of a socket still tracked: %d left", n)
	}
	// Another process's Finder prunes from the pins alone.
	other := New(pin, 64)
	other.Prune(func(uint64) (uint64, bool) { return 0, false })
	other.Close()
	if n := entries(t, pin, bpf.OwnersMapHckWant); n != 0 {
		t.Errorf("Prune left %d entries of sockets no longer tracked", n)
	}
}
