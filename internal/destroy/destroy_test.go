package destroy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// Privileged tests build real sockets in a namespace of their own. The
// Destroyer is always created inside ns.Do, so it only ever sees that
// namespace; nothing here touches the namespace the test binary started in.

var (
	lo4   = netip.MustParseAddr("127.0.0.1")
	lo6   = netip.MustParseAddr("::1")
	wild6 = netip.MustParseAddr("::")
)

// --- unprivileged tests ---

func TestEncode(t *testing.T) {
	c := &conn.Conn{
		Cookie:  0x1122334455667788,
		State:   conn.CloseWait,
		Local:   netip.MustParseAddrPort("10.0.0.5:8080"),
		Remote:  netip.MustParseAddrPort("10.0.0.100:52431"),
		Ifindex: 3,
	}
	b, err := encode(c)
	if err != nil {
		t.Fatal(err)
	}
	ne := binary.NativeEndian
	if ne.Uint32(b[0:]) != 72 || ne.Uint16(b[4:]) != 21 || ne.Uint16(b[6:]) != unix.NLM_F_REQUEST|unix.NLM_F_ACK {
		t.Errorf("bad nlmsghdr % x", b[:16])
	}
	if b[16] != unix.AF_INET || b[17] != unix.IPPROTO_TCP || ne.Uint32(b[20:]) != 1<<8 {
		t.Errorf("bad family/protocol/states % x", b[16:24])
	}
	if got, want := b[24:28], []byte{0x1f, 0x90, 0xcc, 0xcf}; !bytes.Equal(got, want) {
		t.Errorf("ports % x, want % x", got, want)
	}
	if !bytes.Equal(b[28:44], []byte{10, 0, 0, 5, 11: 0, 15: 0}) || !bytes.Equal(b[44:48], []byte{10, 0, 0, 100}) {
		t.Errorf("addresses % x", b[28:60])
	}
	if ne.Uint32(b[60:]) != 3 || ne.Uint32(b[64:]) != 0x55667788 || ne.Uint32(b[68:]) != 0x11223344 {
		t.Errorf("ifindex/cookie % x", b[60:72])
	}

	// IPv4-mapped addresses belong to AF_INET6 sockets: all 16 bytes go out.
	c.Local = netip.MustParseAddrPort("[::ffff:10.0.0.5]:8080")
	c.Remote = netip.MustParseAddrPort("[::ffff:10.0.0.100]:52431")
	b, err = encode(c)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Local.Addr().As16()
	if b[16] != unix.AF_INET6 || !bytes.Equal(b[28:44], l[:]) {
		t.Errorf("mapped: family %d, src % x", b[16], b[28:44])
	}
}

func TestRefusedWithoutSending(t *testing.T) {
	d := &Destroyer{} // closed: any request that got as far as sending would fail with ErrClosed
	good := netip.MustParseAddrPort("127.0.0.1:80")
	peer := netip.MustParseAddrPort("127.0.0.1:40000")
	for _, tc := range []struct {
		name string
		c    *conn.Conn
		want error
	}{
		{"cookie 0", &conn.Conn{State: conn.CloseWait, Local: good, Remote: peer}, ErrNoCookie},
		{"no-cookie marker", &conn.Conn{Cookie: ^uint64(0), State: conn.CloseWait, Local: good, Remote: peer}, ErrNoCookie},
		{"no state", &conn.Conn{Cookie: 1, Local: good, Remote: peer}, ErrNoState},
		{"mixed families", &conn.Conn{Cookie: 1, State: conn.CloseWait, Local: good, Remote: netip.MustParseAddrPort("[::1]:1")}, nil},
		{"no address", &conn.Conn{Cookie: 1, State: conn.CloseWait}, nil},
		{"nil", nil, nil},
		{"valid, closed destroyer", &conn.Conn{Cookie: 1, State: conn.CloseWait, Local: good, Remote: peer}, ErrClosed},
	} {
		r := d.DestroyOne(tc.c)
		if r.Outcome != Failed || r.Err == nil || (tc.want != nil && !errors.Is(r.Err, tc.want)) {
			t.Errorf("%s: got %v %v, want failed %v", tc.name, r.Outcome, r.Err, tc.want)
		}
		t.Logf("%s: %v", tc.name, r.Err)
	}
}

func ack(seq, portid uint32, code int32) []byte {
	b := make([]byte, 36)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], 36)
	ne.PutUint16(b[4:], unix.NLMSG_ERROR)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], portid)
	ne.PutUint32(b[16:], uint32(code))
	return b
}

// found is the kernel's answer to a lookup: a struct inet_diag_msg (72
// bytes) for a socket in state, followed by an attribute.
func found(seq, portid uint32, state conn.State) []byte {
	b := make([]byte, 16+72+8)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], portid)
	b[16], b[17], b[18] = unix.AF_INET, byte(state), 3
	return b
}

