package tracking

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sockdiag"
)

// A walk's records come from one of two sources: the sockets iterator
// (bpf/sockets.bpf.c, iter/tcp) or a sock_diag dump filtered to the
// closing states. Both walk every bucket of the kernel's established hash
// table, but they differ in what a socket in another state costs: the
// iterator takes a reference on every socket of the namespace (it copies a
// bucket's sockets out under the bucket lock, then runs the program on
// each), where the dump checks the state under the lock and touches
// nothing else (inet_diag_dump_icsk()). Beside 60,000 ESTABLISHED sockets
// and 1,200 closing ones the dump costs a fraction of the walk (see the
// README's Measured).
//
// The dump gives everything a walk's record holds but a full socket's open
// file and its SOCK_DEAD flag (HCK_F_ORPHAN): what owners and process rules
// need. So the dump is the walk unless one of its full sockets needs those
// (needsIterator), and the iterator walks the namespace instead.

const (
	// sizeof(struct nlattr).
	diagAttrLen = 4
	// INET_DIAG_SHUTDOWN: a full socket's sk_shutdown, a u8; an
	// attribute's type is under NLA_TYPE_MASK.
	diagAttrShutdown = 8
	nlaTypeMask      = 0x3fff
	// sk_shutdown's bits (include/net/sock.h).
	rcvShutdown, sendShutdown = 1, 2
	// diagBuf is one read's buffer: the kernel fills each part of a dump
	// up to 32 KiB (netlink_dump()).
	diagBuf = 64 << 10
	// diagTimeout bounds the wait for each part of the dump's answer.
	diagTimeout = 5 * time.Second
	// tcpTimewaitLen is TCP_TIMEWAIT_LEN (include/net/tcp.h): a TIME_WAIT
	// timer always runs 60 s from entry, as bpf/sockets.bpf.c assumes too.
	tcpTimewaitLen = 60 * time.Second
	// diagClockSlack is how late the dump's clock reading may be for its
	// TIME_WAIT entry times to be used (about a jiffy at HZ 250-1000).
	diagClockSlack = uint64(2 * time.Millisecond)
)

// closingMask is the dump's state filter: the closing states. The kernel
// filters a timewait socket by its substate (FIN_WAIT2 or TIME_WAIT).
var closingMask = func() uint32 {
	var m uint32
	for _, s := range conn.ClosingStates {
		m |= 1 << uint(s)
	}
	return m
}()

// diagRec is one socket of a dump: the record the iterator would give,
// its File and HCK_F_ORPHAN left out, and what tells them apart.
type diagRec struct {
	socketRec
	// inode is the socket's inode (0: no struct socket, hence no open
	// file: a connection not yet accepted, a closed one, a timewait one).
	inode uint32
	// shutdown is the full socket's sk_shutdown.
	shutdown uint8
	// late bounds how much later than the kernel's reading of its clock
	// the dump read CLOCK_BOOTTIME (now, for a TIME_WAIT entry time):
	// the entry time is that much late at most, and a jiffy.
	late uint64
}

func (r *diagRec) timewait() bool {
	return r.Conn.Flags&uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT) != 0
}

// needsIterator reports whether a dump's records (recs) leave out
// something a walk must bring to tracked (the map before the walk): a full
// socket's open file, or whether its process closed it; or, rarely, a
// TIME_WAIT entry time the iterator gives more exactly. A timewait socket
// has no file, and the dump gives its substate and its timer as the
// iterator does.
func needsIterator(recs []diagRec, tracked map[uint64]snap) bool {
	orphan := uint8(bpf.TrackerHckFlagHCK_F_ORPHAN)
	lower := uint8(bpf.TrackerHckFlagHCK_F_LOWER_BOUND)
	for i := range recs {
		r := &recs[i]
		old, ok := tracked[r.Cookie]
		if r.timewait() {
			// The entry time becomes the entry's (timewaitUpdate) when
			// the socket is new to the map, has just entered TIME_WAIT
			// or had a lower bound: the iterator reads the kernel's
			// clocks together, the dump reads CLOCK_BOOTTIME only after
			// the kernel answered, which under load (this thread waiting
			// for a CPU) can be many jiffies later.
			if r.Conn.EnteredNs != 0 && r.late > diagClockSlack &&
				(!ok || old.state != r.Conn.State || old.flags&lower != 0) {
				return true
			}
			continue
		}
		switch {
		case !ok:
			// A full socket the tracker never saw: seeding it needs its
			// file and SOCK_DEAD.
			return true
		case r.inode != 0 && old.file == 0:
			// Accepted since the tracker saw it: its file is new.
			return true
		case r.inode == 0 && old.flags&orphan == 0 && (old.file != 0 || r.shutdown == rcvShutdown|sendShutdown):
			// Closed by its process since: tcp_close() sets both
			// shutdown bits before sock_orphan() sets SOCK_DEAD and
			// drops the struct socket; a socket that had a file has
			// none only once closed.
			return true
		}
	}
	return false
}

