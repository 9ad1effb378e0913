package destroy

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// pingConn is a socket no kernel has: port 0 on both ends. Its lookup can
// only be answered "no such socket".
var pingConn = conn.Conn{
	State:  conn.CloseWait,
	Local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0),
	Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0),
	Cookie: noCookie - 1,
}

// Ping asks the kernel, on the Destroyer's own sock_diag socket, for a
// socket that cannot exist, and succeeds when it answers that there is
// none: netlink answers in this namespace (the service says it is ready
// only then). Nothing is destroyed: a lookup carries no SOCK_DESTROY.
func (d *Destroyer) Ping() error {
	req, err := encode(&pingConn)
	if err != nil {
		return fmt.Errorf("ping sock_diag: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sock == nil {
		return fmt.Errorf("ping sock_diag: %w", ErrClosed)
	}
	var a answer
	d.sock.lookups([][reqLen]byte{req}, func(_ int, ans []answer) { a = ans[0] })
	switch {
	case a.err != nil:
		return fmt.Errorf("ping sock_diag: %w", a.err)
	case a.errno == unix.ENOENT:
		return nil
	case a.errno != 0:
		return fmt.Errorf("ping sock_diag: %w", a.errno)
	case !a.done:
		return fmt.Errorf("ping sock_diag: %w", ErrNoAnswer)
	}
	return fmt.Errorf("ping sock_diag: the kernel found a socket with port 0 (state %s)", a.state)
}

// Ping pings the Destroyer of the namespace the pool was opened in.
func (p *Pool) Ping() error {
	d, err := p.get(0)
	if err != nil {
		return err
	}
	return d.Ping()
}