func TestParseAnswers(t *testing.T) {
	var msgs []byte
	msgs = append(msgs, ack(7, 42, 0)...)
	msgs = append(msgs, ack(8, 99, 0)...) // another port: ignored
	msgs = append(msgs, ack(9, 42, -int32(unix.ESTALE))...)
	msgs = append(msgs, found(10, 42, conn.TimeWait)...)
	msgs = append(msgs, found(11, 99, conn.Established)...) // another port: ignored
	type got struct {
		seq   uint32
		errno unix.Errno
		found bool
		state conn.State
	}
	var all []got
	parseAnswers(msgs, false, 42, func(seq uint32, a answer) { all = append(all, got{seq, a.errno, a.found, a.state}) })
	if want := []got{{7, 0, false, 0}, {9, unix.ESTALE, false, 0}, {10, 0, true, conn.TimeWait}}; fmt.Sprint(all) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", all, want)
	}
	// A zero length must not loop forever, a long one must not read past.
	bad := ack(1, 42, 0)
	binary.NativeEndian.PutUint32(bad, 0)
	parseAnswers(bad, false, 42, func(uint32, answer) { t.Error("answer from a zero-length message") })
	binary.NativeEndian.PutUint32(bad, 1000)
	parseAnswers(bad, false, 42, func(uint32, answer) { t.Error("answer from an overlong message") })
	parseAnswers(ack(1, 42, 0)[:19], false, 42, func(uint32, answer) { t.Error("answer from a truncated message") })
	parseAnswers(found(1, 42, conn.CloseWait)[:17], false, 42, func(uint32, answer) { t.Error("answer from a truncated lookup") })
	// Cut short by the reader (MSG_TRUNC): the fixed fields are enough.
	var cut []answer
	parseAnswers(found(3, 42, conn.LastAck)[:18], true, 42, func(seq uint32, a answer) {
		if seq == 3 {
			cut = append(cut, a)
		}
	})
	parseAnswers(ack(4, 42, -int32(unix.ENOENT))[:20], true, 42, func(seq uint32, a answer) { cut = append(cut, a) })
	if want := []answer{{found: true, state: conn.LastAck}, {errno: unix.ENOENT}}; fmt.Sprint(cut) != fmt.Sprint(want) {
		t.Errorf("cut answers: %+v, want %+v", cut, want)
	}
	parseAnswers(found(1, 42, conn.CloseWait)[:17], true, 42, func(uint32, answer) { t.Error("answer from a lookup cut before its state") })
}

func FuzzParseAnswers(f *testing.F) {
	f.Add(ack(1, 42, 0), false, uint32(42))
	f.Add(append(ack(1, 42, -2), ack(2, 42, -116)...), false, uint32(42))
	f.Add(ack(1, 42, -2)[:17], false, uint32(42))
	f.Add(append(found(1, 42, conn.CloseWait), ack(2, 42, -2)...), false, uint32(42))
	f.Add(found(1, 42, conn.CloseWait)[:40], true, uint32(42))
	f.Fuzz(func(t *testing.T, b []byte, cut bool, portid uint32) {
		parseAnswers(b, cut, portid, func(uint32, answer) {})
	})
}

// --- socket helpers (call them inside ns.Do) ---

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// closeLater closes *fd when the test ends unless the test closed it first
// (and set it to -1): closing a number twice could close a stranger's fd.
func closeLater(t testing.TB, fds ...*int) {
	t.Cleanup(func() {
		for _, fd := range fds {
			closeFD(fd)
		}
	})
}

func closeFD(fd *int) {
	if *fd >= 0 {
		unix.Close(*fd)
		*fd = -1
	}
}

func openDestroyer(t testing.TB) (*Destroyer, error) {
	d, err := New()
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { d.Close() })
	return d, nil
}

type listener struct {
	fd   int
	addr netip.AddrPort
}

// listen opens a TCP listener on ip, port chosen by the kernel. "::" is
// dual-stack: IPv4 clients reach it with IPv4-mapped addresses.
func listen(t testing.TB, ip netip.Addr) (*listener, error) {
	fd, err := unix.Socket(family(ip), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ln := &listener{fd: fd}
	closeLater(t, &ln.fd)
	if ip.Is6() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return nil, err
		}
	}
	if err := unix.Bind(fd, testnet.Sockaddr(netip.AddrPortFrom(ip, 0))); err != nil {
		return nil, err
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	ln.addr = testnet.AddrPort(sa)
	return ln, nil
}

// pair is both ends of one connection; conn describes the server end.
// reusedTuple connects from a fixed address, aborts that connection (RST,
// no TIME_WAIT) and closes its server end, then connects again on the same
// 4-tuple: old names a socket that is gone, cur the one now on its tuple.
// Call it inside the test's namespace.
func reusedTuple(t testing.TB, from netip.AddrPort) (old, cur *pair, err error) {
	ln, err := listen(t, from.Addr())
	if err != nil {
		return nil, nil, err
	}
	if old, err = dial(t, ln, ln.addr, from); err != nil {
		return nil, nil, err
	}
	if err := unix.SetsockoptLinger(old.client, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
		return nil, nil, err
	}
	closeFD(&old.client)
	if err := waitState(old.server, conn.Close); err != nil {
		return nil, nil, err
	}
	closeFD(&old.server)
	cur, err = dial(t, ln, ln.addr, from)
	return old, cur, err
}

func checkReused(t testing.TB, old, cur *pair) {
	t.Helper()
	if cur.conn.Local != old.conn.Local || cur.conn.Remote != old.conn.Remote || cur.conn.Cookie == old.conn.Cookie {
		t.Fatalf("old %s cookie %d, new %s cookie %d: want same tuple, new cookie",
			old.conn, old.conn.Cookie, cur.conn, cur.conn.Cookie)
	}
}

type pair struct {
	client, server int
	conn           *conn.Conn
}

// dial connects a client to ln at to (from a fixed local address when from
// is valid) and accepts it.
func dial(t testing.TB, ln *listener, to, from netip.AddrPort) (*pair, error) {
	fd, err := unix.Socket(family(to.Addr()), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	p := &pair{client: fd, server: -1}
	closeLater(t, &p.client, &p.server)
	if from.IsValid() {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return nil, err
		}
		if err := unix.Bind(fd, testnet.Sockaddr(from)); err != nil {
			return nil, fmt.Errorf("bind %s: %w", from, err)
		}
	}
	if err := unix.Connect(fd, testnet.Sockaddr(to)); err != nil {
		return nil, fmt.Errorf("connect %s: %w", to, err)
	}
	if p.server, _, err = unix.Accept4(ln.fd, unix.SOCK_CLOEXEC); err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	p.conn, err = connOf(p.server, conn.Established)
	return p, err
}

