package testnet

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/loopsock"
)

// Families are the address families every builder takes: "tcp4" builds on
// 127.0.0.1, "tcp6" on ::1.
var Families = []string{"tcp4", "tcp6"}

// Timeout bounds every wait of this package: connect, accept, and a state
// the kernel must reach.
var Timeout = 5 * time.Second

// pollInterval is how often Await dumps the namespace's sockets.
const pollInterval = 5 * time.Millisecond

// Sock is a TCP socket made in a test's namespace.
type Sock struct {
	// FD is the socket's file descriptor (non-blocking, close-on-exec), -1
	// once closed or for a request socket, which never had one.
	FD     int
	Local  netip.AddrPort
	Remote netip.AddrPort // for a listener, the unspecified address and port 0, as sock_diag has it
	// Cookie is SO_COOKIE, read when the socket was made. It outlives the
	// file: an orphan, and the timewait socket the kernel keeps after close,
	// carry the same cookie.
	Cookie uint64
	// Filter is the packet loss that holds the socket in its state, nil
	// when none does.
	Filter *Filter

	ns *NS
	t  testing.TB
}

func (s *Sock) String() string {
	return fmt.Sprintf("%s -> %s cookie=%d", s.Local, s.Remote, s.Cookie)
}

// Diag is the socket as the kernel reports it now, found by cookie; false
// when the namespace no longer has it.
func (s *Sock) Diag() (DiagSock, bool) {
	s.t.Helper()
	d, ok, err := s.ns.Find(s.Cookie)
	if err != nil {
		s.t.Fatal(err)
	}
	return d, ok
}

// State is the socket's state as the kernel reports it now (see
// DiagSock.State); false when the socket no longer exists.
func (s *Sock) State() (conn.State, bool) {
	s.t.Helper()
	d, ok := s.Diag()
	return d.State, ok
}

// Alive reports whether the kernel still has the socket, in any state.
func (s *Sock) Alive() bool {
	s.t.Helper()
	_, ok := s.Diag()
	return ok
}

// Close closes the file: a graceful close(2), which may leave an orphan or
// timewait socket behind under the same cookie. Closing twice is a no-op.
func (s *Sock) Close() {
	s.t.Helper()
	if s.FD < 0 {
		return
	}
	if err := unix.Close(s.FD); err != nil {
		s.t.Fatalf("close %s: %v", s, err)
	}
	s.FD = -1
}

// Abort closes the file with SO_LINGER 0: the kernel sends a reset and
// frees the socket at once (no orphan, no timewait). Every Sock still open
// when its test ends is aborted.
func (s *Sock) Abort() {
	s.t.Helper()
	if err := s.abort(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Sock) abort() error {
	if s.FD < 0 {
		return nil
	}
	err := loopsock.Abort(s.FD)
	s.FD = -1
	if err != nil {
		return fmt.Errorf("abort %s: %w", s, err)
	}
	return nil
}

// CloseWrite is shutdown(SHUT_WR): send FIN, keep the file.
func (s *Sock) CloseWrite() {
	s.t.Helper()
	if err := unix.Shutdown(s.FD, unix.SHUT_WR); err != nil {
		s.t.Fatalf("shutdown %s: %v", s, err)
	}
}

// Disconnect is connect(2) with AF_UNSPEC: the kernel's tcp_disconnect().
// The socket goes to CLOSE (a reset to the peer where the state calls for
// one) and keeps its file, its cookie and its bound port: it may connect or
// listen again.
func (s *Sock) Disconnect() {
	s.t.Helper()
	var sa unix.RawSockaddrAny
	sa.Addr.Family = unix.AF_UNSPEC
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(s.FD), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		s.t.Fatalf("connect(AF_UNSPEC) %s: %v", s, errno)
	}
	s.Remote = netip.AddrPort{}
}

// Connect connects the socket to addr and waits until it is connected: a
// socket that was disconnected, or whose connection ended while it kept
// its file, connects again under the same cookie.
func (s *Sock) Connect(addr netip.AddrPort) {
	s.t.Helper()
	s.connect(addr)
	s.waitConnected()
	s.fill()
}

