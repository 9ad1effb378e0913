package kill

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// The kernel's side of the socket filter, ported from
// net/ipv4/inet_diag.c (Linux 6.18) for the ops compile emits, so that
// every compiled program can be checked against Filter.Match without a
// kernel. The privileged test TestKernelFilter checks the real one.

// entry is struct inet_diag_entry: what the filter sees of a socket.
type entry struct {
	family       uint8
	saddr, daddr [16]byte // IPv4 in the first 4 bytes
	sport, dport uint16
}

func entryOf(c *conn.Conn) entry {
	e := entry{sport: c.Local.Port(), dport: c.Remote.Port(), family: unix.AF_INET6}
	if c.Local.Addr().Is4() {
		e.family = unix.AF_INET
		l, r := c.Local.Addr().As4(), c.Remote.Addr().As4()
		copy(e.saddr[:], l[:])
		copy(e.daddr[:], r[:])
	} else {
		e.saddr, e.daddr = c.Local.Addr().As16(), c.Remote.Addr().As16()
	}
	return e
}

// bitstringMatch compares the first bits bits of a and b.
func bitstringMatch(a, b []byte, bits int) bool {
	for i := 0; bits > 0; i++ {
		n := min(bits, 8)
		mask := byte(0xff << (8 - n))
		if a[i]&mask != b[i]&mask {
			return false
		}
		bits -= n
	}
	return true
}

// bcRun is inet_diag_bc_run().
func bcRun(bc []byte, e entry) bool {
	ne := binary.NativeEndian
	off, n := 0, len(bc)
	for n > 0 {
		code, yesOff, noOff := bc[off], int(bc[off+1]), int(ne.Uint16(bc[off+2:]))
		yes := true
		switch code {
		case bcJmp:
			yes = false
		case bcSEq:
			yes = e.sport == ne.Uint16(bc[off+6:])
		case bcDEq:
			yes = e.dport == ne.Uint16(bc[off+6:])
		case bcDCond:
			family, bits := bc[off+4], int(bc[off+5])
			port := int32(ne.Uint32(bc[off+8:]))
			addr := bc[off+12:]
			switch {
			case port != -1 && port != int32(e.dport):
				yes = false
			case family != unix.AF_UNSPEC && family != e.family:
				mapped := [12]byte{10: 0xff, 11: 0xff}
				yes = e.family == unix.AF_INET6 && family == unix.AF_INET &&
					[12]byte(e.daddr[:12]) == mapped && bitstringMatch(e.daddr[12:], addr, bits)
			case bits == 0:
			default:
				yes = bitstringMatch(e.daddr[:], addr, bits)
			}
		default:
			panic("op not modelled")
		}
		step := noOff
		if yes {
			step = yesOff
		}
		off, n = off+step, n-step
	}
	return n == 0
}

// validCC is valid_cc(): cc bytes before the end is where an op starts,
// following the "yes" offsets from the start.
func validCC(bc []byte, n, cc int) bool {
	off := 0
	for n >= 0 {
		if cc > n {
			return false
		}
		if cc == n {
			return true
		}
		yes := int(bc[off+1])
		if yes < 4 || yes&3 != 0 {
			return false
		}
		n -= yes
		off += yes
	}
	return false
}

// bcAudit is inet_diag_bc_audit() for the ops compile emits.
func bcAudit(bc []byte) bool {
	ne := binary.NativeEndian
	if len(bc) < 4 {
		return false
	}
	off, n := 0, len(bc)
	for n > 0 {
		code := bc[off]
		minLen := 4
		switch code {
		case bcDCond:
			minLen += 8
			if n < minLen {
				return false
			}
			alen := map[byte]int{unix.AF_UNSPEC: 0, unix.AF_INET: 4, unix.AF_INET6: 16}
			l, ok := alen[bc[off+4]]
			if !ok {
				return false
			}
			minLen += l
			if n < minLen || int(bc[off+5]) > 8*l {
				return false
			}
		case bcSEq, bcDEq:
			minLen += 4
			if n < minLen {
				return false
			}
		case bcJmp:
		default:
			return false
		}
		no := int(ne.Uint16(bc[off+2:]))
		if no < minLen || no > n+4 || no&3 != 0 {
			return false
		}
		if no < n && !validCC(bc, len(bc), n-no) {
			return false
		}
		yes := int(bc[off+1])
		if yes < minLen || yes > n+4 || yes&3 != 0 {
			return false
		}
		off, n = off+yes, n-yes
	}
	return n == 0
}