func connOf(fd int, state conn.State) (*conn.Conn, error) {
	local, err := unix.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	remote, err := unix.Getpeername(fd)
	if err != nil {
		return nil, err
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return nil, err
	}
	return &conn.Conn{Cookie: cookie, State: state, Local: testnet.AddrPort(local), Remote: testnet.AddrPort(remote)}, nil
}

// closeWait makes a connection whose server end is in CLOSE_WAIT: the
// client shuts down its sending side and keeps its fd.
func closeWait(t testing.TB, ln *listener, to netip.AddrPort) (*pair, error) {
	p, err := dial(t, ln, to, netip.AddrPort{})
	if err != nil {
		return nil, err
	}
	if err := unix.Shutdown(p.client, unix.SHUT_WR); err != nil {
		return nil, err
	}
	if err := waitState(p.server, conn.CloseWait); err != nil {
		return nil, err
	}
	p.conn.State = conn.CloseWait
	return p, nil
}

func tcpState(fd int) conn.State {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0
	}
	return conn.State(info.State)
}

func waitState(fd int, want conn.State) error {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		got := tcpState(fd)
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fd %d in %s, want %s", fd, got, want)
		}
	}
}

func send(fd int) error {
	return unix.Sendto(fd, []byte("ping"), unix.MSG_NOSIGNAL, nil)
}

// roundTripData proves a connection alive: server writes, client reads.
func roundTripData(p *pair) error {
	if err := send(p.server); err != nil {
		return fmt.Errorf("server write: %w", err)
	}
	buf := make([]byte, 16)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		n, _, err := unix.Recvfrom(p.client, buf, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN && time.Now().Before(deadline) {
			continue
		}
		if err != nil || string(buf[:n]) != "ping" {
			return fmt.Errorf("client read %q: %v", buf[:n], err)
		}
		return nil
	}
}

// --- sock_diag dump, for the sockets no fd holds (timewait) ---

type diagSock struct {
	state         conn.State
	local, remote netip.AddrPort
	cookie        uint64
}

// dumpTCP lists the TCP sockets of the calling thread's namespace (call it
// inside ns.Do), timewait and request sockets included.
func dumpTCP() ([]diagSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(recvTimeout))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	ne := binary.NativeEndian
	var out []diagSock
	buf := make([]byte, 64<<10)
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		req := make([]byte, reqLen)
		ne.PutUint32(req[0:], reqLen)
		ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
		ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
		req[16], req[17] = fam, unix.IPPROTO_TCP
		ne.PutUint32(req[20:], ^uint32(0))
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return nil, fmt.Errorf("send dump request: %w", err)
		}
	dump:
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return nil, fmt.Errorf("receive dump: %w", err)
			}
			for b := buf[:n]; len(b) >= nlmsgHdrLen; {
				l := int(ne.Uint32(b))
				if l < nlmsgHdrLen || l > len(b) {
					return nil, fmt.Errorf("garbled dump message")
				}
				m := b[nlmsgHdrLen:l]
				switch ne.Uint16(b[4:]) {
				case unix.NLMSG_DONE:
					break dump
				case unix.NLMSG_ERROR:
					return nil, fmt.Errorf("dump: %w", unix.Errno(-int32(ne.Uint32(m))))
				case unix.SOCK_DIAG_BY_FAMILY:
					// struct inet_diag_msg: family, state, timer, retrans, id.
					if len(m) < 52 {
						return nil, fmt.Errorf("short inet_diag_msg")
					}
					s := diagSock{state: conn.State(m[1]), cookie: uint64(ne.Uint32(m[44:])) | uint64(ne.Uint32(m[48:]))<<32}
					sp, dp := binary.BigEndian.Uint16(m[4:]), binary.BigEndian.Uint16(m[6:])
					if m[0] == unix.AF_INET {
						s.local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m[8:12])), sp)
						s.remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m[24:28])), dp)
					} else {
						s.local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(m[8:24])), sp)
						s.remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(m[24:40])), dp)
					}
					out = append(out, s)
				}
				b = b[min(len(b), (l+3)&^3):]
			}
		}
	}
	return out, nil
}

// find returns the dumped socket on local->remote, or nil.
func find(socks []diagSock, local, remote netip.AddrPort) *diagSock {
	for i := range socks {
		if socks[i].local == local && socks[i].remote == remote {
			return &socks[i]
		}
	}
	return nil
}

// --- privileged tests ---

func TestCloseWait(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen netip.Addr
		dial   netip.Addr
	}{
		{"ipv4", lo4, lo4},
		{"ipv6", lo6, lo6},
		{"ipv4-mapped", wild6, lo4}, // AF_INET6 server socket, ::ffff:127.0.0.1
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testnet.New(t)
			var d *Destroyer
			var p *pair
			ns.MustDo(func() error {
				var err error
				if d, err = openDestroyer(t); err != nil {
					return err
				}
				ln, err := listen(t, tc.listen)
				if err != nil {
					return err
				}
				p, err = closeWait(t, ln, netip.AddrPortFrom(tc.dial, ln.addr.Port()))
				return err
			})
			if tc.name == "ipv4-mapped" && !p.conn.Local.Addr().Is4In6() {
				t.Fatalf("server end is %s, want an IPv4-mapped address", p.conn.Local)
			}

			if r := d.DestroyOne(p.conn); r.Outcome != Destroyed {
				t.Fatalf("destroy %s: %v %v", p.conn, r.Outcome, r.Err)
			}
			// The process keeps its fd; the socket under it is dead.
			if _, err := unix.FcntlInt(uintptr(p.server), unix.F_GETFD, 0); err != nil {
				t.Errorf("fd gone after destroy: %v", err)
			}
			if got := tcpState(p.server); got != conn.Close {
				t.Errorf("state after destroy %s, want CLOSE", got)
			}
			if err := send(p.server); !errors.Is(err, unix.ECONNABORTED) {
				t.Errorf("write after destroy: %v, want ECONNABORTED", err)
			}
			// The peer got a RST.
			if _, err := unix.Read(p.client, make([]byte, 1)); !errors.Is(err, unix.ECONNRESET) {
				t.Errorf("peer read: %v, want ECONNRESET", err)
			}

			// Our socket is unhashed: the tuple now leads to the listener,
			// whose cookie differs.
			if r := d.DestroyOne(p.conn); r.Outcome != Gone {
				t.Errorf("second destroy: %v %v, want gone", r.Outcome, r.Err)
			}
		})
	}
}

