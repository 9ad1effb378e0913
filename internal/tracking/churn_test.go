package tracking

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// churnConns is how many connections TestChurn opens and closes gracefully.
const churnConns = 100_000

// 100k connections through every closing state leave the map holding the
// closing sockets that really remain, no more, and nothing overflows. The
// namespace keeps at most 2000 timewait sockets: the kernel drops the rest
// without an event, and reconcile must notice.
func TestChurn(t *testing.T) {
	ns := testnet.New(t)
	tr := open(t, testnet.PinDir(t), 0)
	before, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	ns.MustDo(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/tcp_max_tw_buckets", []byte("2000"), 0); err != nil {
			return err
		}
		return churn(churnConns)
	})
	var st sweep.WalkStats
	ns.MustDo(func() (err error) { st, err = tr.Reconcile(nil); return err })
	after, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}

	real := map[uint64]conn.State{}
	for _, d := range ns.MustDump(t) {
		if d.State.Closing() {
			real[d.Cookie] = d.State
		}
	}
	tracked, err := tr.Conns(ns.Inode())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d connections: %d transitions tracked, reconcile removed %d stale entries; %d closing sockets remain, %d tracked",
		churnConns, after.Tracked-before.Tracked, st.Removed, len(real), len(tracked))
	if n := after.Overflow - before.Overflow; n != 0 {
		t.Errorf("overflow: %d", n)
	}
	for _, c := range tracked {
		s, ok := real[c.Cookie]
		if !ok {
			t.Errorf("tracked %s (cookie %d) has no socket", &c, c.Cookie)
			continue
		}
		if s != c.State {
			t.Errorf("tracked %s (cookie %d): the kernel says %s", &c, c.Cookie, s)
		}
	}
	if len(tracked) != len(real) {
		t.Errorf("map holds %d entries for %d closing sockets", len(tracked), len(real))
	}
}

// churn opens n connections on loopback and closes each gracefully, client
// first, so each passes FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK and
// TIME_WAIT.
func churn(n int) error {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(ln, lo); err != nil {
		return err
	}
	if err := unix.Listen(ln, 4096); err != nil {
		return err
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		return err
	}
	for i := range n {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(c, sa); err != nil {
			unix.Close(c)
			return fmt.Errorf("connection %d: %w", i, err)
		}
		s, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			unix.Close(c)
			return err
		}
		unix.Close(c)
		unix.Close(s)
	}
	return nil
}
