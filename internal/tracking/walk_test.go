package tracking

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// fill puts n made-up entries of network namespace netns into the map
// (no socket is made: the inode is not a namespace's).
func fill(tb testing.TB, tr *Tracker, n int, netns uint32) {
	tb.Helper()
	keys := make([]uint64, n)
	vals := make([]bpf.TrackerHckConn, n)
	for i := range keys {
		keys[i] = uint64(1<<40 + i)
		vals[i] = bpf.TrackerHckConn{EnteredNs: uint64(i), Sport: uint16(i), Dport: 80, Netns: netns,
			Family: 2, State: uint8(conn.CloseWait), Saddr: [16]uint8{10, 0, 0, 1}, Daddr: [16]uint8{10, 0, 0, 2}}
	}
	if _, err := tr.objs.HckConns.BatchUpdate(keys, vals, &ebpf.BatchOptions{}); err != nil {
		tb.Fatal(err)
	}
}

// TestWalkFlat: Walk sees every entry of its namespace once, and its
// batches are reused: a walk of 20,000 entries allocates a handful of
// objects, not one per entry.
func TestWalkFlat(t *testing.T) {
	testnet.RequireRoot(t)
	tr, err := Open(Options{PinDir: testnet.PinDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const ns, n = 1, 20000
	fill(t, tr, n, ns)
	seen := 0
	if err := tr.Walk(ns, func(c *conn.Conn) { seen++ }); err != nil {
		t.Fatal(err)
	}
	if seen != n {
		t.Fatalf("walked %d entries, want %d", seen, n)
	}
	if err := tr.Walk(ns+1, func(*conn.Conn) { t.Fatal("walked an entry of another namespace") }); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(5, func() { _ = tr.Walk(ns, func(*conn.Conn) {}) })
	if allocs > 20 {
		t.Errorf("a walk of %d entries allocates %v times", n, allocs)
	}
}

// TestEntriesFromTheLastRead: Entries is what the last complete read of
// the map counted, whichever namespace the walk was for; nothing before
// the first read.
func TestEntriesFromTheLastRead(t *testing.T) {
	testnet.RequireRoot(t)
	tr, err := Open(Options{PinDir: testnet.PinDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if n, ok := tr.Entries(); ok {
		t.Fatalf("entries %d before any read", n)
	}
	fill(t, tr, 3000, 1)
	if err := tr.Walk(2, func(*conn.Conn) {}); err != nil {
		t.Fatal(err)
	}
	if n, ok := tr.Entries(); !ok || n != 3000 {
		t.Errorf("entries %d (%v) after a read of 3,000, want 3000", n, ok)
	}
	for i := range 1000 {
		if err := tr.Forget(uint64(1<<40 + i)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := tr.Entries(); n != 3000 {
		t.Errorf("entries %d before the next read, want the last read's 3000", n)
	}
	if _, err := tr.Conns(0); err != nil {
		t.Fatal(err)
	}
	if n, _ := tr.Entries(); n != 2000 {
		t.Errorf("entries %d after 1,000 forgotten, want 2000", n)
	}
}

// BenchmarkWalk100k: one sweep's read of 100,000 tracked sockets.
func BenchmarkWalk100k(b *testing.B) {
	testnet.RequireRoot(b)
	tr, err := Open(Options{PinDir: testnet.PinDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	fill(b, tr, 100000, 1)
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Walk(1, func(*conn.Conn) {}); err != nil {
			b.Fatal(err)
		}
	}
}
