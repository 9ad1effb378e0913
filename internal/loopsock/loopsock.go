// Package loopsock makes plain TCP sockets on loopback and puts them in
// the states hck-bpf deals with: listen, connect a pair, fill a window so
// that a FIN stays queued, wait for a state, abort. The doctor's probe,
// the demo, the bench and the tests' testnet share it. It never imports
// "testing": product code (the doctor) uses it.
//
// Every caller runs it inside a network namespace of its own: the sockets
// are real, and destroying them is the point.
package loopsock

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// Loopback4 and Loopback6 are the addresses sockets are made on.
var (
	Loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	Loopback6 = netip.IPv6Loopback()
)

// Options of the sockets Listen and Pair make.
type Options struct {
	// Buf, when > 0, is SO_RCVBUF and SO_SNDBUF of every socket (accepted
	// ones inherit the listener's): small windows fill fast, so a FIN
	// stays queued behind unsent data for a few KiB per socket.
	Buf int
	// Timeout, when > 0, bounds every blocking call (connect, accept,
	// read, write) with SO_RCVTIMEO and SO_SNDTIMEO: a probe never hangs.
	Timeout time.Duration
	// NonBlock makes non-blocking sockets (SOCK_NONBLOCK); Pair then
	// waits for the connection with poll.
	NonBlock bool
	// From, when valid, is the address Pair binds its client to before
	// connecting (port chosen by the kernel): a connection from another
	// loopback address (127.0.0.2) than the listener's.
	From netip.Addr
}

// Socket makes a TCP socket of family (unix.AF_INET or unix.AF_INET6) with
// o's options.
func Socket(family int, o Options) (int, error) {
	typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if o.NonBlock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(family, typ, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := o.apply(fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (o Options) apply(fd int) error {
	if o.Buf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, o.Buf)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, o.Buf)
	}
	if o.Timeout > 0 {
		tv := unix.NsecToTimeval(o.Timeout.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("set receive timeout: %w", err)
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			return fmt.Errorf("set send timeout: %w", err)
		}
	}
	return nil
}

// Listen opens a listener on addr (port 0: one the kernel picks) with
// SO_REUSEADDR, and returns it with the address it is bound to.
func Listen(addr netip.AddrPort, o Options) (int, netip.AddrPort, error) {
	fd, err := Socket(family(addr.Addr()), o)
	if err != nil {
		return -1, netip.AddrPort{}, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, Sockaddr(addr)); err != nil {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("bind %s: %w", addr, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("listen on %s: %w", addr, err)
	}
	bound, err := Local(fd)
	if err != nil {
		unix.Close(fd)
		return -1, netip.AddrPort{}, err
	}
	return fd, bound, nil
}

// Pair connects a client to the listener ln and accepts it: both ends of
// one connection, with o's options.
func Pair(ln int, o Options) (client, server int, err error) {
	to, err := Local(ln)
	if err != nil {
		return -1, -1, err
	}
	client, err = Socket(family(to.Addr()), o)
	if err != nil {
		return -1, -1, err
	}
	if o.From.IsValid() {
		if err := unix.Bind(client, Sockaddr(netip.AddrPortFrom(o.From, 0))); err != nil {
			unix.Close(client)
			return -1, -1, fmt.Errorf("bind %s: %w", o.From, err)
		}
	}
	err = unix.Connect(client, Sockaddr(to))
	if o.NonBlock && errors.Is(err, unix.EINPROGRESS) {
		err = waitConnected(client, o.Timeout)
	}
	if err != nil {
		unix.Close(client)
		return -1, -1, fmt.Errorf("connect %s: %w", to, err)
	}
	if o.NonBlock {
		if err := poll(ln, unix.POLLIN, o.Timeout); err != nil {
			unix.Close(client)
			return -1, -1, fmt.Errorf("accept on %s: %w", to, err)
		}
	}
	flags := unix.SOCK_CLOEXEC
	if o.NonBlock {
		flags |= unix.SOCK_NONBLOCK
	}
	server, _, err = unix.Accept4(ln, flags)
	if err != nil {
		unix.Close(client)
		return -1, -1, fmt.Errorf("accept on %s: %w", to, err)
	}
	if err := o.apply(server); err != nil {
		unix.Close(client)
		unix.Close(server)
		return -1, -1, err
	}
	return client, server, nil
}

// waitConnected waits for a non-blocking connect to finish.
func waitConnected(fd int, timeout time.Duration) error {
	if err := poll(fd, unix.POLLOUT, timeout); err != nil {
		return err
	}
	errno, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = unix.Errno(errno)
	}
	return err
}

// poll waits until fd has one of events; timeout 0: 5 s.
func poll(fd int, events int16, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(fds, int(max(time.Until(deadline), 0).Milliseconds()))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("poll: %w", err)
		case n == 0:
			return fmt.Errorf("nothing after %s", timeout)
		}
		return nil
	}
}

// Fill writes into every fd until neither its send buffer nor its peer's
// receive window takes more (the peer never reads): a FIN sent after it
// stays queued behind the data. The fds become non-blocking. All are
// filled together: one short pause per round, not one per socket.
func Fill(fds ...int) error {
	buf := make([]byte, 65536)
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			return fmt.Errorf("fill: set non-blocking: %w", err)
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

// Abort closes fd with SO_LINGER 0: the kernel sends a reset and frees the
// socket at once (no orphan, no timewait socket left behind).
func Abort(fd int) error {
	// Fails on a socket that already had a reset; close it all the same.
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("abort: close: %w", err)
	}
	return nil
}

// State is the socket's state as its file sees it (TCP_INFO). A file
// whose socket went to TIME_WAIT holds a full socket in CLOSE: the
// timewait socket has no file.
func State(fd int) (conn.State, error) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, fmt.Errorf("read TCP_INFO: %w", err)
	}
	return conn.State(info.State), nil
}

// Await waits up to timeout until the socket behind fd is in state.
func Await(fd int, state conn.State, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := State(fd)
		if err != nil {
			return err
		}
		if st == state {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("socket stayed %s, not %s, for %s", st, state, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Cookie is the socket's SO_COOKIE: how the tracker and SOCK_DESTROY name
// it. It outlives the file: an orphan, and the timewait socket the kernel
// keeps after close, carry the same cookie.
func Cookie(fd int) (uint64, error) {
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("read SO_COOKIE: %w", err)
	}
	return c, nil
}

// Local is the address fd is bound to.
func Local(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}
	return AddrPort(sa), nil
}

// Remote is the address fd is connected to.
func Remote(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getpeername: %w", err)
	}
	return AddrPort(sa), nil
}

// Conn describes the connected socket fd as a destroy request needs it:
// cookie, state (as given), addresses.
func Conn(fd int, state conn.State) (conn.Conn, error) {
	cookie, err := Cookie(fd)
	if err != nil {
		return conn.Conn{}, err
	}
	local, err := Local(fd)
	if err != nil {
		return conn.Conn{}, err
	}
	remote, err := Remote(fd)
	if err != nil {
		return conn.Conn{}, err
	}
	return conn.Conn{Cookie: cookie, State: state, Local: local, Remote: remote}, nil
}

// Sockaddr converts an address and port for the socket calls.
func Sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// AddrPort converts what getsockname and getpeername return.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}