// Listen makes the socket a listener (again, for a socket that was
// connected before).
func (s *Sock) Listen() {
	s.t.Helper()
	s.listen()
}

// Accept takes the next connection off a listener.
func (s *Sock) Accept() *Sock {
	s.t.Helper()
	return s.accept()
}

// WaitState waits until the kernel reports the socket in state want.
func (s *Sock) WaitState(want conn.State) DiagSock {
	s.t.Helper()
	d, _ := Lookup(s.ns.Await(s.t, s.In(want)), s.Cookie)
	return d
}

// Cond is a condition on a dump of the namespace: nil when it holds, else
// what is missing.
type Cond func(socks []DiagSock) error

// In holds when the socket is in state want.
func (s *Sock) In(want conn.State) Cond {
	return s.match(want, func(DiagSock) bool { return true })
}

// InTimewait holds when the socket is a timewait socket (no longer a full
// socket) whose substate is want: FIN_WAIT2 or TIME_WAIT.
func (s *Sock) InTimewait(want conn.State) Cond {
	return s.match(want, DiagSock.Timewait)
}

// match holds when a socket with s's cookie is in state want. A cookie
// may name two sockets at once: a socket whose connection went to TIME_WAIT
// while its file stayed open, then connected again, is a timewait socket on
// the old tuple and a full socket on the new one, under one cookie.
func (s *Sock) match(want conn.State, ok func(DiagSock) bool) Cond {
	return func(socks []DiagSock) error {
		var have []string
		for _, d := range socks {
			if d.Cookie != s.Cookie {
				continue
			}
			if d.State == want && ok(d) {
				return nil
			}
			have = append(have, d.String())
		}
		if len(have) == 0 {
			return fmt.Errorf("%s: want %s, socket is gone", s, want)
		}
		return fmt.Errorf("%s: want %s, kernel has %s", s, want, strings.Join(have, "; "))
	}
}

// Gone holds when the kernel no longer has the socket.
func (s *Sock) Gone() Cond {
	return func(socks []DiagSock) error {
		for _, d := range socks {
			if d.Cookie == s.Cookie {
				return fmt.Errorf("%s: want gone, kernel has %s", s, d)
			}
		}
		return nil
	}
}

// Await dumps the namespace's sockets until every cond holds and returns
// that dump; it fails t with what was still missing after Timeout.
func (ns *NS) Await(t testing.TB, conds ...Cond) []DiagSock {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		socks, err := ns.Dump()
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, c := range conds {
			if err := c(socks); err != nil {
				missing = append(missing, err.Error())
			}
		}
		if len(missing) == 0 {
			return socks
		}
		if time.Now().After(deadline) {
			var all []string
			for _, d := range socks {
				all = append(all, "  "+d.String())
			}
			t.Fatalf("after %v in %s:\n%s\nsockets:\n%s", Timeout, ns.Name,
				strings.Join(missing, "\n"), strings.Join(all, "\n"))
		}
		time.Sleep(pollInterval)
	}
}

// Lookup finds the socket with the cookie in a dump.
func Lookup(socks []DiagSock, cookie uint64) (DiagSock, bool) {
	for _, d := range socks {
		if d.Cookie == cookie {
			return d, true
		}
	}
	return DiagSock{}, false
}

type family struct {
	af int
	lo netip.Addr
}

func lookupFamily(t testing.TB, name string) family {
	t.Helper()
	switch name {
	case "tcp4":
		return family{unix.AF_INET, loopsock.Loopback4}
	case "tcp6":
		return family{unix.AF_INET6, loopsock.Loopback6}
	}
	t.Fatalf("family %q: want tcp4 or tcp6", name)
	return family{}
}

// socket makes a non-blocking TCP socket inside the namespace, bound to the
// family's loopback address on a free port, aborted when t ends.
func (ns *NS) socket(t testing.TB, fam string) *Sock {
	t.Helper()
	return ns.socketOn(t, fam, 0)
}