func TestCookieExact(t *testing.T) {
	t.Run("wrong cookie", func(t *testing.T) {
		ns := testnet.New(t)
		var d *Destroyer
		var p *pair
		var other uint64
		ns.MustDo(func() error {
			var err error
			if d, err = openDestroyer(t); err != nil {
				return err
			}
			ln, err := listen(t, lo4)
			if err != nil {
				return err
			}
			if p, err = closeWait(t, ln, ln.addr); err != nil {
				return err
			}
			other, err = unix.GetsockoptUint64(p.client, unix.SOL_SOCKET, unix.SO_COOKIE)
			return err
		})
		wrong := *p.conn
		wrong.Cookie = other // a real cookie, of another socket
		req, _ := encode(&wrong)
		// ENOENT on 6.18; kernels before the cookie check moved into
		// inet_diag_find_one_icsk() said ESTALE.
		if a := d.sock.destroys([][reqLen]byte{req})[0]; a.err != nil || (a.errno != unix.ENOENT && a.errno != unix.ESTALE) {
			t.Errorf("right tuple, wrong cookie: errno %v (%v), want ENOENT", a.errno, a.err)
		}
		if r := d.DestroyOne(&wrong); r.Outcome != Gone {
			t.Errorf("right tuple, wrong cookie: %v %v, want gone", r.Outcome, r.Err)
		}
		if got := tcpState(p.server); got != conn.CloseWait {
			t.Errorf("socket in %s after a miss, want CLOSE_WAIT", got)
		}
		if err := roundTripData(p); err != nil {
			t.Errorf("socket hurt by a miss: %v", err)
		}
		if r := d.DestroyOne(p.conn); r.Outcome != Destroyed {
			t.Errorf("right cookie: %v %v", r.Outcome, r.Err)
		}
	})

	t.Run("tuple reused", func(t *testing.T) {
		ns := testnet.New(t)
		var d *Destroyer
		var old, cur *pair
		ns.MustDo(func() error {
			var err error
			if d, err = openDestroyer(t); err != nil {
				return err
			}
			old, cur, err = reusedTuple(t, netip.AddrPortFrom(lo6, 40404))
			return err
		})
		checkReused(t, old, cur)
		if r := d.DestroyOne(old.conn); r.Outcome != Gone {
			t.Errorf("destroy of the replaced connection: %v %v, want gone", r.Outcome, r.Err)
		}
		if got := tcpState(cur.server); got != conn.Established {
			t.Errorf("new connection in %s, want ESTABLISHED", got)
		}
		if err := roundTripData(cur); err != nil {
			t.Errorf("new connection hurt: %v", err)
		}
	})
}

func TestNoCookie(t *testing.T) {
	ns := testnet.New(t)
	var d *Destroyer
	var ln *listener
	var dead *conn.Conn
	ns.MustDo(func() error {
		var err error
		if d, err = openDestroyer(t); err != nil {
			return err
		}
		if ln, err = listen(t, lo4); err != nil {
			return err
		}
		// The accepted end of a connection that is gone: its tuple now
		// resolves to the listener.
		p, err := dial(t, ln, ln.addr, netip.AddrPort{})
		if err != nil {
			return err
		}
		dead = p.conn
		closeFD(&p.client)
		closeFD(&p.server)
		return nil
	})
	for _, cookie := range []uint64{0, ^uint64(0)} {
		c := *dead
		c.Cookie = cookie
		r := d.DestroyOne(&c)
		if r.Outcome != Failed || !errors.Is(r.Err, ErrNoCookie) {
			t.Errorf("cookie %#x: %v %v, want ErrNoCookie", cookie, r.Outcome, r.Err)
		}
	}
	if got := tcpState(ln.fd); got != conn.Listen {
		t.Fatalf("listener in %s, want LISTEN", got)
	}
	// Why it matters (kernel behaviour, shown here in the test namespace):
	// the kernel compares cookie 0 like any cookie (a miss: ENOENT), but
	// reads all-ones as "no cookie" — and the dead tuple then destroys the
	// listener.
	req, _ := encode(dead)
	binary.NativeEndian.PutUint64(req[64:], 0)
	if a := d.sock.destroys([][reqLen]byte{req})[0]; a.err != nil || (a.errno != unix.ENOENT && a.errno != unix.ESTALE) {
		t.Errorf("raw cookie 0: %v %v, want ENOENT", a.errno, a.err)
	}
	binary.NativeEndian.PutUint64(req[64:], ^uint64(0))
	if a := d.sock.destroys([][reqLen]byte{req})[0]; a.err != nil || a.errno != 0 {
		t.Errorf("raw no-cookie request: %v %v, want success", a.errno, a.err)
	}
	if got := tcpState(ln.fd); got != conn.Close {
		t.Errorf("listener after a raw no-cookie request: %s, want CLOSE (destroyed)", got)
	}
}

