package testnet

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// socketOf is what vishvananda/netlink parses of the inet_diag_msg of d.
func socketOf(d DiagSock) *netlink.Socket {
	m := &netlink.Socket{
		Family: uint8(d.Family), State: uint8(d.State), Timer: d.Timer, Retrans: d.Retrans,
		Expires: uint32(d.Expires / time.Millisecond), UID: d.UID, INode: d.Inode,
	}
	m.ID = netlink.SocketID{
		SourcePort: d.Local.Port(), DestinationPort: d.Remote.Port(),
		Source: net.IP(d.Local.Addr().AsSlice()), Destination: net.IP(d.Remote.Addr().AsSlice()),
		Interface: d.Ifindex, Cookie: [2]uint32{uint32(d.Cookie), uint32(d.Cookie >> 32)},
	}
	if d.Family == unix.AF_INET {
		// netlink gives IPv4 addresses in their 16-byte form.
		m.ID.Source, m.ID.Destination = m.ID.Source.To16(), m.ID.Destination.To16()
	}
	return m
}

func TestDiagSockOf(t *testing.T) {
	socks := []DiagSock{{
		Family: unix.AF_INET, State: conn.CloseWait,
		Local:  netip.MustParseAddrPort("127.0.0.1:8080"),
		Remote: netip.MustParseAddrPort("10.0.0.100:52431"),
		Cookie: 0x1122334455667788, Inode: 4242, UID: 1000, Timer: 1, Retrans: 2,
		Expires: 200 * time.Millisecond,
	}, {
		Family: unix.AF_INET6, State: conn.TimeWait,
		Local:  netip.MustParseAddrPort("[::1]:443"),
		Remote: netip.MustParseAddrPort("[fe80::1]:60000"),
		Cookie: 7, Ifindex: 3, Timer: 3, Expires: time.Minute,
	}, {
		Family: unix.AF_INET6, State: conn.Established,
		Local:  netip.MustParseAddrPort("[::ffff:10.0.0.1]:443"),
		Remote: netip.MustParseAddrPort("[::ffff:10.0.0.2]:60000"),
		Cookie: 8,
	}}
	for _, want := range socks {
		got, err := diagSockOf(socketOf(want))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("converted %+v\nwant      %+v", got, want)
		}
	}
	if !socks[1].Timewait() || socks[0].Timewait() {
		t.Error("Timewait is the timer 3 sockets")
	}
}

func TestDiagSockOfRefused(t *testing.T) {
	if _, err := diagSockOf(nil); err == nil {
		t.Error("missing inet_diag_msg converted")
	}
	if _, err := diagSockOf(&netlink.Socket{Family: unix.AF_UNIX}); err == nil {
		t.Error("AF_UNIX inet_diag_msg converted")
	}
}

// TestDumpSeesEveryKind: the dump (vishvananda/netlink's, in the test's
// namespace) sees a listener, a connection, a timewait socket and a
// request socket, each with its cookie, and nothing of the namespace the
// test started in.
func TestDumpSeesEveryKind(t *testing.T) {
	ns := New(t)
	l := ns.Listen(t, "tcp6")
	c, s := ns.Established(t, "tcp4")
	tw := ns.TimeWait(t, "tcp4")
	req, _, _ := ns.SynRecv(t, "tcp4")
	socks := ns.MustDump(t)
	for _, want := range []struct {
		s     *Sock
		state conn.State
	}{{l, conn.Listen}, {c, conn.Established}, {s, conn.Established}, {tw, conn.TimeWait}, {req, conn.SynRecv}} {
		d, ok := Lookup(socks, want.s.Cookie)
		if !ok || d.State != want.state || d.Local != want.s.Local || d.Remote != want.s.Remote {
			t.Errorf("%s: dump has %+v (found %v), want %s", want.s, d, ok, want.state)
		}
	}
	if d, _ := Lookup(socks, s.Cookie); d.Inode == 0 {
		t.Errorf("accepted socket %s without its inode: %+v", s, d)
	}
	if d, _ := Lookup(socks, tw.Cookie); !d.Timewait() || d.Inode != 0 {
		t.Errorf("timewait socket %s: %+v, want timer 3 and no inode", tw, d)
	}
	// 5 sockets, plus the peer of the request socket's client and its
	// listener: nothing else, whatever the host has.
	if len(socks) != 7 {
		t.Errorf("dump of a namespace with 7 sockets has %d: %v", len(socks), socks)
	}
}

func TestFlow(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"127.0.0.1:40000", "127.0.0.1:80", "ip saddr 127.0.0.1 tcp sport 40000 ip daddr 127.0.0.1 tcp dport 80"},
		{"[::1]:40000", "[::1]:80", "ip6 saddr ::1 tcp sport 40000 ip6 daddr ::1 tcp dport 80"},
	} {
		got := Flow(netip.MustParseAddrPort(tc.from), netip.MustParseAddrPort(tc.to))
		if got != tc.want {
			t.Errorf("Flow(%s, %s) = %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}
