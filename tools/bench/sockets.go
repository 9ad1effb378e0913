package main

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/loopsock"
)

// Socket primitives on 127.0.0.1 (internal/loopsock). Every caller runs
// inside the bench's private network namespace (see netns.go): nothing here
// may ever run in the host's.

// small keeps the windows tiny, so filling one (to hold a FIN behind
// unsent data) costs a few kilobytes per socket.
var small = loopsock.Options{Buf: 4096}

func loopback(port int) *unix.SockaddrInet4 {
	return &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
}

// listen opens a listener on 127.0.0.1:port with small buffers (accepted
// sockets inherit them).
func listen(port int) (int, error) {
	fd, _, err := loopsock.Listen(netip.AddrPortFrom(loopsock.Loopback4, uint16(port)), small)
	return fd, err
}

// bootNow reads CLOCK_BOOTTIME, the clock of the tracker's entered_ns.
func bootNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return ts.Nano()
}
