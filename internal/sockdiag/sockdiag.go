// Package sockdiag is the netlink sock_diag dump that kill, the tracker's
// walk and top make: its request, and the walk of the messages of its
// answer. It does no I/O: the callers own their sockets.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

const (
	// HdrLen is sizeof(struct nlmsghdr).
	HdrLen = 16
	// ReqLen is sizeof(struct inet_diag_req).
	ReqLen = 60
	// MsgLen is sizeof(struct inet_diag_msg).
	MsgLen = 72
	// GetSock is TCPDIAG_GETSOCK, the old dump request (struct
	// inet_diag_req): the kernel answers it with AF_INET and AF_INET6
	// sockets in one walk of its tables (inet_diag_dump_compat() asks for
	// AF_UNSPEC), where struct inet_diag_req_v2 names one family and would
	// need two walks. ss(8) dumps this way too.
	GetSock = 18
	// TimerTimewait is idiag_timer of a timewait socket.
	TimerTimewait = 3
	// reqBytecode is INET_DIAG_REQ_BYTECODE, the request's filter.
	reqBytecode = 1
)

// Request is a dump request (sequence seq) of the TCP sockets in states
// (a mask of 1<<state), with the filter prog (nil: none).
func Request(seq, states uint32, prog []byte) []byte {
	n := HdrLen + ReqLen
	if prog != nil {
		n += 4 + len(prog)
	}
	b := make([]byte, n)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], GetSock)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:], seq)
	// struct inet_diag_req: family (unused by the dump), src_len,
	// dst_len, ext, the socket id (unused), then the states mask.
	r := b[HdrLen:]
	ne.PutUint32(r[52:], states)
	if prog != nil {
		a := r[ReqLen:]
		ne.PutUint16(a[0:], uint16(4+len(prog)))
		ne.PutUint16(a[2:], reqBytecode)
		copy(a[4:], prog)
	}
	return b
}

// Parse walks one datagram of a dump's answer (sequence seq) and calls fn
// with the body of each struct inet_diag_msg (its attributes after it).
// done reports NLMSG_DONE; an NLMSG_ERROR is returned as an error.
func Parse(b []byte, seq uint32, fn func(m []byte)) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= HdrLen {
		l := ne.Uint32(b[0:])
		if l < HdrLen || l > uint32(len(b)) {
			return false, errors.New("read sock_diag dump: malformed message")
		}
		msg := b[:l]
		if ne.Uint32(msg[8:]) == seq {
			switch ne.Uint16(msg[4:]) {
			case unix.NLMSG_DONE:
				return true, nil
			case unix.NLMSG_ERROR:
				if len(msg) < HdrLen+4 {
					return false, errors.New("read sock_diag dump: malformed error")
				}
				if code := int32(ne.Uint32(msg[HdrLen:])); code != 0 {
					return false, fmt.Errorf("sock_diag dump: %w", unix.Errno(-code))
				}
				return true, nil
			case GetSock:
				if len(msg) >= HdrLen+MsgLen {
					fn(msg[HdrLen:])
				}
			}
		}
		next := (uint64(l) + 3) &^ 3
		if next >= uint64(len(b)) {
			return false, nil
		}
		b = b[next:]
	}
	return false, nil
}