func TestBatch(t *testing.T) {
	const perFamily = 1000
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if need := uint64(4*perFamily + 256); lim.Cur < need {
		if lim.Max < need {
			t.Skipf("RLIMIT_NOFILE hard limit %d < %d", lim.Max, need)
		}
		old := lim
		lim.Cur = need
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
	}

	ns := testnet.New(t)
	var d *Destroyer
	var pairs []*pair
	ns.MustDo(func() error {
		var err error
		if d, err = openDestroyer(t); err != nil {
			return err
		}
		for _, ip := range []netip.Addr{lo4, lo6} {
			ln, err := listen(t, ip)
			if err != nil {
				return err
			}
			for range perFamily {
				p, err := closeWait(t, ln, ln.addr)
				if err != nil {
					return err
				}
				pairs = append(pairs, p)
			}
		}
		return nil
	})
	conns := make([]*conn.Conn, len(pairs))
	for i, p := range pairs {
		conns[i] = p.conn
	}
	start := time.Now()
	res := d.Destroy(conns)
	elapsed := time.Since(start)
	t.Logf("destroyed %d sockets in %v (%.0f/s), %d per sendmsg",
		len(conns), elapsed, float64(len(conns))/elapsed.Seconds(), d.sock.batch)
	for i, r := range res {
		if r.Outcome != Destroyed {
			t.Errorf("%s: %v %v", conns[i], r.Outcome, r.Err)
		}
	}
	var socks []diagSock
	ns.MustDo(func() (err error) { socks, err = dumpTCP(); return err })
	for _, s := range socks {
		if s.state == conn.CloseWait {
			t.Errorf("still CLOSE_WAIT: %s -> %s", s.local, s.remote)
		}
	}
}

func TestEstablished(t *testing.T) {
	ns := testnet.New(t)
	var d *Destroyer
	var p *pair
	ns.MustDo(func() error {
		var err error
		if d, err = openDestroyer(t); err != nil {
			return err
		}
		ln, err := listen(t, lo6)
		if err != nil {
			return err
		}
		p, err = dial(t, ln, ln.addr, netip.AddrPort{})
		return err
	})
	if r := d.DestroyOne(p.conn); r.Outcome != Destroyed {
		t.Fatalf("destroy %s: %v %v", p.conn, r.Outcome, r.Err)
	}
	if err := send(p.server); !errors.Is(err, unix.ECONNABORTED) {
		t.Errorf("owner write: %v, want ECONNABORTED", err)
	}
	if _, err := unix.Read(p.client, make([]byte, 1)); !errors.Is(err, unix.ECONNRESET) {
		t.Errorf("peer read: %v, want ECONNRESET", err)
	}
}

// TestTimewait destroys the timewait sockets the kernel keeps after
// close(): an orphan in FIN_WAIT2, then the same socket in TIME_WAIT. No fd
// holds them; their cookie comes from a sock_diag dump.
func TestTimewait(t *testing.T) {
	for _, want := range []conn.State{conn.FinWait2, conn.TimeWait} {
		t.Run(want.String(), func(t *testing.T) {
			ns := testnet.New(t)
			var d *Destroyer
			var tw *conn.Conn
			var cookie uint64
			ns.MustDo(func() error {
				var err error
				if d, err = openDestroyer(t); err != nil {
					return err
				}
				ln, err := listen(t, lo4)
				if err != nil {
					return err
				}
				p, err := dial(t, ln, ln.addr, netip.AddrPort{})
				if err != nil {
					return err
				}
				client, err := connOf(p.client, conn.Established)
				if err != nil {
					return err
				}
				cookie = client.Cookie
				closeFD(&p.client) // FIN_WAIT1, then an orphan FIN_WAIT2 timewait socket
				if want == conn.TimeWait {
					if err := waitState(p.server, conn.CloseWait); err != nil {
						return err
					}
					closeFD(&p.server) // the peer's FIN moves it to TIME_WAIT
				}
				for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
					socks, err := dumpTCP()
					if err != nil {
						return err
					}
					if s := find(socks, client.Local, client.Remote); s != nil && s.state == want {
						tw = &conn.Conn{Cookie: s.cookie, State: s.state, Local: s.local, Remote: s.remote, Timewait: true}
						return nil
					}
					if time.Now().After(deadline) {
						return fmt.Errorf("no %s socket for %s -> %s", want, client.Local, client.Remote)
					}
				}
			})
			if tw.Cookie != cookie {
				t.Errorf("timewait cookie %#x, SO_COOKIE of the full socket was %#x", tw.Cookie, cookie)
			}
			if r := d.DestroyOne(tw); r.Outcome != Destroyed {
				t.Fatalf("destroy %s: %v %v", tw, r.Outcome, r.Err)
			}
			var socks []diagSock
			ns.MustDo(func() (err error) { socks, err = dumpTCP(); return err })
			if s := find(socks, tw.Local, tw.Remote); s != nil {
				t.Errorf("still there after destroy: %+v", *s)
			}
			if r := d.DestroyOne(tw); r.Outcome != Gone {
				t.Errorf("second destroy: %v %v, want gone", r.Outcome, r.Err)
			}
		})
	}
}

// lossy builds n CLOSE_WAIT connections, every other one gone already
// (reset by its owner), and a destroyer whose receive buffer is squeezed so
// the kernel drops answers. Call it from the test, not inside ns.Do.
// With split, a call splits the connections in two halves, each on a
// netlink socket of its own, both squeezed.
func lossy(t *testing.T, ns *testnet.NS, n int, split bool) (*Destroyer, []*conn.Conn, []*pair) {
	t.Helper()
	var d *Destroyer
	var conns []*conn.Conn
	var pairs []*pair
	ns.MustDo(func() error {
		var err error
		if d, err = New(); err != nil {
			return err
		}
		t.Cleanup(func() { d.Close() })
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		for i := range n {
			p, err := closeWait(t, ln, ln.addr)
			if err != nil {
				return err
			}
			if i%2 == 1 { // gone: reset by its owner
				if err := unix.SetsockoptLinger(p.server, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
					return err
				}
				closeFD(&p.server)
			}
			pairs = append(pairs, p)
			conns = append(conns, p.conn)
		}
		// The smallest buffer the kernel allows holds a handful of answers.
		return squeeze(d.sock.fd)
	})
	if split {
		d.workers, d.perWorker = 2, n/2
		var opened atomic.Int32
		d.opened = func(fd int) {
			opened.Add(1)
			if err := squeeze(fd); err != nil {
				t.Error(err)
			}
		}
		t.Cleanup(func() {
			if opened.Load() == 0 {
				t.Error("no call was split")
			}
		})
	}
	return d, conns, pairs
}

