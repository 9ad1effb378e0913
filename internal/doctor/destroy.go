package doctor

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/loopsock"
	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// errNoNetns: the private network namespace could not be made, so nothing
// was probed.
var errNoNetns = errors.New("create a private network namespace")

// destroyProbe is what the destroyer did to the probe's sockets.
type destroyProbe struct {
	closeWait error        // nil: a CLOSE_WAIT socket was destroyed by cookie
	via       destroy.Path // how it was destroyed
	iterErr   error        // why the kfunc fallback could not load, if it was needed
	timeWait  error        // nil: a TIME_WAIT (timewait) socket was destroyed by cookie
}

func checkSockDestroy(opts Options) (Status, string) {
	rules, _ := kernel.Running() // unknown version: no capability assumed
	p, err := privateNetns(func() (destroyProbe, error) { return probeDestroy(opts.Timeout) })
	if errors.Is(err, errNoNetns) && errors.Is(err, os.ErrPermission) {
		// hck-bpf itself needs only CAP_NET_ADMIN to destroy; the probe
		// needs a namespace of its own and never falls back to this one.
		return Warn, "not probed: a private network namespace needs CAP_SYS_ADMIN, and the probe never runs in this one"
	}
	if err != nil {
		return failf("%v", permHint(err, destroyCaps))
	}
	return sockDestroyVerdict(p, rules)
}

// noDiagDestroy says what SOCK_DESTROY's EOPNOTSUPP means.
const noDiagDestroy = "SOCK_DESTROY answered EOPNOTSUPP: kernel built without CONFIG_INET_DIAG_DESTROY"

// sockDestroyVerdict judges the probe: whether sockets can be destroyed,
// and by which path this kernel destroys them.
func sockDestroyVerdict(p destroyProbe, rules kernel.Rules) (Status, string) {
	if p.closeWait != nil {
		if errors.Is(p.closeWait, unix.EOPNOTSUPP) {
			return failf("in a private netns: CLOSE_WAIT: %s, and the bpf_sock_destroy kfunc fallback (Linux 6.5+) is unavailable: %v",
				noDiagDestroy, p.iterErr)
		}
		return failf("in a private netns: CLOSE_WAIT: %v", permHint(p.closeWait, destroyCaps))
	}
	if p.via == destroy.Kfunc {
		// The kfunc destroys full sockets only.
		const done = "in a private netns: CLOSE_WAIT destroyed by cookie, path: the bpf_sock_destroy kfunc fallback (" + noDiagDestroy + ")"
		if p.timeWait == nil {
			return OK, done + "; TIME_WAIT destroyed by cookie"
		}
		return Warn, done + fmt.Sprintf("; TIME_WAIT and FIN_WAIT2 timewait sockets cannot be destroyed this way: %v", p.timeWait)
	}
	const done = "in a private netns: CLOSE_WAIT destroyed by cookie, path: netlink SOCK_DESTROY"
	switch {
	case p.timeWait == nil && rules.DestroyTimewait:
		return OK, done + "; TIME_WAIT destroyed by cookie"
	case p.timeWait == nil:
		return OK, done + fmt.Sprintf("; TIME_WAIT destroyed by cookie, though kernel %s predates %d.%d",
			rules.Version, kernel.TimewaitSince.Major, kernel.TimewaitSince.Minor)
	case !rules.DestroyTimewait:
		// Expected: the kernel check already carries the warning.
		return OK, done + fmt.Sprintf("; TIME_WAIT not destroyed, as expected before %d.%d: %v",
			kernel.TimewaitSince.Major, kernel.TimewaitSince.Minor, p.timeWait)
	default:
		return Warn, done + fmt.Sprintf("; TIME_WAIT not destroyed although kernel %s is %d.%d+: %v",
			rules.Version, kernel.TimewaitSince.Major, kernel.TimewaitSince.Minor, p.timeWait)
	}
}

// privateNetns runs fn inside a new, empty network namespace (loopback
// up), on a thread of its own (netns.NS.Do): every socket fn makes, and
// everything it destroys, belongs to that namespace; the caller's is never
// touched. fn does not run at all unless the thread is confirmed inside.
func privateNetns[T any](fn func() (T, error)) (T, error) {
	var v T
	ns, err := netns.New()
	if err != nil {
		return v, fmt.Errorf("%w: %w", errNoNetns, err)
	}
	defer ns.Close()
	if err := ns.LoopbackUp(); err != nil {
		return v, err
	}
	err = ns.Do(func() error {
		var err error
		v, err = fn()
		return err
	})
	return v, err
}

