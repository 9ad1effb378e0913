package kill

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

func TestParsePeers(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []string
		err  string
	}{
		{in: []string{"127.0.0.2"}, want: []string{"127.0.0.2/32"}},
		{in: []string{"10.0.0.0/8", "fd00::/8"}, want: []string{"10.0.0.0/8", "fd00::/8"}},
		{in: []string{"10.0.0.1, 10.0.0.2 10.0.0.1"}, want: []string{"10.0.0.1/32", "10.0.0.2/32"}},
		{in: []string{"::ffff:10.0.0.1"}, want: []string{"10.0.0.1/32"}},
		{in: []string{"::ffff:10.0.0.0/104"}, want: []string{"10.0.0.0/8"}},
		{in: []string{"::ffff:0:0/96"}, want: []string{"0.0.0.0/0"}},
		{in: []string{"::/0"}, want: []string{"::/0"}},
		{in: []string{"2001:db8::1"}, want: []string{"2001:db8::1/128"}},
		{in: []string{"10.0.0.1/8"}, err: `host bits set (did you mean 10.0.0.0/8?)`},
		{in: []string{"example.com"}, err: `invalid peer "example.com"`},
		{in: []string{"10.0.0.0/33"}, err: `invalid peer "10.0.0.0/33"`},
		{in: []string{"fe80::1%eth0"}, err: "zones are not supported"},
		{in: []string{""}, err: "want an IP address"},
		{in: []string{" , "}, err: "want an IP address"},
	} {
		got, err := ParsePeers(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePeers(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if err != nil || !slices.Equal(s, tt.want) {
			t.Errorf("ParsePeers(%q) = %v, %v; want %v", tt.in, s, err, tt.want)
		}
	}
}

func TestParseStates(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want uint32
		err  string
	}{
		{in: []string{"established"}, want: 1 << conn.Established},
		{in: []string{"ESTABLISHED,close-wait", "FIN_WAIT1 fin-wait-2"}, want: 1<<conn.Established | 1<<conn.CloseWait | 1<<conn.FinWait1 | 1<<conn.FinWait2},
		{in: []string{"new-syn-recv"}, want: 1 << conn.SynRecv},
		{in: []string{"listen"}, want: 1 << conn.Listen},
		{in: []string{"close"}, err: "no kernel table"},
		{in: []string{"open"}, err: `invalid state "open"`},
		{in: []string{","}, err: "want a TCP state"},
	} {
		got, err := ParseStates(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseStates(%q) = %#x, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseStates(%q) = %#x, %v; want %#x", tt.in, got, err, tt.want)
		}
	}
}

func mustConn(state conn.State, local, remote string) *conn.Conn {
	return &conn.Conn{State: state, Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote)}
}

func TestMatch(t *testing.T) {
	peer := func(s ...string) []netip.Prefix {
		p, err := ParsePeers(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	est := conn.Established
	for _, tt := range []struct {
		name string
		f    Filter
		c    *conn.Conn
		want bool
	}{
		{"peer", Filter{Peers: peer("127.0.0.2")}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), true},
		{"other peer", Filter{Peers: peer("127.0.0.2")}, mustConn(est, "127.0.0.1:80", "127.0.0.3:5000"), false},
		{"local address is not the peer", Filter{Peers: peer("127.0.0.2")}, mustConn(est, "127.0.0.2:5000", "127.0.0.1:80"), false},
		{"v4 peer, mapped socket", Filter{Peers: peer("127.0.0.0/24")}, mustConn(est, "[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.2]:5000"), true},
		{"mapped peer given", Filter{Peers: peer("::ffff:127.0.0.2")}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), true},
		{"v6 prefix", Filter{Peers: peer("fd00::/8")}, mustConn(est, "[fd00::1]:80", "[fd00::2]:5000"), true},
		{"v6 prefix, v4 socket", Filter{Peers: peer("::/0")}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), false},
		{"v6 any, mapped socket", Filter{Peers: peer("::/0")}, mustConn(est, "[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.2]:5000"), true},
		{"port, local", Filter{Ports: []uint16{80}}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), true},
		{"port, remote", Filter{Ports: []uint16{5000}}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), true},
		{"port, neither", Filter{Ports: []uint16{443}}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), false},
		{"local port", Filter{LocalPorts: []uint16{5000}}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), false},
		{"remote port", Filter{RemotePorts: []uint16{5000}}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), true},
		{"state", Filter{States: 1 << conn.CloseWait}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), false},
		{"default states leave LISTEN", Filter{Ports: []uint16{80}}, mustConn(conn.Listen, "127.0.0.1:80", "0.0.0.0:0"), false},
		{"LISTEN asked for", Filter{Ports: []uint16{80}, States: 1 << conn.Listen}, mustConn(conn.Listen, "127.0.0.1:80", "0.0.0.0:0"), true},
		{"all parts", Filter{Peers: peer("127.0.0.2"), RemotePorts: []uint16{5000}, States: 1 << est}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), true},
		{"one part fails", Filter{Peers: peer("127.0.0.2"), RemotePorts: []uint16{5001}}, mustConn(est, "127.0.0.1:80", "127.0.0.2:5000"), false},
	} {
		if got := tt.f.Match(tt.c); got != tt.want {
			t.Errorf("%s: Match(%s) with %s = %v, want %v", tt.name, tt.c, &tt.f, got, tt.want)
		}
	}
}

