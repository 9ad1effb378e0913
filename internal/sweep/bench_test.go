package sweep

import (
	"net/netip"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// BenchmarkRun is one live sweep's own work at the bench's size: 10,000
// hung CLOSE_WAIT sockets with an owner each, and their 10,000 FIN_WAIT2
// peers not hung yet; the source and the killer cost nothing.
func BenchmarkRun(b *testing.B) {
	const n = 10000
	src := &fakeSource{owners: map[uint64][]conn.Owner{}}
	for i := range n {
		local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 2000)
		remote := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(10000+i))
		cw := conn.Conn{Cookie: uint64(2 * i), State: conn.CloseWait, Local: local, Remote: remote, Exact: true, Entered: uint64(i)}
		fw := conn.Conn{Cookie: uint64(2*i + 1), State: conn.FinWait2, Local: remote, Remote: local, Exact: true, Entered: uint64(i)}
		src.conns = append(src.conns, cw, fw)
		src.owners[cw.Cookie] = []conn.Owner{{PID: 100, Comm: "holder"}}
	}
	pol := policy.Default()
	_ = pol.Thresholds.Set(conn.CloseWait, 1)
	_ = pol.Thresholds.Set(conn.FinWait2, 3600*1e9)
	b.ReportAllocs()
	for range b.N {
		rep, err := Run(src, act(&fakeKiller{}, false), Options{Policy: &pol}, 60*sec)
		if err != nil || rep.Destroyed != n {
			b.Fatalf("%d destroyed, %v", rep.Destroyed, err)
		}
	}
}
