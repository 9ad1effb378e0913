package destroy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// recvBatch is how many datagrams one recvmmsg call may read. Each
	// answer to a lookup is a datagram of its own: read one at a time,
	// the system calls cost as much as the kernel's lookups.
	recvBatch = 64
	// recvSlot bounds one datagram. An answer to a lookup is 124 bytes on
	// Linux 6.18 (a struct inet_diag_msg and the attributes the kernel
	// adds unasked), an error 36 (NETLINK_CAP_ACK) or 108 (an error
	// echoing the request). A longer one (MD5 keys, ULP info) is cut
	// short; parseAnswers reads its fixed fields and nothing past the cut.
	recvSlot = 512

	// msgWaitForOne: recvmmsg blocks (up to SO_RCVTIMEO) for the first
	// datagram only, then takes what is queued.
	msgWaitForOne = 0x10000 // MSG_WAITFORONE
)

// reader reads netlink datagrams many per system call (recvmmsg), into
// at most recvBatch slots of recvSlot bytes (32 KiB).
type reader struct {
	buf  []byte
	iov  []unix.Iovec
	hdrs []unix.Mmsghdr
}

// newReader makes a reader with slots slots.
func newReader(slots int) *reader {
	r := &reader{
		buf:  make([]byte, slots*recvSlot),
		iov:  make([]unix.Iovec, slots),
		hdrs: make([]unix.Mmsghdr, slots),
	}
	for i := range r.hdrs {
		r.iov[i].Base = &r.buf[i*recvSlot]
		r.iov[i].SetLen(recvSlot)
		r.hdrs[i].Hdr.Iov = &r.iov[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}
	return r
}

// recv reads up to one datagram a slot and returns how many it read.
func (r *reader) recv(fd, flags int) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.hdrs[0])),
		uintptr(len(r.hdrs)), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// datagram is the i-th datagram the last recv read; cut says it was longer
// than its slot and is cut short (MSG_TRUNC).
func (r *reader) datagram(i int) (b []byte, cut bool) {
	n := min(int(r.hdrs[i].Len), recvSlot)
	return r.buf[i*recvSlot : i*recvSlot+n], r.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0
}
