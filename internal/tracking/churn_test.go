package tracking

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// churnConns is how many connections TestChurn opens and closes gracefully,
// unless HCK_TEST_CHURN says how many: the kernel matrix (make
// test-kernels) runs the suite under qemu's TCG, about 11 times slower,
// and sets a smaller churn there rather than a longer timeout.
const churnConns = 100_000

// minChurn keeps a smaller churn meaningful: well above the namespace's
// 2000 timewait buckets, so the kernel drops timewait sockets without an
// event and reconcile has to notice.
const minChurn = 5_000

// churnCount is churnConns, or HCK_TEST_CHURN when set.
func churnCount(t *testing.T) int {
	v := os.Getenv("HCK_TEST_CHURN")
	if v == "" {
		return churnConns
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minChurn {
		t.Fatalf("HCK_TEST_CHURN=%q: want a number of connections, at least %d", v, minChurn)
	}
	return n
}

// 100k connections through every closing state leave the map holding the
// closing sockets that really remain, no more, and nothing overflows. The
// namespace keeps at most 2000 timewait sockets: the kernel drops the rest
// without an event, and reconcile must notice.
func TestChurn(t *testing.T) {
	ns := testnet.New(t)
	n := churnCount(t)
	tr := open(t, testnet.PinDir(t), 0)
	before, err := tr.Counters()
	if err != nil {
		t.Fatal(err)
	}
	ns.MustDo(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/tcp_max_tw_buckets", []byte("2000"), 0); err != nil {
			return err
		}
		return churn(n)
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
		n, after.Tracked-before.Tracked, st.Removed, len(real), len(tracked))
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
