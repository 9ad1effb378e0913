package testnet

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// TestFilterRemove lifts each builder's packet loss and checks that the
// connection moves on the way TCP says, keeping its cookies.
func TestFilterRemove(t *testing.T) {
	ns := New(t)
	for _, fam := range Families {
		t.Run("FinWait1/"+fam, func(t *testing.T) {
			t.Parallel()
			c, s := ns.FinWait1(t, fam)
			time.Sleep(2 * time.Second)
			d := c.WaitState(conn.FinWait1)
			if d.Retrans == 0 {
				t.Errorf("%s: FIN not retransmitted after 2s", d)
			}
			t.Logf("after 2s: %s retrans %d, next in %v", d, d.Retrans, d.Expires)
			c.Filter.Remove(t)
			ns.Await(t, c.In(conn.FinWait2), s.In(conn.CloseWait))
		})
		t.Run("LastAckOrphan/"+fam, func(t *testing.T) {
			t.Parallel()
			s, c := ns.LastAckOrphan(t, fam)
			s.Filter.Remove(t)
			ns.Await(t, s.Gone(), c.InTimewait(conn.TimeWait))
		})
		t.Run("Closing/"+fam, func(t *testing.T) {
			t.Parallel()
			a, b := ns.Closing(t, fam)
			a.Filter.Remove(t)
			// Both ends end as timewait sockets under their own cookies.
			ns.Await(t, a.InTimewait(conn.TimeWait), b.InTimewait(conn.TimeWait))
		})
		t.Run("SynSent/"+fam, func(t *testing.T) {
			t.Parallel()
			c := ns.SynSent(t, fam)
			c.Filter.Remove(t)
			// The next SYN reaches a port nobody listens on: reset.
			ns.Await(t, c.Gone())
			errno, err := unix.GetsockoptInt(c.FD, unix.SOL_SOCKET, unix.SO_ERROR)
			if err != nil || !errors.Is(unix.Errno(errno), unix.ECONNREFUSED) {
				t.Errorf("SO_ERROR %v (%v), want ECONNREFUSED", unix.Errno(errno), err)
			}
		})
		t.Run("SynRecv/"+fam, func(t *testing.T) {
			t.Parallel()
			req, c, l := ns.SynRecv(t, fam)
			l.Filter.Remove(t)
			// The listener retransmits its SYN-ACK, the client acknowledges
			// again, and the request becomes a full socket that keeps the
			// request socket's cookie.
			start := time.Now()
			s := l.accept()
			t.Logf("accepted after %v", time.Since(start).Round(time.Millisecond))
			ns.Await(t, s.In(conn.Established), c.In(conn.Established))
			if s.Remote != c.Local {
				t.Errorf("accepted %s, want a connection from %s", s, c.Local)
			}
			if s.Cookie != req.Cookie {
				t.Errorf("accepted socket has cookie %d, request socket had %d", s.Cookie, req.Cookie)
			}
		})
	}
}