// dumpClosing lists the TCP sockets in closing states of the calling
// thread's network namespace (inode netns) with one sock_diag dump.
func dumpClosing(netns uint32) ([]diagRec, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(diagTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("set sock_diag receive timeout: %w", err)
	}
	const seq = 1
	req := sockdiag.Request(seq, closingMask, nil)
	sent := conn.Now()
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send sock_diag dump request: %w", err)
	}
	var recs []diagRec
	buf := make([]byte, diagBuf)
	// The kernel fills each part of the answer during the system call
	// before the one that returns it (the first during the request):
	// its clock reading lies between the time before that call (since)
	// and the time after the read.
	since := sent
	for {
		before := conn.Now()
		n, _, err := unix.Recvfrom(fd, buf, 0)
		after := conn.Now()
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return nil, fmt.Errorf("read sock_diag dump: no answer within %s", diagTimeout)
		case err != nil:
			return nil, fmt.Errorf("read sock_diag dump: %w", err)
		}
		first := len(recs)
		done, err := sockdiag.Parse(buf[:n], seq, func(m []byte) {
			recs = append(recs, decodeDiag(m, netns, after))
		})
		for i := first; i < len(recs); i++ {
			recs[i].late = after - since
		}
		since = before
		if err != nil {
			return nil, err
		}
		if done {
			return recs, nil
		}
	}
}

// decodeDiag reads one struct inet_diag_msg and its attributes (m) into
// the record the iterator would give for the socket, read at now.
func decodeDiag(m []byte, netns uint32, now uint64) diagRec {
	ne := binary.NativeEndian
	var r diagRec
	c := &r.Conn
	c.Family = uint16(m[0])
	c.State = m[1]
	c.Sport = binary.BigEndian.Uint16(m[4:])
	c.Dport = binary.BigEndian.Uint16(m[6:])
	if c.Family == unix.AF_INET {
		copy(c.Saddr[:4], m[8:12])
		copy(c.Daddr[:4], m[24:28])
	} else {
		copy(c.Saddr[:], m[8:24])
		copy(c.Daddr[:], m[24:40])
	}
	c.Ifindex = ne.Uint32(m[40:])
	c.Netns = netns
	r.Cookie = uint64(ne.Uint32(m[44:])) | uint64(ne.Uint32(m[48:]))<<32
	r.inode = ne.Uint32(m[68:])
	if m[2] == sockdiag.TimerTimewait && r.inode == 0 {
		// A timewait socket (inet_twsk_diag_fill()): idiag_state is
		// its substate; idiag_expires the ms left on its timer, which
		// for TIME_WAIT started at entry.
		c.Flags = uint8(bpf.TrackerHckFlagHCK_F_TIMEWAIT)
		if c.State == uint8(conn.TimeWait) {
			left := uint64(ne.Uint32(m[52:])) * uint64(time.Millisecond)
			// To a jiffy, as the iterator's (the kernel counts the
			// time left in jiffies).
			if at := now + left; at > uint64(tcpTimewaitLen) {
				c.EnteredNs = at - uint64(tcpTimewaitLen)
			}
		}
		return r
	}
	for a := m[sockdiag.MsgLen:]; len(a) >= diagAttrLen; {
		l := int(ne.Uint16(a[0:]))
		if l < diagAttrLen || l > len(a) {
			break
		}
		if ne.Uint16(a[2:])&nlaTypeMask == diagAttrShutdown && l > diagAttrLen {
			r.shutdown = a[diagAttrLen]
		}
		a = a[min((l+3)&^3, len(a)):]
	}
	return r
}
