package kill

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// Filter picks the connections a kill destroys: a connection matches when
// it passes every part that is set. Within a part, any value matches (two
// --peer are two peers).
type Filter struct {
	// Peers: the remote address is in one of these prefixes. An IPv4
	// prefix also matches IPv4-mapped addresses (::ffff:a.b.c.d) of IPv6
	// sockets: the same peer, connected to a dual-stack listener.
	Peers []netip.Prefix
	// Ports: the local or the remote port is one of these.
	Ports []uint16
	// LocalPorts, RemotePorts: the local (remote) port is one of these.
	LocalPorts, RemotePorts []uint16
	// States: a mask of 1<<state; 0 means DefaultStates.
	States uint32
	// Processes: a process holding the socket has one of these names
	// (comm, policy.CommMatches). A socket no process holds never matches.
	Processes []string
}

// DefaultStates is every state a dump shows but LISTEN: a listening
// socket is not a connection. NEW_SYN_RECV request sockets show as
// SYN_RECV.
const DefaultStates = allStates &^ (1 << conn.Listen)

// allStates are the states a sock_diag dump can show (CLOSE never: a
// socket in CLOSE is in no table).
const allStates uint32 = 1<<conn.Established | 1<<conn.SynSent | 1<<conn.SynRecv | 1<<conn.FinWait1 |
	1<<conn.FinWait2 | 1<<conn.TimeWait | 1<<conn.CloseWait | 1<<conn.LastAck | 1<<conn.Listen | 1<<conn.Closing

// HasConnFilter reports whether f picks connections at all: a peer, a
// port, a state or a process. A kill without one would destroy every
// connection of the namespace.
func (f *Filter) HasConnFilter() bool {
	return len(f.Peers) > 0 || len(f.Ports) > 0 || len(f.LocalPorts) > 0 || len(f.RemotePorts) > 0 ||
		f.States != 0 || len(f.Processes) > 0
}

// states is the mask the dump asks the kernel for.
func (f *Filter) states() uint32 {
	if f.States == 0 {
		return DefaultStates
	}
	return f.States
}

// Match reports whether c passes every part of f but Processes (owners
// are looked up later, for the sockets that pass this).
func (f *Filter) Match(c *conn.Conn) bool {
	if f.states()&(1<<c.State) == 0 {
		return false
	}
	lp, rp := c.Local.Port(), c.Remote.Port()
	switch {
	case len(f.Ports) > 0 && !slices.Contains(f.Ports, lp) && !slices.Contains(f.Ports, rp):
		return false
	case len(f.LocalPorts) > 0 && !slices.Contains(f.LocalPorts, lp):
		return false
	case len(f.RemotePorts) > 0 && !slices.Contains(f.RemotePorts, rp):
		return false
	}
	if len(f.Peers) == 0 {
		return true
	}
	return slices.ContainsFunc(f.Peers, func(p netip.Prefix) bool { return peerMatch(p, c.Remote.Addr()) })
}

// MatchProcess reports whether one of owners has a name f asks for (true
// when f names no process).
func (f *Filter) MatchProcess(owners []conn.Owner) (conn.Owner, bool) {
	if len(f.Processes) == 0 {
		return conn.Owner{}, true
	}
	for _, o := range owners {
		for _, n := range f.Processes {
			if policy.CommMatches(n, o.Comm) {
				return o, true
			}
		}
	}
	return conn.Owner{}, false
}

// peerMatch is the kernel's D_COND rule (inet_diag_bc_run()): a prefix of
// the address's own family, or an IPv4 prefix and an IPv4-mapped address.
func peerMatch(p netip.Prefix, a netip.Addr) bool {
	if p.Addr().Is4() && a.Is4In6() {
		a = a.Unmap()
	}
	return p.Addr().Is4() == a.Is4() && p.Contains(a)
}

// program is the kernel filter for f (see compile); nil when f filters
// nothing the dump's state mask does not.
func (f *Filter) program() ([]byte, bool) {
	var groups [][]cond
	if len(f.Peers) > 0 {
		var g []cond
		for _, p := range f.Peers {
			g = append(g, peerCond(p))
		}
		groups = append(groups, g)
	}
	if len(f.Ports) > 0 {
		var g []cond
		for _, p := range f.Ports {
			g = append(g, portCond(bcSEq, p), portCond(bcDEq, p))
		}
		groups = append(groups, g)
	}
	for _, ports := range []struct {
		code byte
		list []uint16
	}{{bcSEq, f.LocalPorts}, {bcDEq, f.RemotePorts}} {
		if len(ports.list) > 0 {
			var g []cond
			for _, p := range ports.list {
				g = append(g, portCond(ports.code, p))
			}
			groups = append(groups, g)
		}
	}
	return compile(groups)
}

