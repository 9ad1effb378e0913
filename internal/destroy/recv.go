package destroy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// recvBatch is how many datagrams one recvmmsg call may read. Each
	// answer to a lookup is a datagram of its own: read one at a time,
	// the system calls cost as much as the kernel's lookups.
	recvBatch = 32
	// recvSlot bounds one datagram: an answer is at most a few hundred
	// bytes (a struct inet_diag_msg and a few attributes, or an error
	// echoing a 72-byte request). A longer one is cut short, and
	// parseAnswers reads nothing past the cut.
	recvSlot = 4 << 10

	// msgWaitForOne: recvmmsg blocks (up to SO_RCVTIMEO) for the first
	// datagram only, then takes what is queued.
	msgWaitForOne = 0x10000 // MSG_WAITFORONE
)

// reader reads netlink datagrams many per system call (recvmmsg).
type reader struct {
	buf  []byte
	iov  []unix.Iovec
	hdrs []unix.Mmsghdr
}

func newReader() *reader {
	r := &reader{
		buf:  make([]byte, recvBatch*recvSlot),
		iov:  make([]unix.Iovec, recvBatch),
		hdrs: make([]unix.Mmsghdr, recvBatch),
	}
	for i := range r.hdrs {
		r.iov[i].Base = &r.buf[i*recvSlot]
		r.iov[i].SetLen(recvSlot)
		r.hdrs[i].Hdr.Iov = &r.iov[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}
	return r
}

// recv reads up to recvBatch datagrams and returns how many it read.
func (r *reader) recv(fd, flags int) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.hdrs[0])),
		uintptr(len(r.hdrs)), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// datagram is the i-th datagram the last recv read.
func (r *reader) datagram(i int) []byte {
	return r.buf[i*recvSlot : i*recvSlot+int(r.hdrs[i].Len)]
}