// randomFilter draws a filter from small pools, so that sockets often match.
func randomFilter(r *rand.Rand) Filter {
	peers := []string{"127.0.0.2/32", "10.0.0.0/8", "0.0.0.0/0", "10.1.2.0/24", "fd00::/8", "fd00::2/128", "::/0", "2001:db8::/32", "::ffff:0:0/96"}
	ports := []uint16{22, 80, 443, 8080, 50000}
	var f Filter
	pick := func(n int) []int {
		var out []int
		for i := 0; i < n; i++ {
			if r.IntN(3) == 0 {
				out = append(out, i)
			}
		}
		return out
	}
	for _, i := range pick(len(peers)) {
		f.Peers = append(f.Peers, netip.MustParsePrefix(peers[i]))
	}
	for _, list := range []*[]uint16{&f.Ports, &f.LocalPorts, &f.RemotePorts} {
		if r.IntN(2) == 0 {
			for _, i := range pick(len(ports)) {
				*list = append(*list, ports[i])
			}
		}
	}
	return f
}

// randomConn draws a connection from the same pools.
func randomConn(r *rand.Rand) conn.Conn {
	v4 := []string{"127.0.0.1", "127.0.0.2", "10.0.0.9", "10.1.2.3", "192.0.2.1"}
	v6 := []string{"::1", "fd00::2", "fd00::3", "2001:db8::9", "::ffff:127.0.0.2", "::ffff:10.1.2.3", "fe80::1"}
	ports := []uint16{22, 80, 443, 8080, 50000, 40001}
	pool := v4
	if r.IntN(2) == 0 {
		pool = v6
	}
	a := func() netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr(pool[r.IntN(len(pool))]), ports[r.IntN(len(ports))])
	}
	return conn.Conn{State: conn.Established, Local: a(), Remote: a()}
}

// TestCompileMatchesFilter: for random filters and sockets, the program
// compile builds passes the kernel's audit and picks exactly what
// Filter.Match picks (states aside: they are the dump's mask).
func TestCompileMatchesFilter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		f := randomFilter(r)
		prog, ok := f.program()
		if !ok {
			t.Fatalf("filter %s does not fit", &f)
		}
		if prog == nil {
			if len(f.Peers)+len(f.Ports)+len(f.LocalPorts)+len(f.RemotePorts) > 0 {
				t.Fatalf("filter %s: no program", &f)
			}
			continue
		}
		if !bcAudit(prog) {
			t.Fatalf("filter %s: the kernel's audit would refuse % x", &f, prog)
		}
		for range 20 {
			c := randomConn(r)
			if got, want := bcRun(prog, entryOf(&c)), f.Match(&c); got != want {
				t.Fatalf("filter %s, socket %s: kernel filter %v, Match %v\nprogram % x", &f, &c, got, want, prog)
			}
		}
	}
}

// TestCompileLayout pins one program down byte by byte: two peers (one
// group, a JMP between them) and a local port.
func TestCompileLayout(t *testing.T) {
	f := Filter{Peers: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}, LocalPorts: []uint16{443}}
	prog, ok := f.program()
	if !ok {
		t.Fatal("does not fit")
	}
	ne := binary.NativeEndian
	type op struct {
		code    byte
		yes, no int
	}
	var got []op
	for off := 0; off < len(prog); off += int(prog[off+1]) {
		got = append(got, op{prog[off], int(prog[off+1]), int(ne.Uint16(prog[off+2:]))})
	}
	// D_COND v4 (16 bytes), JMP, D_COND v6 (28 bytes), S_EQ (8 bytes): 56.
	want := []op{
		{bcDCond, 16, 20}, // no: past the JMP, to the v6 peer
		{bcJmp, 4, 32},    // to the group's end: the port
		{bcDCond, 28, 56 - 20 + 4},
		{bcSEq, 8, 8 + 4},
	}
	if len(prog) != 56 || len(got) != len(want) {
		t.Fatalf("program of %d bytes, ops %v; want 56 bytes, %v", len(prog), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("op %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if !bcAudit(prog) {
		t.Error("the kernel's audit would refuse it")
	}
}

// TestCompileTooLarge: a program past the 16-bit jumps is not built (the
// dump then goes unfiltered and Match decides alone).
func TestCompileTooLarge(t *testing.T) {
	var f Filter
	for i := range 4000 {
		f.Peers = append(f.Peers, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	if _, ok := f.program(); ok {
		t.Fatal("a 4,000-peer program (80 KB) fits 16-bit jumps?")
	}
}

func FuzzCompile(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(7), uint64(99))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		r := rand.New(rand.NewPCG(a, b))
		flt := randomFilter(r)
		prog, _ := flt.program()
		if prog == nil {
			return
		}
		if !bcAudit(prog) {
			t.Fatalf("filter %s: refused by the audit", &flt)
		}
		c := randomConn(r)
		if got, want := bcRun(prog, entryOf(&c)), flt.Match(&c); got != want {
			t.Fatalf("filter %s, socket %s: kernel filter %v, Match %v", &flt, &c, got, want)
		}
	})
}
