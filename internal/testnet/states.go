package testnet

import (
	"fmt"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// Builders of sockets in every TCP state. Each takes a family ("tcp4" on
// 127.0.0.1, "tcp6" on ::1), makes its sockets in the namespace on fresh
// ports, waits until a sock_diag dump shows each of them in its state and
// fails t otherwise (after Timeout). Packet loss comes from a Filter of the
// builder's own, keyed on the connection's addresses and ports, so builders
// can be called any number of times, side by side, in one namespace.
// Sockets still open when t ends are aborted (reset), filters removed.
//
// The first socket returned is the one in the named state; the others are
// its peer (and listener), in the states their doc comments say. Where the
// state needs packet loss, every returned Sock's Filter is the builder's
// filter: Filter.Remove lets the connection move on.

// Listen returns a listening socket.
func (ns *NS) Listen(t testing.TB, fam string) *Sock {
	t.Helper()
	l := ns.listener(t, fam)
	ns.Await(t, l.In(conn.Listen))
	return l
}

func (ns *NS) listener(t testing.TB, fam string) *Sock {
	t.Helper()
	l := ns.socket(t, fam)
	l.listen()
	return l
}

// Established returns both ends of a connection. The listener that
// accepted server is closed already.
func (ns *NS) Established(t testing.TB, fam string) (client, server *Sock) {
	t.Helper()
	l := ns.listener(t, fam)
	client = ns.socket(t, fam)
	client.connect(l.Local)
	server = l.accept()
	client.waitConnected()
	l.Close()
	ns.Await(t, client.In(conn.Established), server.In(conn.Established))
	return client, server
}

// CloseWait returns server in CLOSE_WAIT: the client sent its FIN with
// shutdown(SHUT_WR), the server has not closed. The client, file still
// open, is in FIN_WAIT2 (a full socket: FIN_WAIT2 has no timeout while a
// file holds it).
func (ns *NS) CloseWait(t testing.TB, fam string) (server, client *Sock) {
	t.Helper()
	client, server = ns.Established(t, fam)
	client.CloseWrite()
	ns.Await(t, server.In(conn.CloseWait), client.In(conn.FinWait2))
	return server, client
}

// CloseWaitOn is CloseWait with the server on port: a test that runs
// hck-bpf over namespaces it did not make (--all-netns) confines it with
// --include-ports and a port nothing else uses.
func (ns *NS) CloseWaitOn(t testing.TB, fam string, port uint16) (server, client *Sock) {
	t.Helper()
	l := ns.socketOn(t, fam, port)
	l.listen()
	client = ns.socket(t, fam)
	client.connect(l.Local)
	server = l.accept()
	client.waitConnected()
	l.Close()
	ns.Await(t, client.In(conn.Established), server.In(conn.Established))
	client.CloseWrite()
	ns.Await(t, server.In(conn.CloseWait), client.In(conn.FinWait2))
	return server, client
}

// FinWait2 returns client in FIN_WAIT2, half-closed with its file open, and
// server in CLOSE_WAIT: CloseWait seen from the other end.
func (ns *NS) FinWait2(t testing.TB, fam string) (client, server *Sock) {
	t.Helper()
	server, client = ns.CloseWait(t, fam)
	return client, server
}

// FinWait2Orphan returns client as a FIN_WAIT2 timewait socket: it was
// closed (not shut down) while server, in CLOSE_WAIT, keeps its end open.
// client.FD is -1; client.Cookie still names it (the timewait socket keeps
// the full socket's cookie). It lasts net.ipv4.tcp_fin_timeout (60s).
func (ns *NS) FinWait2Orphan(t testing.TB, fam string) (client, server *Sock) {
	t.Helper()
	client, server = ns.Established(t, fam)
	client.Close()
	ns.Await(t, client.InTimewait(conn.FinWait2), server.In(conn.CloseWait))
	return client, server
}

// FinWait1 returns client in FIN_WAIT1: it sent its FIN with
// shutdown(SHUT_WR), and the filter drops every packet from server to
// client, so the FIN is never acknowledged. server is in CLOSE_WAIT. The
// client retransmits its FIN with exponential backoff from loopback's 200ms
// RTO (three retransmissions after 2s) and stays in FIN_WAIT1 until
// net.ipv4.tcp_retries2 (15) runs out, about 15 minutes.
//
// Rule: drop Flow(server.Local, client.Local).
func (ns *NS) FinWait1(t testing.TB, fam string) (client, server *Sock) {
	t.Helper()
	client, server = ns.Established(t, fam)
	f := ns.Drop(t, Flow(server.Local, client.Local))
	client.Filter, server.Filter = f, f
	client.CloseWrite()
	ns.Await(t, client.In(conn.FinWait1), server.In(conn.CloseWait))
	return client, server
}

// LastAck returns server in LAST_ACK with its file open: from CLOSE_WAIT,
// the filter drops every packet from client to server, then the server
// sends its FIN with shutdown(SHUT_WR). The client gets that FIN and goes
// to TIME_WAIT: its file now holds a full socket in CLOSE, and its cookie
// names a TIME_WAIT timewait socket. The server retransmits its FIN; each
// copy restarts the client's TIME_WAIT timer.
//
// Rule: drop Flow(client.Local, server.Local).
func (ns *NS) LastAck(t testing.TB, fam string) (server, client *Sock) {
	t.Helper()
	server, client = ns.CloseWait(t, fam)
	f := ns.Drop(t, Flow(client.Local, server.Local))
	client.Filter, server.Filter = f, f
	server.CloseWrite()
	ns.Await(t, server.In(conn.LastAck), client.InTimewait(conn.TimeWait))
	return server, client
}

// LastAckOrphan is LastAck with close(2) instead of shutdown: server.FD is
// -1 and the LAST_ACK socket is an orphan, reachable only by its cookie
// (read before the close). An orphan gives up sooner
// (net.ipv4.tcp_orphan_retries).
//
// Rule: drop Flow(client.Local, server.Local).
func (ns *NS) LastAckOrphan(t testing.TB, fam string) (server, client *Sock) {
	t.Helper()
	server, client = ns.CloseWait(t, fam)
	f := ns.Drop(t, Flow(client.Local, server.Local))
	client.Filter, server.Filter = f, f
	server.Close()
	ns.Await(t, server.In(conn.LastAck), client.InTimewait(conn.TimeWait))
	return server, client
}

// Closing returns a in CLOSING and b in FIN_WAIT1, both files open: a
// simultaneous close. With every packet between them dropped, both send
// their FIN (shutdown(SHUT_WR)) and sit in FIN_WAIT1; then the filter lets
// b's packets through but still drops a's. b's retransmitted FIN reaches a
// without an acknowledgement of a's FIN: a goes to CLOSING, and its ACK of
// b's FIN is dropped, so b stays in FIN_WAIT1.
//
// Rules: drop Flow(a.Local, b.Local) and Flow(b.Local, a.Local); then only
// the first.
func (ns *NS) Closing(t testing.TB, fam string) (a, b *Sock) {
	t.Helper()
	a, b = ns.Established(t, fam)
	f := ns.Drop(t, Flow(a.Local, b.Local), Flow(b.Local, a.Local))
	a.Filter, b.Filter = f, f
	a.CloseWrite()
	b.CloseWrite()
	ns.Await(t, a.In(conn.FinWait1), b.In(conn.FinWait1))
	f.Set(t, Flow(a.Local, b.Local))
	ns.Await(t, a.In(conn.Closing), b.In(conn.FinWait1))
	return a, b
}

// SynSent returns a socket in SYN_SENT: a non-blocking connect whose SYNs
// the filter drops. The destination port is held by a bound socket that
// does not listen. The client retransmits its SYN until
// net.ipv4.tcp_syn_retries runs out (about two minutes).
//
// Rule: drop Flow(client.Local, dst).
func (ns *NS) SynSent(t testing.TB, fam string) (client *Sock) {
	t.Helper()
	dst := ns.socket(t, fam)
	client = ns.socket(t, fam)
	client.Filter = ns.Drop(t, Flow(client.Local, dst.Local))
	client.connect(dst.Local)
	ns.Await(t, client.In(conn.SynSent))
	return client
}

// SynRecv returns the request socket of a handshake the listener never
// completes: the filter drops the client's final ACK (and everything else
// it sends with only ACK among SYN/ACK/FIN/RST set), so the client is
// ESTABLISHED while the server holds a request socket (NEW_SYN_RECV in the
// kernel; sock_diag reports it as SYN_RECV). req.FD is -1: a request socket
// has no file; req.Cookie is its own cookie from the dump. The listener
// retransmits its SYN-ACK every 1s, 2s, 4s... until
// net.ipv4.tcp_synack_retries runs out (about a minute), then drops the
// request. Once the filter is removed, the next SYN-ACK is acknowledged and
// the full socket the listener accepts keeps the request socket's cookie.
//
// Rule: drop Flow(client.Local, listener.Local) tcp flags & (syn|ack|fin|rst) == ack.
func (ns *NS) SynRecv(t testing.TB, fam string) (req, client, listener *Sock) {
	t.Helper()
	listener = ns.listener(t, fam)
	client = ns.socket(t, fam)
	f := ns.Drop(t, Flow(client.Local, listener.Local)+" tcp flags & (syn|ack|fin|rst) == ack")
	client.Filter, listener.Filter = f, f
	client.connect(listener.Local)
	client.waitConnected()
	isReq := func(d DiagSock) bool {
		return d.State == conn.SynRecv && d.Local == listener.Local && d.Remote == client.Local
	}
	socks := ns.Await(t, client.In(conn.Established), func(socks []DiagSock) error {
		for _, d := range socks {
			if isReq(d) {
				return nil
			}
		}
		return fmt.Errorf("no request socket %s -> %s", listener.Local, client.Local)
	})
	for _, d := range socks {
		if isReq(d) {
			req = &Sock{FD: -1, Local: d.Local, Remote: d.Remote, Cookie: d.Cookie, Filter: f, ns: ns, t: t}
		}
	}
	return req, client, listener
}

// TimeWait returns a TIME_WAIT timewait socket: the client closes first
// (close(2): FIN_WAIT2, as a timewait socket once its FIN is acknowledged),
// then the server closes and its FIN moves the client to TIME_WAIT; the
// server's socket is gone once the client acknowledges. tw.FD is -1 and
// tw.Cookie, the client's SO_COOKIE, names the timewait socket. It lasts
// 60s (TCP_TIMEWAIT_LEN).
func (ns *NS) TimeWait(t testing.TB, fam string) (tw *Sock) {
	t.Helper()
	client, server := ns.Established(t, fam)
	client.Close()
	ns.Await(t, client.InTimewait(conn.FinWait2), server.In(conn.CloseWait))
	server.Close()
	ns.Await(t, client.InTimewait(conn.TimeWait), server.Gone())
	return client
}
