package kill

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sockdiag"
)

// nlmsg is one netlink message: header (length, type, sequence) and body.
func nlmsg(typ uint16, seq uint32, body []byte) []byte {
	n := nlmsgHdrLen + len(body)
	b := make([]byte, (n+3)&^3)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], typ)
	ne.PutUint32(b[8:], seq)
	copy(b[nlmsgHdrLen:], body)
	return b
}

// diagMsg is a struct inet_diag_msg for c, with a trailing attribute the
// parser must skip.
func diagMsg(c *conn.Conn, timer uint8, uid, inode uint32) []byte {
	b := make([]byte, sockdiag.MsgLen+8)
	ne := binary.NativeEndian
	b[1], b[2] = byte(c.State), timer
	binary.BigEndian.PutUint16(b[4:], c.Local.Port())
	binary.BigEndian.PutUint16(b[6:], c.Remote.Port())
	if c.Local.Addr().Is4() {
		b[0] = unix.AF_INET
		l, r := c.Local.Addr().As4(), c.Remote.Addr().As4()
		copy(b[8:], l[:])
		copy(b[24:], r[:])
	} else {
		b[0] = unix.AF_INET6
		l, r := c.Local.Addr().As16(), c.Remote.Addr().As16()
		copy(b[8:], l[:])
		copy(b[24:], r[:])
	}
	ne.PutUint32(b[40:], c.Ifindex)
	ne.PutUint32(b[44:], uint32(c.Cookie))
	ne.PutUint32(b[48:], uint32(c.Cookie>>32))
	ne.PutUint32(b[64:], uid)
	ne.PutUint32(b[68:], inode)
	ne.PutUint16(b[72:], 8) // an attribute: INET_DIAG_SHUTDOWN
	ne.PutUint16(b[74:], 8)
	return b
}

func TestParseDump(t *testing.T) {
	est := &conn.Conn{Cookie: 0x1122334455667788, State: conn.Established,
		Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.2:40000")}
	tw := &conn.Conn{Cookie: 9, State: conn.FinWait2, Ifindex: 3,
		Local: netip.MustParseAddrPort("[fe80::1]:443"), Remote: netip.MustParseAddrPort("[fe80::2]:5000")}
	var b []byte
	b = append(b, nlmsg(sockdiag.GetSock, 7, diagMsg(est, 0, 1000, 4242))...)
	b = append(b, nlmsg(sockdiag.GetSock, 6, diagMsg(est, 0, 0, 1))...) // another request's: skipped
	b = append(b, nlmsg(sockdiag.GetSock, 7, diagMsg(tw, sockdiag.TimerTimewait, 0, 0))...)
	var got []Socket
	done, err := sockdiag.Parse(b, 7, func(m []byte) {
		var s Socket
		decode(m, 4026531840, &s)
		got = append(got, s)
	})
	if err != nil || done {
		t.Fatalf("parseDump: done %v, %v", done, err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d sockets, want 2: %+v", len(got), got)
	}
	g := got[0]
	if g.Cookie != est.Cookie || g.State != est.State || g.Local != est.Local || g.Remote != est.Remote ||
		g.UID != 1000 || g.Inode != 4242 || g.NetNS != 4026531840 || g.Timewait {
		t.Errorf("ESTABLISHED decoded as %+v", g)
	}
	g = got[1]
	if g.Cookie != 9 || g.State != conn.FinWait2 || !g.Timewait || g.Ifindex != 3 || g.Local != tw.Local || g.Remote != tw.Remote {
		t.Errorf("FIN_WAIT2 timewait decoded as %+v", g)
	}

	done, err = sockdiag.Parse(nlmsg(unix.NLMSG_DONE, 7, make([]byte, 4)), 7, func([]byte) { t.Error("a socket in NLMSG_DONE") })
	if !done || err != nil {
		t.Errorf("NLMSG_DONE: done %v, %v", done, err)
	}
	e := make([]byte, 4)
	code := -int32(unix.EINVAL)
	binary.NativeEndian.PutUint32(e, uint32(code))
	_, err = sockdiag.Parse(nlmsg(unix.NLMSG_ERROR, 7, e), 7, func([]byte) {})
	if err == nil || !strings.Contains(err.Error(), "invalid argument") {
		t.Errorf("NLMSG_ERROR EINVAL: %v", err)
	}
	bad := nlmsg(sockdiag.GetSock, 7, diagMsg(est, 0, 0, 0))
	binary.NativeEndian.PutUint32(bad, uint32(len(bad)+100))
	if _, err := sockdiag.Parse(bad, 7, func([]byte) {}); err == nil {
		t.Error("a message longer than its datagram parsed")
	}
}

func FuzzParseDump(f *testing.F) {
	est := &conn.Conn{Cookie: 1, State: conn.Established,
		Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.2:40000")}
	f.Add(nlmsg(sockdiag.GetSock, 1, diagMsg(est, 0, 0, 0)))
	f.Add(nlmsg(unix.NLMSG_DONE, 1, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = sockdiag.Parse(b, 1, func(m []byte) {
			if len(m) < sockdiag.MsgLen {
				t.Fatalf("short message handed on: %d bytes", len(m))
			}
			var s Socket
			decode(m, 0, &s)
		})
	})
}

func TestRequest(t *testing.T) {
	d := &dumper{}
	prog, _ := (&Filter{LocalPorts: []uint16{443}}).program()
	b := d.request(1<<conn.Established, prog)
	ne := binary.NativeEndian
	if int(ne.Uint32(b)) != len(b) || len(b) != nlmsgHdrLen+sockdiag.ReqLen+4+len(prog) {
		t.Fatalf("request of %d bytes says %d", len(b), ne.Uint32(b))
	}
	if ne.Uint16(b[4:]) != sockdiag.GetSock || ne.Uint16(b[6:]) != unix.NLM_F_REQUEST|unix.NLM_F_DUMP || ne.Uint32(b[8:]) != 1 {
		t.Errorf("header % x", b[:16])
	}
	if ne.Uint32(b[nlmsgHdrLen+52:]) != 1<<conn.Established {
		t.Errorf("states % x", b[nlmsgHdrLen+52:nlmsgHdrLen+56])
	}
	a := b[nlmsgHdrLen+sockdiag.ReqLen:]
	if ne.Uint16(a) != uint16(4+len(prog)) || ne.Uint16(a[2:]) != 1 /* INET_DIAG_REQ_BYTECODE */ || string(a[4:]) != string(prog) {
		t.Errorf("bytecode attribute % x", a)
	}
	if b := d.request(1, nil); len(b) != nlmsgHdrLen+sockdiag.ReqLen || ne.Uint32(b[8:]) != 2 {
		t.Errorf("request without a filter: %d bytes, sequence %d", len(b), ne.Uint32(b[8:]))
	}
}
