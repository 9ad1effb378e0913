package metrics

import (
	"io"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func scrapeBench(b *testing.B, tr Tracker) {
	m := New(tr, "dev")
	h := m.Handler(NewHealth(time.Minute))
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		_, _ = io.Copy(io.Discard, w.Body)
	}
}

// BenchmarkScrape: one GET /metrics through the handler, the tracker's
// counters faked.
func BenchmarkScrape(b *testing.B) { scrapeBench(b, &fakeTracker{read: true, entries: 60000}) }

// tracked60k is a real tracker whose map holds 60,000 made-up entries.
func tracked60k(b *testing.B) *tracking.Tracker {
	testnet.RequireRoot(b)
	pin := testnet.PinDir(b)
	tr, err := tracking.Open(tracking.Options{PinDir: pin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close() })
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "hck_conns"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	const n = 60000
	keys := make([]uint64, n)
	vals := make([]bpf.TrackerHckConn, n)
	for i := range keys {
		keys[i] = uint64(1<<40 + i)
		vals[i] = bpf.TrackerHckConn{EnteredNs: uint64(i), Sport: uint16(i), Dport: 80, Netns: 1,
			Family: 2, State: uint8(conn.CloseWait)}
	}
	if _, err := m.BatchUpdate(keys, vals, &ebpf.BatchOptions{}); err != nil {
		b.Fatal(err)
	}
	return tr
}

// BenchmarkScrape60k: a scrape with the real tracker, its map holding
// 60,000 sockets: what a scrape costs does not follow them.
func BenchmarkScrape60k(b *testing.B) { scrapeBench(b, tracked60k(b)) }

// BenchmarkCountByWalk60k: what "tracked by state" would cost a scrape
// if it read the map instead of taking the last sweep's counts.
func BenchmarkCountByWalk60k(b *testing.B) {
	tr := tracked60k(b)
	for b.Loop() {
		var by [16]int
		if err := tr.Walk(0, func(c *conn.Conn) { by[c.State&15]++ }); err != nil {
			b.Fatal(err)
		}
	}
}
