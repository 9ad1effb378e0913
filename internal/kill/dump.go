package kill

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/sockdiag"
)

// Socket is one socket of a dump: the connection as a destroy request
// names it, and what identifies its open file.
type Socket struct {
	conn.Conn
	// Inode is the socket's inode number (what /proc/PID/fd shows as
	// socket:[N]); 0 for a socket no file holds (timewait, request, orphan).
	Inode uint32
	// UID is the socket's owner uid (sk_uid).
	UID uint32
}

const (
	// dumpBuf is the receive buffer of one recvmsg: the kernel fills each
	// dump message up to the reader's buffer size (at most 32 KiB since
	// Linux 4.x, netlink_dump()).
	dumpBuf = 64 << 10
)

// dumper dumps sockets through one NETLINK_SOCK_DIAG socket.
type dumper struct {
	fd  int
	seq uint32
	buf []byte
}

// openDumper opens a NETLINK_SOCK_DIAG socket inside ns, from any thread.
func openDumper(ns *netns.NS) (*dumper, error) {
	var fd int
	var err error
	netns.OnThread(func() { fd, err = ns.NetlinkSocket(unix.NETLINK_SOCK_DIAG) })
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	tv := unix.NsecToTimeval(dumpTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set sock_diag receive timeout: %w", err)
	}
	return &dumper{fd: fd, buf: make([]byte, dumpBuf)}, nil
}

func (d *dumper) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// request builds the next dump request of the TCP sockets in states (a
// mask of 1<<state) with the filter prog (nil: none).
func (d *dumper) request(states uint32, prog []byte) []byte {
	d.seq++
	return sockdiag.Request(d.seq, states, prog)
}

// dump sends a dump request and calls fn with each socket the kernel
// returns, until the dump is done. *s is only valid during the call.
func (d *dumper) dump(states uint32, prog []byte, netnsIno uint32, fn func(s *Socket)) error {
	req := d.request(states, prog)
	if _, err := unix.Write(d.fd, req); err != nil {
		return fmt.Errorf("send sock_diag dump request: %w", err)
	}
	var s Socket
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return fmt.Errorf("read sock_diag dump: no answer within %s", dumpTimeout)
		case err != nil:
			return fmt.Errorf("read sock_diag dump: %w", err)
		}
		done, err := sockdiag.Parse(d.buf[:n], d.seq, func(m []byte) {
			decode(m, netnsIno, &s)
			fn(&s)
		})
		if err != nil || done {
			return err
		}
	}
}

// decode reads struct inet_diag_msg m into s.
func decode(m []byte, netnsIno uint32, s *Socket) {
	ne := binary.NativeEndian
	family := m[0]
	s.Conn = conn.Conn{
		State:   conn.State(m[1]),
		NetNS:   netnsIno,
		Ifindex: ne.Uint32(m[40:]),
		Cookie:  uint64(ne.Uint32(m[44:])) | uint64(ne.Uint32(m[48:]))<<32,
		Exact:   true,
	}
	sport := binary.BigEndian.Uint16(m[4:])
	dport := binary.BigEndian.Uint16(m[6:])
	var src, dst netip.Addr
	if family == unix.AF_INET {
		src = netip.AddrFrom4([4]byte(m[8:12]))
		dst = netip.AddrFrom4([4]byte(m[24:28]))
	} else {
		src = netip.AddrFrom16([16]byte(m[8:24]))
		dst = netip.AddrFrom16([16]byte(m[24:40]))
	}
	s.Local = netip.AddrPortFrom(src, sport)
	s.Remote = netip.AddrPortFrom(dst, dport)
	s.Timewait = m[2] == sockdiag.TimerTimewait || s.State == conn.TimeWait
	s.UID = ne.Uint32(m[64:])
	s.Inode = ne.Uint32(m[68:])
}

// Dumper dumps the TCP sockets of one network namespace through a
// NETLINK_SOCK_DIAG socket it keeps open: for a caller that dumps again
// and again (top).
type Dumper struct {
	d   *dumper
	ino uint32
}

// OpenDumper opens a Dumper of namespace ns (which the caller may close
// afterwards: the socket stays in its namespace).
func OpenDumper(ns *netns.NS) (*Dumper, error) {
	d, err := openDumper(ns)
	if err != nil {
		return nil, err
	}
	return &Dumper{d: d, ino: ns.Inode()}, nil
}

// Dump calls fn with every TCP socket in states (a mask of 1<<state; the
// kernel reports request sockets as SYN_RECV). *s is only valid during
// the call.
func (d *Dumper) Dump(states uint32, fn func(s *Socket)) error {
	return d.d.dump(states, nil, d.ino, fn)
}

// Close closes the socket.
func (d *Dumper) Close() { d.d.close() }
