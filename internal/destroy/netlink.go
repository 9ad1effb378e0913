package destroy

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// nlSock is one NETLINK_SOCK_DIAG socket with what its exchanges need. It
// is used by one goroutine at a time.
type nlSock struct {
	fd     int
	portid uint32
	seq    uint32
	batch  int // destroy requests per sendmsg
	cbatch int // lookups per sendmsg
	wbuf   []byte
	rd     *reader // allocated on first receive, as large as needed
}

// What a socket keeps between calls: enough for a call of a few sockets.
// A large call's buffers (up to a 64 KiB datagram and 64 answer slots)
// are dropped after it, so that a Destroyer kept for each of many
// namespaces stays small.
const (
	keepBytes = 4 << 10
	keepSlots = 4
)

// trim drops buffers larger than a small call needs.
func (k *nlSock) trim() {
	if cap(k.wbuf) > keepBytes {
		k.wbuf = nil
	}
	if k.rd != nil && len(k.rd.hdrs) > keepSlots {
		k.rd = nil
	}
}

// openSock opens a NETLINK_SOCK_DIAG socket in network namespace ns, on
// the calling thread, which must be locked and whose namespace its caller
// checks afterwards (netns.OnThread): see netns.NS.NetlinkSocket.
func openSock(ns *netns.NS) (*nlSock, error) {
	fd, err := ns.NetlinkSocket(unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	k := &nlSock{fd: fd}
	if err := k.setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return k, nil
}

func (k *nlSock) close() {
	if k.fd >= 0 {
		unix.Close(k.fd)
		k.fd = -1
	}
}

// setup makes the socket blocking (nl opens it non-blocking, for Go's
// poller; the exchanges read with a timeout instead), sizes its buffers and
// connects it to the kernel.
func (k *nlSock) setup() error {
	if err := unix.SetNonblock(k.fd, false); err != nil {
		return fmt.Errorf("set sock_diag socket blocking: %w", err)
	}
	if err := unix.SetsockoptInt(k.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		if err := unix.SetsockoptInt(k.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf); err != nil {
			return fmt.Errorf("set sock_diag receive buffer: %w", err)
		}
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(k.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set sock_diag receive timeout: %w", err)
	}
	// Without NETLINK_CAP_ACK an error ACK echoes the whole request; with it
	// every ACK is 36 bytes. Only an optimisation: the parser takes both.
	_ = unix.SetsockoptInt(k.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)

	// nl bound the socket; the kernel chose its port id.
	sa, err := unix.Getsockname(k.fd)
	if err != nil {
		return fmt.Errorf("read sock_diag port id: %w", err)
	}
	nla, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return fmt.Errorf("read sock_diag port id: unexpected address %T", sa)
	}
	k.portid = nla.Pid
	// Connected to the kernel (port 0), the socket refuses datagrams from
	// any other netlink socket: only the kernel can answer.
	if err := unix.Connect(k.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("connect sock_diag socket: %w", err)
	}

	rcv, err := unix.GetsockoptInt(k.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return fmt.Errorf("read sock_diag receive buffer: %w", err)
	}
	snd, err := unix.GetsockoptInt(k.fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return fmt.Errorf("read sock_diag send buffer: %w", err)
	}
	// netlink_sendmsg refuses datagrams longer than sk_sndbuf-32 (EMSGSIZE).
	k.batch = min(maxBatchBytes, snd-32) / reqLen
	k.cbatch = max(1, min(k.batch, rcv/checkCost))
	k.batch = max(1, min(k.batch, rcv/ackCost))
	return nil
}

// lookups looks up reqs (SOCK_DESTROY requests, see lookupOf) in batches
// of k.cbatch and calls fn with each batch's answers.
func (k *nlSock) lookups(reqs [][reqLen]byte, fn func(lo int, ans []answer)) {
	looks := make([][reqLen]byte, min(len(reqs), k.cbatch))
	for lo := 0; lo < len(reqs); lo += k.cbatch {
		hi := min(len(reqs), lo+k.cbatch)
		l := looks[:hi-lo]
		for j := range l {
			l[j] = lookupOf(reqs[lo+j])
		}
		fn(lo, k.exchange(l, k.cbatch, k.lookupTrip))
	}
}

// exchange sends reqs in batches of at most batch, each request with its
// own sequence number, and collects one answer per request.
func (k *nlSock) exchange(reqs [][reqLen]byte, batch int, trip func([][reqLen]byte, []answer) error) []answer {
	ans := make([]answer, len(reqs))
	batch = max(1, batch)
	for lo := 0; lo < len(reqs); lo += batch {
		hi := min(len(reqs), lo+batch)
		if err := trip(reqs[lo:hi], ans[lo:hi]); err != nil {
			for i := lo; i < hi; i++ {
				if !ans[i].done {
					ans[i] = answer{err: err, done: true}
				}
			}
		}
	}
	return ans
}

// destroys sends SOCK_DESTROY requests.
func (k *nlSock) destroys(reqs [][reqLen]byte) []answer {
	return k.exchange(reqs, k.batch, k.roundTrip)
}

// roundTrip sends one datagram of requests and reads answers until every
// request has one. It returns the reason when some did not get one.
//
// Only the last request asks for an acknowledgement (NLM_F_ACK): the
// kernel answers a failed request whether asked or not, and handles the
// datagram's requests in order inside sendmsg, queueing each answer as it
// goes. So once the last request's answer is read, every earlier request
// without an answer succeeded: 10,000 successes cost one answer instead
// of 10,000 (an skb each, read one recvmsg at a time). An answer the
// kernel could not queue is reported as ENOBUFS; then silence proves
// nothing, and unanswered requests fail with ErrNoAnswer.
func (k *nlSock) roundTrip(reqs [][reqLen]byte, ans []answer) error {
	first, err := k.send(reqs, true)
	if err != nil {
		return err
	}
	last := len(reqs) - 1
	_, overrun, err := k.receive(first, ans, func(int) bool { return ans[last].done })
	if err != nil {
		return err
	}
	if overrun {
		// Some answer was lost; unanswered requests may have failed.
		return fmt.Errorf("%w: %w", ErrNoAnswer, unix.ENOBUFS)
	}
	for i := range ans {
		if !ans[i].done {
			ans[i] = answer{done: true} // no error answer: it succeeded
		}
	}
	return nil
}

// lookupTrip sends one datagram of lookups and reads until each has its
// answer: the socket, or an error. A lookup whose answer was lost stays
// unanswered: nothing is known of its socket.
func (k *nlSock) lookupTrip(reqs [][reqLen]byte, ans []answer) error {
	first, err := k.send(reqs, false)
	if err != nil {
		return err
	}
	answered, overrun, err := k.receive(first, ans, func(answered int) bool { return answered == len(reqs) })
	if err != nil {
		return err
	}
	if overrun && answered < len(reqs) {
		return fmt.Errorf("%w: %w", ErrNoAnswer, unix.ENOBUFS)
	}
	return nil
}

// send writes reqs as one datagram, numbered from the returned sequence
// number. ackLast: only the last request asks for an acknowledgement (see
// roundTrip); otherwise the flags are left as encoded.
func (k *nlSock) send(reqs [][reqLen]byte, ackLast bool) (uint32, error) {
	if k.fd < 0 {
		return 0, ErrClosed
	}
	first := k.seq + 1
	k.seq += uint32(len(reqs))
	k.wbuf = k.wbuf[:0]
	for i := range reqs {
		k.wbuf = append(k.wbuf, reqs[i][:]...)
		h := k.wbuf[i*reqLen:]
		binary.NativeEndian.PutUint32(h[8:], first+uint32(i))
		if ackLast && i < len(reqs)-1 {
			binary.NativeEndian.PutUint16(h[6:], unix.NLM_F_REQUEST)
		}
	}
	for {
		_, err := unix.Write(k.fd, k.wbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("send sock_diag requests: %w", err)
		}
		return first, nil
	}
}

// receive reads answers to the requests numbered from first into ans until
// finished, given how many requests have their answer, says so. overrun
// reports that the kernel dropped answers on a full receive queue; receive
// then returns once the queue is drained.
func (k *nlSock) receive(first uint32, ans []answer, finished func(answered int) bool) (answered int, overrun bool, err error) {
	// One slot per answer that may come, up to recvBatch.
	if need := min(recvBatch, max(2, len(ans))); k.rd == nil || len(k.rd.hdrs) < need {
		k.rd = newReader(need)
	}
	for !finished(answered) {
		var n int
		if overrun {
			n, err = k.rd.recv(k.fd, unix.MSG_DONTWAIT)
		} else {
			n, err = k.rd.recv(k.fd, msgWaitForOne)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOBUFS:
			// Answers were dropped on a full receive queue. The kernel
			// queues every answer before sendmsg returns, so once the
			// queue is drained the missing ones are lost, not late.
			overrun = true
			continue
		case err == unix.EAGAIN && overrun:
			return answered, true, nil
		case err == unix.EAGAIN:
			return answered, overrun, fmt.Errorf("%w within %s", ErrNoAnswer, recvTimeout)
		case err != nil:
			return answered, overrun, fmt.Errorf("receive sock_diag answer: %w", err)
		}
		for m := range n {
			b, cut := k.rd.datagram(m)
			parseAnswers(b, cut, k.portid, func(seq uint32, a answer) {
				i := seq - first // wraps past len(ans) for foreign sequences
				if i < uint32(len(ans)) && !ans[i].done {
					a.done = true
					ans[i] = a
					answered++
				}
			})
		}
	}
	return answered, overrun, nil
}

// parseAnswers walks one datagram of netlink messages addressed to portid
// and calls fn with the sequence number and the answer of each: the errno
// of an NLMSG_ERROR, or the state of the socket a lookup found (struct
// inet_diag_msg: family, state, timer, retrans, ...). Other messages are
// skipped. cut says the datagram was longer than b (MSG_TRUNC): its last
// message may then be cut short, and is read as far as its fixed fields go
// (a lookup's answer is one message, its attributes unused); otherwise a
// message that claims more than b is dropped. It never reads past b.
func parseAnswers(b []byte, cut bool, portid uint32, fn func(seq uint32, a answer)) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := ne.Uint32(b[0:])
		if l < nlmsgHdrLen {
			return
		}
		msg := b
		if l <= uint32(len(b)) {
			msg = b[:l]
		} else if !cut {
			return
		}
		if ne.Uint32(msg[12:]) == portid {
			switch typ := ne.Uint16(msg[4:]); {
			case typ == unix.NLMSG_ERROR && len(msg) >= nlmsgHdrLen+4:
				code := int64(int32(ne.Uint32(msg[16:])))
				if code < 0 {
					code = -code
				}
				fn(ne.Uint32(msg[8:]), answer{errno: unix.Errno(code)})
			case typ == sockDiagByFamily && len(msg) >= nlmsgHdrLen+2:
				fn(ne.Uint32(msg[8:]), answer{found: true, state: conn.State(msg[nlmsgHdrLen+1])})
			}
		}
		// Messages are 4-byte aligned; the last one may lack its padding.
		next := (uint64(l) + 3) &^ 3
		if next >= uint64(len(b)) {
			return
		}
		b = b[next:]
	}
}
