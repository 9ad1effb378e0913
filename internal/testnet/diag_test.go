package testnet

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// diagMsg builds a netlink message carrying one inet_diag_msg.
func diagMsg(d DiagSock, seq uint32) []byte {
	ne := binary.NativeEndian
	b := make([]byte, unix.SizeofNlMsghdr+sizeofDiagMsg+8) // 8: an attribute to skip
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_MULTI)
	ne.PutUint32(b[8:], seq)
	m := b[unix.SizeofNlMsghdr:]
	m[0], m[1], m[2], m[3] = byte(d.Family), byte(d.State), d.Timer, d.Retrans
	binary.BigEndian.PutUint16(m[4:], d.Local.Port())
	binary.BigEndian.PutUint16(m[6:], d.Remote.Port())
	l, r := d.Local.Addr().As16(), d.Remote.Addr().As16()
	if d.Family == unix.AF_INET {
		copy(m[8:], l[12:])
		copy(m[24:], r[12:])
	} else {
		copy(m[8:], l[:])
		copy(m[24:], r[:])
	}
	ne.PutUint32(m[40:], d.Ifindex)
	ne.PutUint32(m[44:], uint32(d.Cookie))
	ne.PutUint32(m[48:], uint32(d.Cookie>>32))
	ne.PutUint32(m[52:], uint32(d.Expires/time.Millisecond))
	ne.PutUint32(m[64:], d.UID)
	ne.PutUint32(m[68:], d.Inode)
	return b
}

func TestParseDiag(t *testing.T) {
	socks := []DiagSock{{
		Family: unix.AF_INET, State: conn.CloseWait,
		Local:  netip.MustParseAddrPort("127.0.0.1:8080"),
		Remote: netip.MustParseAddrPort("10.0.0.100:52431"),
		Cookie: 0x1122334455667788, Inode: 4242, UID: 1000, Timer: 1, Retrans: 2,
		Expires: 200 * time.Millisecond,
	}, {
		Family: unix.AF_INET6, State: conn.TimeWait,
		Local:  netip.MustParseAddrPort("[::1]:443"),
		Remote: netip.MustParseAddrPort("[fe80::1]:60000"),
		Cookie: 7, Ifindex: 3, Timer: 3, Expires: time.Minute,
	}}
	var buf []byte
	for _, d := range socks {
		buf = append(buf, diagMsg(d, 9)...)
	}
	msgs, err := splitNetlink(buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(socks) {
		t.Fatalf("%d messages, want %d", len(msgs), len(socks))
	}
	for i, m := range msgs {
		if m.typ != unix.SOCK_DIAG_BY_FAMILY || m.seq != 9 {
			t.Errorf("message %d: type %d seq %d", i, m.typ, m.seq)
		}
		got, err := parseDiagMsg(m.data)
		if err != nil {
			t.Fatal(err)
		}
		if got != socks[i] {
			t.Errorf("parsed %+v\nwant   %+v", got, socks[i])
		}
	}
	if !socks[1].Timewait() || socks[0].Timewait() {
		t.Error("Timewait is the timer 3 sockets")
	}
}

func TestParseDiagShort(t *testing.T) {
	if _, err := parseDiagMsg(make([]byte, sizeofDiagMsg-1)); err == nil {
		t.Error("short inet_diag_msg parsed")
	}
	b := make([]byte, sizeofDiagMsg)
	b[0] = unix.AF_UNIX
	if _, err := parseDiagMsg(b); err == nil {
		t.Error("AF_UNIX inet_diag_msg parsed")
	}
	if _, err := splitNetlink([]byte{200, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Error("netlink message longer than its datagram parsed")
	}
}

func FuzzParseDiag(f *testing.F) {
	f.Add(diagMsg(DiagSock{Family: unix.AF_INET, Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2")}, 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := splitNetlink(b)
		if err != nil {
			return
		}
		for _, m := range msgs {
			_, _ = parseDiagMsg(m.data)
		}
	})
}

func TestFlow(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"127.0.0.1:40000", "127.0.0.1:80", "ip saddr 127.0.0.1 tcp sport 40000 ip daddr 127.0.0.1 tcp dport 80"},
		{"[::1]:40000", "[::1]:80", "ip6 saddr ::1 tcp sport 40000 ip6 daddr ::1 tcp dport 80"},
	} {
		got := Flow(netip.MustParseAddrPort(tc.from), netip.MustParseAddrPort(tc.to))
		if got != tc.want {
			t.Errorf("Flow(%s, %s) = %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}