// socketOn is socket bound to port (0: a free one).
func (ns *NS) socketOn(t testing.TB, fam string, port uint16) *Sock {
	t.Helper()
	f := lookupFamily(t, fam)
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = loopsock.Socket(f.af, loopsock.Options{NonBlock: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &Sock{FD: fd, ns: ns, t: t}
	t.Cleanup(func() {
		if err := s.abort(); err != nil {
			t.Error(err)
		}
	})
	if err := ns.owns(fd); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, Sockaddr(netip.AddrPortFrom(f.lo, port))); err != nil {
		t.Fatalf("bind %s port %d: %v", f.lo, port, err)
	}
	s.fill()
	return s
}

// owns checks that the socket belongs to the namespace (SIOCGSKNS): a
// socket made anywhere else is a bug that would touch the host.
func (ns *NS) owns(fd int) error {
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return fmt.Errorf("find namespace of socket: %w", err)
	}
	defer unix.Close(nsfd)
	var got, want unix.Stat_t
	if err := unix.Fstat(nsfd, &got); err != nil {
		return fmt.Errorf("stat namespace of socket: %w", err)
	}
	if err := unix.Stat(ns.Path(), &want); err != nil {
		return fmt.Errorf("stat %s: %w", ns.Path(), err)
	}
	if got.Ino != want.Ino || got.Dev != want.Dev {
		return fmt.Errorf("socket is in namespace %d, not in %s (%d)", got.Ino, ns.Name, want.Ino)
	}
	return nil
}

// fill reads the addresses and the cookie.
func (s *Sock) fill() {
	s.t.Helper()
	var err error
	if s.Local, err = loopsock.Local(s.FD); err != nil {
		s.t.Fatal(err)
	}
	if remote, err := loopsock.Remote(s.FD); err == nil {
		s.Remote = remote
	}
	if s.Cookie, err = loopsock.Cookie(s.FD); err != nil {
		s.t.Fatalf("%s: %v", s.Local, err)
	}
}

func (s *Sock) listen() {
	s.t.Helper()
	if err := unix.Listen(s.FD, 128); err != nil {
		s.t.Fatalf("listen on %s: %v", s.Local, err)
	}
	unspec := netip.IPv4Unspecified()
	if s.Local.Addr().Is6() {
		unspec = netip.IPv6Unspecified()
	}
	s.Remote = netip.AddrPortFrom(unspec, 0)
}

// connect starts a connection to addr and returns without waiting.
func (s *Sock) connect(addr netip.AddrPort) {
	s.t.Helper()
	err := unix.Connect(s.FD, Sockaddr(addr))
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		s.t.Fatalf("connect %s to %s: %v", s.Local, addr, err)
	}
	s.Remote = addr
}

// waitConnected waits for the connection connect started.
func (s *Sock) waitConnected() {
	s.t.Helper()
	s.poll(unix.POLLOUT, "connect")
	errno, err := unix.GetsockoptInt(s.FD, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = unix.Errno(errno)
	}
	if err != nil {
		s.t.Fatalf("connect %s to %s: %v", s.Local, s.Remote, err)
	}
}

// accept takes the next connection off a listener.
func (s *Sock) accept() *Sock {
	s.t.Helper()
	s.poll(unix.POLLIN, "accept")
	fd, _, err := unix.Accept4(s.FD, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		s.t.Fatalf("accept on %s: %v", s.Local, err)
	}
	a := &Sock{FD: fd, ns: s.ns, t: s.t}
	s.t.Cleanup(func() {
		if err := a.abort(); err != nil {
			s.t.Error(err)
		}
	})
	a.fill()
	return a
}

func (s *Sock) poll(events int16, what string) {
	s.t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(s.FD), Events: events}}
		n, err := unix.Poll(fds, int(max(time.Until(deadline), 0).Milliseconds()))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			s.t.Fatalf("%s on %s: poll: %v", what, s.Local, err)
		case n == 0:
			s.t.Fatalf("%s on %s: nothing after %v", what, s.Local, Timeout)
		}
		return
	}
}

// Sockaddr converts an address and port for the socket calls
// (loopsock.Sockaddr).
func Sockaddr(ap netip.AddrPort) unix.Sockaddr { return loopsock.Sockaddr(ap) }

// AddrPort converts what getsockname and getpeername return
// (loopsock.AddrPort).
func AddrPort(sa unix.Sockaddr) netip.AddrPort { return loopsock.AddrPort(sa) }
