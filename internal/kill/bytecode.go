package kill

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The kernel's socket filter for sock_diag dumps (INET_DIAG_REQ_BYTECODE,
// include/uapi/linux/inet_diag.h, run by inet_diag_bc_run()): a program of
// 4-byte ops, each a conditional forward jump. On "yes" the kernel moves on
// by op.yes bytes, on "no" by op.no; a socket is dumped when the program
// ends exactly at its last byte, and a jump 4 bytes past the end rejects
// it. The kernel's audit (inet_diag_bc_audit()) wants every op reachable
// by following the "yes" offsets from the start, so, as ss(8) builds it,
// every op's "yes" is its own length and only "no" jumps.
//
// A Filter compiles to an AND of groups, each an OR of conditions: for
// conditions c1..cn of a group,
//
//	c1 (no: to c2)  JMP (to the group's end)  c2 ...  cn (no: reject)
//
// The filter is an optimisation: it spares the copy of sockets nobody
// asked for. Match decides again in userspace, so a socket the filter
// lets through by mistake is still left alone.

// The ops used (enum in inet_diag.h).
const (
	bcJmp   = 1  // INET_DIAG_BC_JMP: always "no"
	bcDCond = 8  // INET_DIAG_BC_D_COND: remote address prefix (struct inet_diag_hostcond)
	bcSEq   = 11 // INET_DIAG_BC_S_EQ: local port == op[1].no (Linux 4.16)
	bcDEq   = 12 // INET_DIAG_BC_D_EQ: remote port == op[1].no
)

// cond is one condition op, its arguments included; yes and no are filled
// in by compile.
type cond []byte

// portCond is S_EQ or D_EQ: the op, then an op whose "no" holds the port.
func portCond(code byte, port uint16) cond {
	b := make(cond, 8)
	b[0] = code
	binary.NativeEndian.PutUint16(b[6:], port)
	return b
}

// peerCond is D_COND on a prefix: the op, then struct inet_diag_hostcond
// (family, prefix length, port -1: any) and the address. An IPv4 prefix
// also matches IPv4-mapped addresses of IPv6 sockets (the kernel checks
// ::ffff:0:0/96 itself).
func peerCond(p netip.Prefix) cond {
	a := p.Addr()
	family, raw := byte(unix.AF_INET6), a.AsSlice()
	if a.Is4() {
		family = unix.AF_INET
	}
	b := make(cond, 4+8+len(raw))
	b[0] = bcDCond
	b[4] = family
	b[5] = byte(p.Bits())
	binary.NativeEndian.PutUint32(b[8:], ^uint32(0)) // port -1
	copy(b[12:], raw)
	return b
}

// compile builds the program for groups (AND of ORs); nil when there is
// nothing to filter. Each group must hold at least one condition. ok is
// false when the program would not fit the op's 16-bit jumps: the dump then
// goes unfiltered.
func compile(groups [][]cond) (prog []byte, ok bool) {
	if len(groups) == 0 {
		return nil, true
	}
	type at struct{ off, size int }
	// Lay out: every condition but a group's last is followed by a JMP.
	var layout [][]at
	size := 0
	for _, g := range groups {
		var l []at
		for i, c := range g {
			l = append(l, at{size, len(c)})
			size += len(c)
			if i < len(g)-1 {
				size += 4
			}
		}
		layout = append(layout, l)
	}
	if size+4 > 0xffff {
		return nil, false
	}
	prog = make([]byte, size)
	ne := binary.NativeEndian
	for gi, g := range groups {
		l := layout[gi]
		last := l[len(l)-1]
		end := last.off + last.size // the group's end: the next group, or the program's
		for i, c := range g {
			o := l[i].off
			copy(prog[o:], c)
			prog[o+1] = byte(len(c))
			if i < len(g)-1 {
				// No: skip the JMP, to the next condition. Yes: on to
				// the JMP, which jumps to the group's end.
				ne.PutUint16(prog[o+2:], uint16(len(c)+4))
				j := o + len(c)
				prog[j] = bcJmp
				prog[j+1] = 4
				ne.PutUint16(prog[j+2:], uint16(end-j))
			} else {
				// No: reject, 4 bytes past the program's end.
				ne.PutUint16(prog[o+2:], uint16(size-o+4))
			}
		}
	}
	return prog, true
}