func TestMatchProcess(t *testing.T) {
	owners := []conn.Owner{{PID: 1, Comm: "nginx"}, {PID: 2, Comm: "kube-controller"}}
	for _, tt := range []struct {
		names []string
		pid   int
		ok    bool
	}{
		{nil, 0, true},
		{[]string{"nginx"}, 1, true},
		{[]string{"postgres", "kube-controller-manager"}, 2, true}, // longer than comm: its first 15 bytes
		{[]string{"ngin"}, 0, false},
	} {
		f := Filter{Processes: tt.names}
		o, ok := f.MatchProcess(owners)
		if ok != tt.ok || o.PID != tt.pid {
			t.Errorf("MatchProcess %q = %+v %v, want pid %d %v", tt.names, o, ok, tt.pid, tt.ok)
		}
	}
	if _, ok := (&Filter{Processes: []string{"nginx"}}).MatchProcess(nil); ok {
		t.Error("a socket no process holds matches --process")
	}
}

func TestHasConnFilter(t *testing.T) {
	if (&Filter{}).HasConnFilter() {
		t.Error("the empty filter is a connection filter")
	}
	for _, f := range []Filter{{Ports: []uint16{1}}, {States: 2}, {Processes: []string{"x"}}, {Peers: []netip.Prefix{netip.MustParsePrefix("::/0")}}} {
		if !f.HasConnFilter() {
			t.Errorf("%s is not a connection filter", &f)
		}
	}
}

func TestFilterString(t *testing.T) {
	f := Filter{Peers: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}, RemotePorts: []uint16{5432},
		States: 1<<conn.Established | 1<<conn.CloseWait, Processes: []string{"my proc"}}
	want := "peers 10.0.0.0/8 fd00::/8, remote port 5432, process 'my proc', state ESTABLISHED CLOSE_WAIT"
	if got := f.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (&Filter{Ports: []uint16{22}}).String(); got != "port 22, every state but LISTEN" {
		t.Errorf("String() = %q", got)
	}
}

func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{"127.0.0.2", "10.0.0.0/8", "fd00::/8", "::ffff:10.0.0.0/104", "a, b", "1.2.3.4/8", "fe80::1%lo", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePeers([]string{s})
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		for _, p := range ps {
			if p.Masked() != p || p.Addr().Zone() != "" || p.Addr().Is4In6() && p.Bits() >= 96 {
				t.Fatalf("ParsePeers(%q) gave %s", s, p)
			}
			again, err := ParsePeers([]string{p.String()})
			if err != nil || len(again) != 1 || again[0] != p {
				t.Fatalf("%s does not parse back: %v %v", p, again, err)
			}
		}
	})
}

func FuzzParseStates(f *testing.F) {
	for _, s := range []string{"established", "close-wait,FIN_WAIT2", "close", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseStates([]string{s})
		if err == nil && (m&^allStates != 0 || m == 0 && strings.TrimSpace(s) != "") {
			t.Fatalf("ParseStates(%q) = %#x", s, m)
		}
	})
}

func TestShowComm(t *testing.T) {
	for in, want := range map[string]string{"sshd": "sshd", "sshd-session": "sshd-session", "my proc": `"my proc"`, "sshd-\nTerminated": `"sshd-\nTerminated"`} {
		if got := showComm(in); got != want {
			t.Errorf("showComm(%q) = %s, want %s", in, got, want)
		}
	}
}
