package loopsock

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/netns"
)

func TestSockaddr(t *testing.T) {
	for _, s := range []string{"127.0.0.1:8080", "[::1]:443", "[::ffff:10.0.0.1]:9"} {
		ap := netip.MustParseAddrPort(s)
		if got := AddrPort(Sockaddr(ap)); got != ap {
			t.Errorf("AddrPort(Sockaddr(%s)) = %s", ap, got)
		}
	}
}

// TestStates builds CLOSE_WAIT, FIN_WAIT2 and a FIN held behind a full
// window (FIN_WAIT1) in a namespace of the test's own, then aborts them.
func TestStates(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes sockets in a network namespace of its own (run: sudo make test)")
	}
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	err = ns.Do(func() error {
		for _, lo := range []netip.Addr{Loopback4, Loopback6} {
			o := Options{Buf: 4096, Timeout: 5 * time.Second}
			ln, addr, err := Listen(netip.AddrPortFrom(lo, 0), o)
			if err != nil {
				return err
			}
			defer unix.Close(ln)
			if addr.Addr() != lo || addr.Port() == 0 {
				t.Errorf("listening on %s", addr)
			}
			c, s, err := Pair(ln, o)
			if err != nil {
				return err
			}
			cc, err := Conn(c, conn.Established)
			if err != nil {
				return err
			}
			if cc.Remote != addr || cc.Cookie == 0 {
				t.Errorf("client %+v: want a cookie and %s as its peer", cc, addr)
			}
			if err := unix.Shutdown(c, unix.SHUT_WR); err != nil {
				return err
			}
			if err := Await(s, conn.CloseWait, o.Timeout); err != nil {
				return err
			}
			if err := Await(c, conn.FinWait2, o.Timeout); err != nil {
				return err
			}
			// The server fills the client's window, then its FIN waits.
			if err := Fill(s); err != nil {
				return err
			}
			if err := unix.Shutdown(s, unix.SHUT_WR); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
			if st, err := State(s); err != nil || st != conn.LastAck {
				t.Errorf("server after its FIN behind a full window: %s (%v), want LAST_ACK", st, err)
			}
			for _, fd := range []int{c, s} {
				if err := Abort(fd); err != nil {
					return err
				}
			}
			// Non-blocking pairs too.
			c, s, err = Pair(ln, Options{NonBlock: true})
			if err != nil {
				return err
			}
			if st, _ := State(c); st != conn.Established {
				t.Errorf("non-blocking client: %s", st)
			}
			_, _ = Abort(c), Abort(s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNoTesting: product code (the doctor) uses this package, so it must
// not import "testing", not even indirectly.
func TestNoTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".", "../doctor", "../../cmd/hck-bpf").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v: %s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "testing" || strings.HasSuffix(p, "/internal/testnet") {
			t.Errorf("the binary's packages import %s", p)
		}
	}
}

// TestPairFrom: a client bound with Options.From connects from that
// address, and the accepted end sees it as its peer.
func TestPairFrom(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes sockets in a network namespace of its own (run: sudo make test)")
	}
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	from := netip.AddrFrom4([4]byte{127, 0, 0, 2})
	err = ns.Do(func() error {
		ln, _, err := Listen(netip.AddrPortFrom(Loopback4, 0), Options{})
		if err != nil {
			return err
		}
		defer unix.Close(ln)
		c, s, err := Pair(ln, Options{From: from, Timeout: 5 * time.Second})
		if err != nil {
			return err
		}
		defer func() { _, _ = Abort(c), Abort(s) }()
		local, err := Local(c)
		if err != nil {
			return err
		}
		peer, err := Remote(s)
		if err != nil {
			return err
		}
		if local.Addr() != from || peer != local {
			t.Errorf("client %s, server's peer %s: want both from %s", local, peer, from)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