// probeDestroy makes a CLOSE_WAIT and a TIME_WAIT socket on 127.0.0.1 and
// destroys each by cookie. It must run in a private network namespace.
func probeDestroy(timeout time.Duration) (destroyProbe, error) {
	d, err := destroy.New()
	if err != nil {
		return destroyProbe{}, err
	}
	defer d.Close()
	s := &sockets{opts: loopsock.Options{Timeout: timeout}}
	defer s.closeAll()
	ln, err := s.listen()
	if err != nil {
		return destroyProbe{}, err
	}
	var p destroyProbe
	p.via, p.closeWait = probeCloseWait(d, s, ln)
	p.iterErr = d.IterErr()
	p.timeWait = probeTimeWait(d, s, ln)
	return p, nil
}

// probeCloseWait: the client half-closes, the server sits in CLOSE_WAIT
// with its file open, as a hung server does; destroying it must close it.
// It reports the path that destroyed it.
func probeCloseWait(d *destroy.Destroyer, s *sockets, ln int) (destroy.Path, error) {
	client, server, err := s.pair(ln)
	if err != nil {
		return 0, err
	}
	if err := unix.Shutdown(client, unix.SHUT_WR); err != nil {
		return 0, fmt.Errorf("shutdown client: %w", err)
	}
	if err := s.await(server, conn.CloseWait); err != nil {
		return 0, err
	}
	c, err := loopsock.Conn(server, conn.CloseWait)
	if err != nil {
		return 0, err
	}
	res := d.DestroyOne(&c)
	if res.Outcome != destroy.Destroyed {
		return res.Via, outcomeError(res)
	}
	// Destroyed means the kernel aborted it: the file now holds a closed
	// socket.
	return res.Via, s.await(server, conn.Close)
}

// probeTimeWait: the client closes first, so once the server closes too
// the kernel replaces the client's socket with a timewait socket carrying
// the same cookie (the file keeps a socket in CLOSE). Destroying that
// cookie must remove the timewait socket: a second request finds nothing.
func probeTimeWait(d *destroy.Destroyer, s *sockets, ln int) error {
	client, server, err := s.pair(ln)
	if err != nil {
		return err
	}
	c, err := loopsock.Conn(client, conn.TimeWait)
	if err != nil {
		return err
	}
	if err := unix.Shutdown(client, unix.SHUT_WR); err != nil {
		return fmt.Errorf("shutdown client: %w", err)
	}
	if err := s.await(client, conn.FinWait2); err != nil {
		return err
	}
	if err := unix.Shutdown(server, unix.SHUT_WR); err != nil {
		return fmt.Errorf("shutdown server: %w", err)
	}
	// The client's full socket goes to CLOSE when the timewait socket takes
	// its place; the server's when the last ACK arrives.
	if err := s.await(client, conn.Close); err != nil {
		return err
	}
	if err := s.await(server, conn.Close); err != nil {
		return err
	}
	if res := d.DestroyOne(&c); res.Outcome != destroy.Destroyed {
		return outcomeError(res)
	}
	if res := d.DestroyOne(&c); res.Outcome != destroy.Gone {
		return fmt.Errorf("destroyed, but the timewait socket is still there (second destroy: %v)", outcomeError(res))
	}
	return nil
}

func outcomeError(res destroy.Result) error {
	if res.Err != nil {
		return res.Err
	}
	return fmt.Errorf("socket %s", res.Outcome)
}

// sockets makes blocking TCP sockets on 127.0.0.1 (loopsock), each call
// bounded by opts.Timeout, and closes them all at the end.
type sockets struct {
	opts loopsock.Options
	fds  []int
}

func (s *sockets) listen() (int, error) {
	fd, _, err := loopsock.Listen(netip.AddrPortFrom(loopsock.Loopback4, 0), s.opts)
	if err != nil {
		return -1, err
	}
	s.fds = append(s.fds, fd)
	return fd, nil
}

// pair connects a client to ln and accepts it.
func (s *sockets) pair(ln int) (client, server int, err error) {
	client, server, err = loopsock.Pair(ln, s.opts)
	if err != nil {
		return -1, -1, err
	}
	s.fds = append(s.fds, client, server)
	return client, server, nil
}

// await waits until the socket behind fd is in state.
func (s *sockets) await(fd int, state conn.State) error {
	return loopsock.Await(fd, state, s.opts.Timeout)
}

func (s *sockets) closeAll() {
	for _, fd := range s.fds {
		unix.Close(fd)
	}
	s.fds = nil
}