// ParsePeers parses --peer values: addresses (a /32 or /128) or CIDR
// prefixes, IPv4 or IPv6, in lists as policy.ParsePorts takes them
// (repeated flags, spaces, commas). An IPv4-mapped IPv6 address or prefix
// (::ffff:10.0.0.1, ::ffff:10.0.0.0/104) is taken as the IPv4 one, which
// matches both forms. A prefix with host bits set is refused: 10.0.0.1/8
// is probably not what was meant. IPv6 zones are refused.
func ParsePeers(values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		items := splitList(v)
		if len(items) == 0 {
			return nil, fmt.Errorf("invalid peer %q: want an IP address or a CIDR prefix (10.0.0.5, 10.0.0.0/8, fd00::/8)", v)
		}
		for _, it := range items {
			p, err := parsePeer(it)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return policy.SortPrefixes(out), nil
}

func parsePeer(s string) (netip.Prefix, error) {
	const help = "want an IP address or a CIDR prefix (10.0.0.5, 10.0.0.0/8, fd00::/8)"
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("invalid peer %q: %s", s, help)
		}
		if p.Masked() != p {
			return p, fmt.Errorf("invalid peer %q: host bits set (did you mean %s?)", s, p.Masked())
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("invalid peer %q: %s", s, help)
		}
		if a.Zone() != "" {
			return p, fmt.Errorf("invalid peer %q: IPv6 zones are not supported", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// ParseStates parses --state values: TCP state names as ss and the kernel
// spell them, any case (established, CLOSE-WAIT, close_wait), in lists as
// policy.ParsePorts takes them, into a mask. NEW_SYN_RECV is SYN_RECV (a
// dump shows request sockets so); CLOSE is refused: no table holds such a
// socket.
func ParseStates(values []string) (uint32, error) {
	var mask uint32
	for _, v := range values {
		items := splitList(v)
		if len(items) == 0 {
			return 0, fmt.Errorf("invalid state %q: want a TCP state (established, close-wait, ...)", v)
		}
		for _, it := range items {
			s, err := conn.ParseState(it)
			if err != nil {
				return 0, fmt.Errorf("invalid state %q: want a TCP state (established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, close-wait, last-ack, listen, closing)", it)
			}
			switch s {
			case conn.NewSynRecv:
				s = conn.SynRecv
			case conn.Close:
				return 0, fmt.Errorf("invalid state %q: a socket in CLOSE is in no kernel table; nothing to destroy", it)
			}
			mask |= 1 << s
		}
	}
	return mask, nil
}

// splitList splits one flag value on commas and whitespace.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// String describes f in one line: "peer 10.0.0.0/8, port 443, states
// every state but LISTEN".
func (f *Filter) String() string {
	var parts []string
	list := func(what string, n int, items func(i int) string) {
		if n == 0 {
			return
		}
		s := make([]string, n)
		for i := range s {
			s[i] = items(i)
		}
		if n > 1 {
			what += "s"
		}
		parts = append(parts, what+" "+strings.Join(s, " "))
	}
	list("peer", len(f.Peers), func(i int) string { return f.Peers[i].String() })
	list("port", len(f.Ports), func(i int) string { return strconv.Itoa(int(f.Ports[i])) })
	list("local port", len(f.LocalPorts), func(i int) string { return strconv.Itoa(int(f.LocalPorts[i])) })
	list("remote port", len(f.RemotePorts), func(i int) string { return strconv.Itoa(int(f.RemotePorts[i])) })
	list("process", len(f.Processes), func(i int) string { return policy.FormatNames(f.Processes[i : i+1]) })
	if f.States == 0 {
		parts = append(parts, "every state but LISTEN")
	} else {
		var names []string
		for s := conn.State(1); s <= conn.Closing; s++ {
			if f.States&(1<<s) != 0 {
				names = append(names, s.String())
			}
		}
		parts = append(parts, "state "+strings.Join(names, " "))
	}
	return strings.Join(parts, ", ")
}
