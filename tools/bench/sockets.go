package main

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Socket primitives on 127.0.0.1. Every caller runs inside the bench's
// private network namespace (see netns.go): nothing here may ever run in
// the host's.

// smallBuf keeps the windows tiny, so filling one (to hold a FIN behind
// unsent data) costs a few kilobytes per socket.
const smallBuf = 4096

// TCP states, the kernel's numbering (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpTimeWait    = 6
	tcpClose       = 7
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpListen      = 10
	tcpClosing     = 11
)

var stateNames = map[uint8]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
	7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}

func loopback(port int) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
}

// listen opens a listener on 127.0.0.1:port with small buffers (accepted
// sockets inherit them).
func listen(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, smallBuf)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, smallBuf)
	if err := unix.Bind(fd, loopback(port)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind 127.0.0.1:%d: %w", port, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen 127.0.0.1:%d: %w", port, err)
	}
	return fd, nil
}

// pair connects a client to the listener on port and accepts it; small
// buffers on both ends.
func pair(ln, port int) (client, server int, err error) {
	client, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("socket: %w", err)
	}
	_ = unix.SetsockoptInt(client, unix.SOL_SOCKET, unix.SO_RCVBUF, smallBuf)
	_ = unix.SetsockoptInt(client, unix.SOL_SOCKET, unix.SO_SNDBUF, smallBuf)
	if err := unix.Connect(client, loopback(port)); err != nil {
		unix.Close(client)
		return -1, -1, fmt.Errorf("connect 127.0.0.1:%d: %w", port, err)
	}
	server, _, err = unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		unix.Close(client)
		return -1, -1, fmt.Errorf("accept: %w", err)
	}
	return client, server, nil
}

// fillAll writes into every fd until neither its send buffer nor its
// peer's receive window takes more (the peer never reads). All sockets are
// filled together: one short pause per round, not one per socket.
func fillAll(fds []int) error {
	buf := make([]byte, 65536)
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			return fmt.Errorf("set non-blocking: %w", err)
		}
	}
	pending := fds
	for round := 0; len(pending) > 0; round++ {
		if round == 50 {
			return fmt.Errorf("fill: %d sockets still take data after %d rounds", len(pending), round)
		}
		var again []int
		for _, fd := range pending {
			wrote := false
			for {
				_, err := unix.Write(fd, buf)
				if errors.Is(err, unix.EAGAIN) {
					break
				}
				if err != nil {
					return fmt.Errorf("fill: %w", err)
				}
				wrote = true
			}
			if wrote {
				again = append(again, fd)
			}
		}
		pending = again
		if len(pending) > 0 {
			// Let the window updates land before the next round.
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// abort closes with SO_LINGER 0: a reset, no orphan, no TIME_WAIT left in
// the namespace for the next measurement.
func abort(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	_ = unix.Close(fd)
}

// tcpState is the socket's state as its owner sees it (TCP_INFO).
func tcpState(fd int) (uint8, error) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, err
	}
	return info.State, nil
}

// bootNow reads CLOCK_BOOTTIME, the clock of the tracker's entered_ns.
func bootNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return ts.Nano()
}