// squeeze gives a netlink socket the smallest receive buffer the kernel
// allows, set after the Destroyer sized its batches for a large one.
func squeeze(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
}

// TestLostAnswers: the kernel drops answers on a full receive queue. The
// SOCK_DESTROY exchange must report them, not hang for the receive timeout,
// and never read a lost error answer as success. Half the sockets are gone
// already: their requests fail (ENOENT), and only failures and the batch's
// last request are answered.
func TestLostAnswers(t *testing.T) {
	ns := testnet.New(t)
	d, conns, pairs := lossy(t, ns, 200, false)
	reqs := make([][reqLen]byte, len(conns))
	for i, c := range conns {
		var err error
		if reqs[i], err = encode(c); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	ans := d.sock.destroys(reqs)
	if el := time.Since(start); el >= recvTimeout {
		t.Errorf("took %v: waited for answers the kernel had dropped", el)
	}
	var destroyed, gone, lost int
	for i, a := range ans {
		alive := i%2 == 0
		switch {
		case a.err == nil && a.errno == 0 && alive:
			destroyed++
		case a.err == nil && a.errno == unix.ENOENT && !alive:
			gone++
		case errors.Is(a.err, ErrNoAnswer):
			lost++
		default:
			t.Errorf("%s (alive %v): %+v", conns[i], alive, a)
		}
	}
	t.Logf("%d destroyed, %d gone, %d lost: %v", destroyed, gone, lost, ans[len(ans)-1].err)
	if gone == 0 || lost == 0 {
		t.Errorf("%d gone, %d lost: want some of each", gone, lost)
	}
	// The requests all went through; only answers were lost.
	for i, p := range pairs {
		if i%2 == 0 {
			if got := tcpState(p.server); got != conn.Close {
				t.Errorf("%s in %s after destroy", p.conn, got)
			}
		}
	}
}

// TestLostLookups: a socket whose lookup answer was lost is in an unknown
// state, and is never destroyed: Destroy reports it as failed (no answer)
// and it lives on.
func TestLostLookups(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprintf("split=%v", split), func(t *testing.T) {
			ns := testnet.New(t)
			const n = 200
			d, conns, pairs := lossy(t, ns, n, split)
			start := time.Now()
			res := d.Destroy(conns)
			if el := time.Since(start); el >= recvTimeout {
				t.Errorf("took %v: waited for answers the kernel had dropped", el)
			}
			var destroyed, gone int
			var lost [2]int // in each half
			for i, r := range res {
				alive := i%2 == 0
				switch {
				case r.Outcome == Destroyed && alive:
					destroyed++
					if got := tcpState(pairs[i].server); got != conn.Close {
						t.Errorf("%s destroyed, kernel has it in %s", conns[i], got)
					}
				case r.Outcome == Gone && !alive:
					gone++
				case r.Outcome == Failed && errors.Is(r.Err, ErrNoAnswer):
					lost[i*2/n]++
					if alive && strings.HasPrefix(r.Err.Error(), "look up") {
						if got := tcpState(pairs[i].server); got != conn.CloseWait {
							t.Errorf("%s: lookup unanswered, yet the kernel has it in %s", conns[i], got)
						}
					}
				default:
					t.Errorf("%s (alive %v): %v %v", conns[i], alive, r.Outcome, r.Err)
				}
			}
			t.Logf("%d destroyed, %d gone, %v lost", destroyed, gone, lost)
			if lost[0]+lost[1] == 0 {
				t.Error("no lookup answer lost: the test squeezed nothing")
			}
			if split && (lost[0] == 0 || lost[1] == 0) {
				t.Errorf("lost %v: want losses on both sockets", lost)
			}
		})
	}
}

// benchSizes are the sizes the benchmarks run: one socket (never split),
// and a batch of 2,000 on one netlink socket (serial) and split as
// Destroy splits it by default.
var benchSizes = []struct {
	name    string
	n       int
	workers int // 0: the default
}{{"n=1", 1, 0}, {"n=2000/serial", 2000, 1}, {"n=2000", 2000, 0}}

// BenchmarkDestroy looks up and destroys CLOSE_WAIT sockets, built
// (untimed) before each Destroy call.
func BenchmarkDestroy(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			ns := testnet.New(b)
			var d *Destroyer
			var ln *listener
			ns.MustDo(func() error {
				var err error
				if d, err = openDestroyer(b); err != nil {
					return err
				}
				ln, err = listen(b, lo4)
				return err
			})
			if bs.workers > 0 {
				d.workers = bs.workers
			}
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(bs.n, b.N-done)
				b.StopTimer()
				pairs := make([]*pair, n)
				conns := make([]*conn.Conn, n)
				ns.MustDo(func() error {
					for i := range n {
						p, err := closeWait(b, ln, ln.addr)
						if err != nil {
							return err
						}
						pairs[i], conns[i] = p, p.conn
					}
					return nil
				})
				b.StartTimer()
				res := d.Destroy(conns)
				b.StopTimer()
				for i, r := range res {
					if r.Outcome != Destroyed {
						b.Fatalf("%s: %v %v", conns[i], r.Outcome, r.Err)
					}
				}
				for _, p := range pairs {
					closeFD(&p.client)
					closeFD(&p.server)
				}
				done += n
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "destroys/s")
		})
	}
}

