package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

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

// Layout of the sock_diag structures (include/uapi/linux/inet_diag.h).
const (
	sizeofDiagReq = 56 // struct inet_diag_req_v2
	sizeofDiagMsg = 72 // struct inet_diag_msg

	// diagStates asks for states 1 (ESTABLISHED) to 12 (NEW_SYN_RECV).
	// Bit 13, TCP_BOUND_INACTIVE (Linux 6.8), would add sockets that are
	// only bound; they are no connections, so they stay out.
	diagStates = 1<<13 - 2
)

// Dump lists every TCP socket of the namespace, IPv4 and IPv6, in every
// state including TIME_WAIT, FIN_WAIT2-timewait and request sockets. The
// netlink socket is opened inside the namespace, so it sees only that
// namespace's sockets.
func (ns *NS) Dump() ([]DiagSock, error) {
	var socks []DiagSock
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return fmt.Errorf("open sock_diag: %w", err)
		}
		defer unix.Close(fd)
		for i, af := range []uint8{unix.AF_INET, unix.AF_INET6} {
			s, err := diagDump(fd, af, uint32(i+1))
			if err != nil {
				return err
			}
			socks = append(socks, s...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dump sockets of %s: %w", ns.Name, err)
	}
	return socks, nil
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

// errDumpInterrupted is the kernel saying the tables changed under the dump
// (NLM_F_DUMP_INTR); a retry gets a consistent answer.
var errDumpInterrupted = errors.New("dump interrupted")

func diagDump(fd int, af uint8, seq uint32) ([]DiagSock, error) {
	for range 5 {
		socks, err := diagDumpOnce(fd, af, seq)
		if !errors.Is(err, errDumpInterrupted) {
			return socks, err
		}
	}
	return nil, fmt.Errorf("dump family %d: %w five times", af, errDumpInterrupted)
}

func diagDumpOnce(fd int, af uint8, seq uint32) ([]DiagSock, error) {
	req := make([]byte, unix.SizeofNlMsghdr+sizeofDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], seq)
	r := req[unix.SizeofNlMsghdr:]
	r[0] = af                        // sdiag_family
	r[1] = unix.IPPROTO_TCP          // sdiag_protocol
	ne.PutUint32(r[4:], diagStates)  // idiag_states; id all zero: everything
	ne.PutUint64(r[48:], ^uint64(0)) // idiag_cookie: INET_DIAG_NOCOOKIE
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send dump request: %w", err)
	}

	var socks []DiagSock
	buf := make([]byte, 1<<16)
	interrupted := false
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("receive dump: %w", err)
		}
		msgs, err := splitNetlink(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.seq != seq {
				continue
			}
			if m.flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.typ {
			case unix.NLMSG_DONE:
				if interrupted {
					return nil, errDumpInterrupted
				}
				return socks, nil
			case unix.NLMSG_ERROR:
				if len(m.data) < 4 {
					return nil, errors.New("short netlink error message")
				}
				if errno := -int32(ne.Uint32(m.data)); errno != 0 {
					return nil, fmt.Errorf("dump family %d: %w", af, unix.Errno(errno))
				}
			case unix.SOCK_DIAG_BY_FAMILY:
				d, err := parseDiagMsg(m.data)
				if err != nil {
					return nil, err
				}
				socks = append(socks, d)
			}
		}
	}
}

type nlMsg struct {
	typ, flags uint16
	seq        uint32
	data       []byte
}

// splitNetlink cuts a datagram into its netlink messages.
func splitNetlink(b []byte) ([]nlMsg, error) {
	ne := binary.NativeEndian
	var msgs []nlMsg
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return nil, fmt.Errorf("parse netlink message: bad length %d of %d", l, len(b))
		}
		msgs = append(msgs, nlMsg{
			typ:   ne.Uint16(b[4:]),
			flags: ne.Uint16(b[6:]),
			seq:   ne.Uint32(b[8:]),
			data:  b[unix.SizeofNlMsghdr:l],
		})
		l = (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return msgs, nil
}

// parseDiagMsg decodes a struct inet_diag_msg; attributes after it are
// ignored.
func parseDiagMsg(b []byte) (DiagSock, error) {
	if len(b) < sizeofDiagMsg {
		return DiagSock{}, fmt.Errorf("parse inet_diag_msg: %d bytes, want %d", len(b), sizeofDiagMsg)
	}
	ne := binary.NativeEndian
	d := DiagSock{
		Family:  int(b[0]),
		State:   conn.State(b[1]),
		Timer:   b[2],
		Retrans: b[3],
		Ifindex: ne.Uint32(b[40:]),
		// idiag_cookie is two host-order u32, low half first.
		Cookie:  uint64(ne.Uint32(b[44:])) | uint64(ne.Uint32(b[48:]))<<32,
		Expires: time.Duration(ne.Uint32(b[52:])) * time.Millisecond,
		UID:     ne.Uint32(b[64:]),
		Inode:   ne.Uint32(b[68:]),
	}
	sport := binary.BigEndian.Uint16(b[4:])
	dport := binary.BigEndian.Uint16(b[6:])
	var src, dst netip.Addr
	switch d.Family {
	case unix.AF_INET:
		src = netip.AddrFrom4([4]byte(b[8:12]))
		dst = netip.AddrFrom4([4]byte(b[24:28]))
	case unix.AF_INET6:
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
	default:
		return DiagSock{}, fmt.Errorf("parse inet_diag_msg: family %d", d.Family)
	}
	d.Local = netip.AddrPortFrom(src, sport)
	d.Remote = netip.AddrPortFrom(dst, dport)
	return d, nil
}
