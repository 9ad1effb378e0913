package testnet

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/loopsock"
)

// Connections from chosen addresses, for tests that pick connections by
// peer (kill --peer): 127.0.0.2, 127.0.0.3 (on lo in every namespace), or
// IPv6 addresses the test adds to lo (AddAddr).

// AddAddr adds addr (a prefix such as fd00::2/128 or 10.9.9.9/32) to the
// namespace's lo, without duplicate address detection.
func (ns *NS) AddAddr(t testing.TB, addr string) {
	t.Helper()
	p := netip.MustParsePrefix(addr)
	args := []string{"addr", "add", p.String(), "dev", "lo"}
	if p.Addr().Is6() {
		args = append([]string{"-6"}, append(args, "nodad")...)
	}
	ns.MustRun("ip", args...)
}

// ListenOn returns a listening socket on addr (port 0: a free one). On the
// IPv6 unspecified address it is dual-stack: IPv4 connections come in as
// IPv4-mapped IPv6 ones.
func (ns *NS) ListenOn(t testing.TB, addr netip.AddrPort) *Sock {
	t.Helper()
	af := unix.AF_INET6
	if addr.Addr().Is4() {
		af = unix.AF_INET
	}
	l := ns.socketBound(t, af, addr)
	l.listen()
	ns.Await(t, l.In(conn.Listen))
	return l
}

// ConnectFrom returns both ends of a connection from address from (a free
// port) to the listener l: server's peer is from. A dual-stack listener is
// reached on 127.0.0.1 by an IPv4 from.
func (ns *NS) ConnectFrom(t testing.TB, l *Sock, from netip.Addr) (client, server *Sock) {
	t.Helper()
	to := l.Local
	af := unix.AF_INET6
	if from.Is4() {
		af = unix.AF_INET
		if to.Addr().Is6() {
			to = netip.AddrPortFrom(loopsock.Loopback4, to.Port())
		}
	}
	client = ns.socketBound(t, af, netip.AddrPortFrom(from, 0))
	client.connect(to)
	server = l.accept()
	client.waitConnected()
	client.fill()
	ns.Await(t, client.In(conn.Established), server.In(conn.Established))
	return client, server
}

// socketBound is socket bound to addr.
func (ns *NS) socketBound(t testing.TB, af int, addr netip.AddrPort) *Sock {
	t.Helper()
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = loopsock.Socket(af, loopsock.Options{NonBlock: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &Sock{FD: fd, ns: ns, t: t}
	t.Cleanup(func() {
		if err := s.abort(); err != nil {
			t.Error(err)
		}
	})
	if err := ns.owns(fd); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, Sockaddr(addr)); err != nil {
		t.Fatalf("bind %s: %v", addr, err)
	}
	s.fill()
	return s
}