// BenchmarkCheck: the lookups Destroy makes before any SOCK_DESTROY, alone,
// over CLOSE_WAIT sockets.
func BenchmarkCheck(b *testing.B) {
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			ns := testnet.New(b)
			var d *Destroyer
			var conns []*conn.Conn
			ns.MustDo(func() error {
				var err error
				if d, err = openDestroyer(b); err != nil {
					return err
				}
				ln, err := listen(b, lo4)
				if err != nil {
					return err
				}
				for range bs.n {
					p, err := closeWait(b, ln, ln.addr)
					if err != nil {
						return err
					}
					conns = append(conns, p.conn)
				}
				return nil
			})
			if bs.workers > 0 {
				d.workers = bs.workers
			}
			b.ResetTimer()
			for range b.N {
				for i, r := range d.Check(conns) {
					if r.Outcome != Confirmed {
						b.Fatalf("%s: %v %v", conns[i], r.Outcome, r.Err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(conns))/b.Elapsed().Seconds(), "checks/s")
		})
	}
}

// TestMixedBatch: in one batch, only failed requests and the last one are
// answered; every other request succeeded. Alive and gone sockets
// alternate, the last one gone, then alive.
//
// Split, the call is shared by three netlink sockets, the two besides the
// Destroyer's opened in its namespace for the call.
func TestMixedBatch(t *testing.T) {
	for _, tc := range []struct{ lastAlive, split bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		lastAlive := tc.lastAlive
		ns := testnet.New(t)
		var d *Destroyer
		var conns []*conn.Conn
		var pairs []*pair
		n := 301
		if lastAlive {
			n = 300
		}
		ns.MustDo(func() error {
			var err error
			if d, err = New(); err != nil {
				return err
			}
			t.Cleanup(func() { d.Close() })
			ln, err := listen(t, lo6)
			if err != nil {
				return err
			}
			for i := range n {
				p, err := closeWait(t, ln, ln.addr)
				if err != nil {
					return err
				}
				if i%2 == 0 {
					if err := unix.SetsockoptLinger(p.server, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
						return err
					}
					closeFD(&p.server)
				}
				pairs, conns = append(pairs, p), append(conns, p.conn)
			}
			return nil
		})
		var opened []uint32
		var mu sync.Mutex
		if tc.split {
			d.workers, d.perWorker = 3, 64
			d.opened = func(fd int) {
				ino := sockNetns(t, fd)
				mu.Lock()
				opened = append(opened, ino)
				mu.Unlock()
			}
		}
		for i, r := range d.Destroy(conns) {
			want := Destroyed
			if i%2 == 0 {
				want = Gone
			}
			if r.Outcome != want || r.Via != Netlink {
				t.Errorf("%s: %v via %v (%v), want %v", conns[i], r.Outcome, r.Via, r.Err, want)
			}
			if want == Destroyed && tcpState(pairs[i].server) != conn.Close {
				t.Errorf("%s reported destroyed, in %s", conns[i], tcpState(pairs[i].server))
			}
		}
		if want := map[bool]int{false: 0, true: 2}[tc.split]; len(opened) != want {
			t.Errorf("split %v: %d sockets opened, want %d", tc.split, len(opened), want)
		}
		for _, ino := range opened {
			if ino != ns.Inode() {
				t.Errorf("a socket opened in namespace %d, want %d", ino, ns.Inode())
			}
		}
	}
}

// TestStateChecked: a request names the state the caller believes the
// socket is in; the kernel ignores it, the destroyer does not. A live
// connection described as CLOSE_WAIT or TIME_WAIT (an entry whose
// transitions the tracker missed, or a socket that connected again under
// the same cookie) is reported Changed, with the kernel's state, and lives
// on; described as it is, it is Confirmed by Check and destroyed by
// Destroy.
func TestStateChecked(t *testing.T) {
	for _, ip := range []netip.Addr{lo4, lo6} {
		t.Run(ip.String(), func(t *testing.T) {
			ns := testnet.New(t)
			var d *Destroyer
			var p *pair
			ns.MustDo(func() error {
				var err error
				if d, err = openDestroyer(t); err != nil {
					return err
				}
				ln, err := listen(t, ip)
				if err != nil {
					return err
				}
				p, err = dial(t, ln, ln.addr, netip.AddrPort{})
				return err
			})
			for _, believed := range []conn.State{conn.CloseWait, conn.TimeWait, conn.FinWait2} {
				wrong := *p.conn
				wrong.State = believed
				wrong.Timewait = believed == conn.TimeWait
				if r := d.Check([]*conn.Conn{&wrong})[0]; r.Outcome != Changed || r.State != conn.Established {
					t.Errorf("check as %s: %v (kernel %s) %v, want changed (ESTABLISHED)", believed, r.Outcome, r.State, r.Err)
				}
				if r := d.DestroyOne(&wrong); r.Outcome != Changed || r.State != conn.Established {
					t.Errorf("destroy as %s: %v (kernel %s) %v, want changed (ESTABLISHED)", believed, r.Outcome, r.State, r.Err)
				}
			}
			if err := roundTripData(p); err != nil {
				t.Fatalf("the connection did not live on: %v", err)
			}
			if r := d.Check([]*conn.Conn{p.conn})[0]; r.Outcome != Confirmed || r.State != conn.Established {
				t.Errorf("check as it is: %v (kernel %s) %v, want confirmed", r.Outcome, r.State, r.Err)
			}
			if err := roundTripData(p); err != nil {
				t.Fatalf("Check destroyed the connection: %v", err)
			}
			if r := d.DestroyOne(p.conn); r.Outcome != Destroyed {
				t.Errorf("destroy as it is: %v %v, want destroyed", r.Outcome, r.Err)
			}
			if err := send(p.server); !errors.Is(err, unix.ECONNABORTED) {
				t.Errorf("owner write after destroy: %v, want ECONNABORTED", err)
			}
		})
	}
}

// sockNetns is the inode of the network namespace socket fd belongs to.
func sockNetns(t testing.TB, fd int) uint32 {
	t.Helper()
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		t.Errorf("SIOCGSKNS: %v", err)
		return 0
	}
	defer unix.Close(nsfd)
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil {
		t.Errorf("stat socket's namespace: %v", err)
		return 0
	}
	return uint32(st.Ino)
}

