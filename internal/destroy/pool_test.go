package destroy

import (
	"errors"
	"os"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestPool: one call with the sockets of two namespaces, interleaved,
// looks each up and destroys it from inside its own namespace (from
// another one, the test's own included, it would be "gone"); a namespace the pool cannot open is gone, not a failure; a
// namespace's destroyer closes with it, and every descriptor the pool
// opened is closed by CloseAll.
func TestPool(t *testing.T) {
	a, b := testnet.New(t), testnet.New(t)
	sc, err := scope.Resolve([]string{a.Path(), b.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var pairs []*pair
	var conns []*conn.Conn
	for range 3 {
		for _, ns := range []*testnet.NS{a, b} {
			ns.MustDo(func() error {
				ln, err := listen(t, lo4)
				if err != nil {
					return err
				}
				p, err := closeWait(t, ln, ln.addr)
				if err != nil {
					return err
				}
				p.conn.NetNS = ns.Inode()
				pairs, conns = append(pairs, p), append(conns, p.conn)
				return nil
			})
		}
	}
	before := openFDs(t)
	pool, err := NewPool(sc.Dup)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range pool.Lookup(conns) {
		if err != nil {
			t.Errorf("lookup %s in %d: %v", conns[i], conns[i].NetNS, err)
		}
	}
	if pool.Len() != 3 {
		t.Errorf("%d destroyers open, want 3: own and one per namespace", pool.Len())
	}
	stray := *conns[0]
	stray.NetNS = 1 // no namespace has inode 1
	errs := pool.Kill(append(conns, &stray))
	for i, err := range errs[:len(conns)] {
		if err != nil {
			t.Errorf("destroy %s in %d: %v", conns[i], conns[i].NetNS, err)
		}
		if got := tcpState(pairs[i].server); got != conn.Close {
			t.Errorf("%s in %s after destroy", conns[i], got)
		}
	}
	if err := errs[len(conns)]; !errors.Is(err, sweep.ErrGone) {
		t.Errorf("a socket of a namespace that is gone: %v, want ErrGone", err)
	}
	pool.Close(a.Inode())
	if pool.Len() != 2 {
		t.Errorf("%d destroyers open after closing a's, want 2", pool.Len())
	}
	if err := pool.CloseAll(); err != nil {
		t.Error(err)
	}
	if now := openFDs(t); now != before {
		t.Errorf("%d descriptors open after CloseAll, %d before the pool", now, before)
	}
	if err := pool.Lookup(conns[:1])[0]; !errors.Is(err, ErrClosed) {
		t.Errorf("lookup after CloseAll: %v, want ErrClosed", err)
	}
}
