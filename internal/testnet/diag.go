package testnet

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// DiagSock is one TCP socket as a sock_diag dump reports it.
type DiagSock struct {
	Family int // unix.AF_INET or unix.AF_INET6
	// State is the state the kernel reports. A timewait socket reports its
	// substate (FIN_WAIT2 or TIME_WAIT); a request socket (NEW_SYN_RECV in
	// the kernel) reports SYN_RECV.
	State   conn.State
	Local   netip.AddrPort
	Remote  netip.AddrPort
	Cookie  uint64
	Ifindex uint32
	// Inode is the socket's inode; 0 when no file holds it (orphans,
	// timewait and request sockets).
	Inode uint32
	UID   uint32
	// Timer is idiag_timer: 0 none, 1 retransmit, 2 keepalive (also the
	// FIN_WAIT2 timer of an orphan), 3 timewait, 4 zero-window probe.
	Timer   uint8
	Retrans uint8
	// Expires is when Timer fires, from now.
	Expires time.Duration
}

// Timewait reports whether d is a timewait socket (TIME_WAIT, or FIN_WAIT2
// after close): the only kind whose timer is the timewait timer.
func (d DiagSock) Timewait() bool { return d.Timer == 3 }

func (d DiagSock) String() string {
	s := fmt.Sprintf("%s %s -> %s cookie=%d", d.State, d.Local, d.Remote, d.Cookie)
	if d.Timewait() {
		s += " timewait"
	}
	if d.Inode == 0 {
		s += " nofile"
	}
	return s
}

// Dump lists every TCP socket of the namespace, IPv4 and IPv6, in every
// state including TIME_WAIT, FIN_WAIT2-timewait and request sockets. The
// dump is vishvananda/netlink's SocketDiagTCPInfo, through a netlink socket
// opened inside the namespace (netlink.NewHandleAt): it sees only that
// namespace's sockets, and the tests check hck-bpf against a parser it did
// not write.
func (ns *NS) Dump() ([]DiagSock, error) {
	socks, err := ns.dump()
	if err != nil {
		return nil, fmt.Errorf("dump sockets of %s: %w", ns.Name, err)
	}
	return socks, nil
}

func (ns *NS) dump() ([]DiagSock, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.diag == nil {
		// Only NETLINK_SOCK_DIAG: a request of another family would go
		// out on a socket of the calling thread's namespace.
		h, err := netlink.NewHandleAt(ns.ns.Handle(), unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return nil, fmt.Errorf("open sock_diag: %w", err)
		}
		ns.diag = h
	}
	var socks []DiagSock
	for _, af := range []uint8{unix.AF_INET, unix.AF_INET6} {
		resp, err := ns.diag.SocketDiagTCPInfo(af)
		// The tables changed under the dump (NLM_F_DUMP_INTR): a retry
		// gets a consistent answer.
		for try := 1; errors.Is(err, netlink.ErrDumpInterrupted) && try < 5; try++ {
			resp, err = ns.diag.SocketDiagTCPInfo(af)
		}
		if err != nil {
			return nil, fmt.Errorf("dump family %d: %w", af, err)
		}
		for _, r := range resp {
			d, err := diagSockOf(r.InetDiagMsg)
			if err != nil {
				return nil, err
			}
			socks = append(socks, d)
		}
	}
	return socks, nil
}

// diagSockOf converts what netlink parsed of one struct inet_diag_msg.
func diagSockOf(m *netlink.Socket) (DiagSock, error) {
	if m == nil {
		return DiagSock{}, errors.New("dump: answer without inet_diag_msg")
	}
	d := DiagSock{
		Family:  int(m.Family),
		State:   conn.State(m.State),
		Timer:   m.Timer,
		Retrans: m.Retrans,
		Ifindex: m.ID.Interface,
		Cookie:  uint64(m.ID.Cookie[0]) | uint64(m.ID.Cookie[1])<<32,
		Expires: time.Duration(m.Expires) * time.Millisecond,
		UID:     m.UID,
		Inode:   m.INode,
	}
	src, dst := m.ID.Source, m.ID.Destination
	switch d.Family {
	case unix.AF_INET:
		src, dst = src.To4(), dst.To4()
	case unix.AF_INET6:
		src, dst = src.To16(), dst.To16()
	default:
		return DiagSock{}, fmt.Errorf("dump: inet_diag_msg of family %d", d.Family)
	}
	l, ok1 := netip.AddrFromSlice(src)
	r, ok2 := netip.AddrFromSlice(dst)
	if !ok1 || !ok2 {
		return DiagSock{}, fmt.Errorf("dump: bad addresses %v -> %v", m.ID.Source, m.ID.Destination)
	}
	d.Local = netip.AddrPortFrom(l, m.ID.SourcePort)
	d.Remote = netip.AddrPortFrom(r, m.ID.DestinationPort)
	return d, nil
}

// MustDump is Dump that fails t on error.
func (ns *NS) MustDump(t testing.TB) []DiagSock {
	t.Helper()
	socks, err := ns.Dump()
	if err != nil {
		t.Fatal(err)
	}
	return socks
}

// Find returns the socket with the cookie, if the namespace still has it.
func (ns *NS) Find(cookie uint64) (DiagSock, bool, error) {
	socks, err := ns.Dump()
	if err != nil {
		return DiagSock{}, false, err
	}
	d, ok := Lookup(socks, cookie)
	return d, ok, nil
}