// TestShares: how a call is split over sockets.
func TestShares(t *testing.T) {
	for _, tc := range []struct {
		n, workers, per int
		want            int
	}{
		{1, 8, parMin, 1},
		{2*parMin - 1, 8, parMin, 1},
		{2 * parMin, 8, parMin, 2},
		{10000, 8, parMin, 8},
		{10000, 2, parMin, 2},
		{10000, 1, parMin, 1},
		{0, 8, parMin, 1},
	} {
		sh := shares(tc.n, tc.workers, tc.per)
		if len(sh) != tc.want {
			t.Errorf("shares(%d, %d, %d): %d shares, want %d", tc.n, tc.workers, tc.per, len(sh), tc.want)
		}
		next := 0
		for _, s := range sh {
			if s.lo != next || s.hi < s.lo || len(sh) > 1 && s.hi-s.lo < tc.per {
				t.Errorf("shares(%d, %d, %d): %v", tc.n, tc.workers, tc.per, sh)
				break
			}
			next = s.hi
		}
		if next != tc.n {
			t.Errorf("shares(%d, %d, %d) cover %d", tc.n, tc.workers, tc.per, next)
		}
	}
}

// TestSmallBatchSerial: below the threshold a call opens no socket and
// starts no thread, however many CPUs there are; at it, it does. After a
// large call the Destroyer keeps only a small call's buffers.
func TestSmallBatchSerial(t *testing.T) {
	ns := testnet.New(t)
	var d *Destroyer
	var conns []*conn.Conn
	ns.MustDo(func() error {
		var err error
		if d, err = openDestroyer(t); err != nil {
			return err
		}
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		for range 2 * parMin {
			p, err := closeWait(t, ln, ln.addr)
			if err != nil {
				return err
			}
			conns = append(conns, p.conn)
		}
		return nil
	})
	d.workers = maxWorkers
	opened := 0
	d.opened = func(int) { opened++ }
	for _, n := range []int{1, 2*parMin - 1} {
		opened = 0
		for i, r := range d.Check(conns[:n]) {
			if r.Outcome != Confirmed {
				t.Fatalf("%s: %v %v", conns[i], r.Outcome, r.Err)
			}
		}
		if opened != 0 {
			t.Errorf("%d sockets: %d more netlink sockets opened, want none", n, opened)
		}
	}
	opened = 0
	d.Check(conns)
	if opened != 1 {
		t.Errorf("%d sockets: %d more netlink sockets opened, want 1", len(conns), opened)
	}
	// What the Destroyer keeps between calls is what a small call needs.
	d.workers = 1
	for _, kill := range []bool{false, true} {
		res := d.run(conns, kill)
		for i, r := range res {
			if want := map[bool]Outcome{false: Confirmed, true: Destroyed}[kill]; r.Outcome != want {
				t.Fatalf("%s: %v %v, want %v", conns[i], r.Outcome, r.Err, want)
			}
		}
		k := d.sock
		if cap(k.wbuf) > keepBytes || k.rd != nil && len(k.rd.hdrs) > keepSlots {
			t.Errorf("kept after a call of %d sockets: %d bytes of requests, %d answer slots", len(conns), cap(k.wbuf), len(k.rd.hdrs))
		}
	}
}

// TestNewAt: a Destroyer opened for another namespace, from a thread that
// stays where it is, destroys that namespace's sockets, also split over
// sockets it opens there for the call; no thread is left in the
// namespace, and the caller's handle is the caller's to close.
func TestNewAt(t *testing.T) {
	ns := testnet.New(t)
	h, err := netns.FromPath(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	home, err := netns.CurrentInode()
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	h.Close()
	if now, err := netns.CurrentInode(); err != nil || now != home {
		t.Fatalf("calling thread in namespace %d (%v), was in %d", now, err, home)
	}
	if d.Netns() != ns.Inode() || sockNetns(t, d.sock.fd) != ns.Inode() {
		t.Fatalf("destroyer for namespace %d, its socket in %d; want %d", d.Netns(), sockNetns(t, d.sock.fd), ns.Inode())
	}

	var pairs []*pair
	var conns []*conn.Conn
	ns.MustDo(func() error {
		ln, err := listen(t, lo4)
		if err != nil {
			return err
		}
		for range 100 {
			p, err := closeWait(t, ln, ln.addr)
			if err != nil {
				return err
			}
			pairs, conns = append(pairs, p), append(conns, p.conn)
		}
		return nil
	})
	d.workers, d.perWorker = 2, 50
	var opened []uint32
	d.opened = func(fd int) { opened = append(opened, sockNetns(t, fd)) }
	for i, r := range d.Destroy(conns) {
		if r.Outcome != Destroyed {
			t.Errorf("%s: %v %v", conns[i], r.Outcome, r.Err)
		}
		if got := tcpState(pairs[i].server); got != conn.Close {
			t.Errorf("%s in %s after destroy", conns[i], got)
		}
	}
	if len(opened) != 1 || opened[0] != ns.Inode() {
		t.Errorf("sockets opened for the call in namespaces %v, want one in %d", opened, ns.Inode())
	}
	if now, err := netns.CurrentInode(); err != nil || now != home {
		t.Errorf("calling thread in namespace %d (%v), was in %d", now, err, home)
	}
	// Threads that moved die with their goroutines, which may take a
	// moment; testnet's own threads (ns.Do) die the same way.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		in := threadsIn(t, ns.Inode())
		if in == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d threads left in the namespace", in)
		}
	}
}

// threadsIn counts the process's threads in network namespace ino.
func threadsIn(t *testing.T, ino uint32) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		var st unix.Stat_t
		if unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st) == nil && uint32(st.Ino) == ino {
			n++
		}
	}
	return n
}
