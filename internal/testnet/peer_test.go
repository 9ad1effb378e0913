package testnet

import (
	"net/netip"
	"testing"
)

// TestConnectFrom: connections come from the address asked for, IPv4,
// IPv6 and IPv4 to a dual-stack listener (mapped).
func TestConnectFrom(t *testing.T) {
	ns := New(t)
	ns.AddAddr(t, "fd00::2/128")
	for _, tt := range []struct{ listen, from, peer string }{
		{"127.0.0.1:0", "127.0.0.2", "127.0.0.2"},
		{"[::1]:0", "fd00::2", "fd00::2"},
		{"[::]:0", "127.0.0.3", "::ffff:127.0.0.3"},
	} {
		l := ns.ListenOn(t, netip.MustParseAddrPort(tt.listen))
		client, server := ns.ConnectFrom(t, l, netip.MustParseAddr(tt.from))
		d, ok := server.Diag()
		if !ok || d.Remote.Addr() != netip.MustParseAddr(tt.peer) || d.Remote != server.Remote || client.Local.Addr().String() != tt.from {
			t.Errorf("from %s to %s: server %s (kernel %v), client %s; want peer %s", tt.from, tt.listen, server, d, client, tt.peer)
		}
	}
}
