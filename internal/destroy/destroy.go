// Package destroy kills TCP sockets inside the kernel with netlink
// SOCK_DESTROY (what `ss -K` sends). Every request names its socket by
// cookie as well as by 4-tuple, so a socket that has since taken over the
// same tuple — or the listener the tuple falls back to — is never hit.
//
// A cookie names a socket, not a connection: a socket that is disconnected
// (connect(AF_UNSPEC)) or whose connection ended while its process kept it
// may connect again under the same cookie, even on the same 4-tuple, and
// the kernel ignores the state a SOCK_DESTROY request names. So before any
// SOCK_DESTROY the destroyer asks the kernel for the socket the request
// names (an exact sock_diag lookup by tuple and cookie) and destroys it
// only if the kernel has it in the state the caller believes it is in.
package destroy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// Outcome is what became of one destroy request.
type Outcome uint8

// The zero Outcome is Failed, so a Result nobody filled in never reads as
// a success.
const (
	// Failed: the socket may still be alive; Result.Err says why.
	Failed Outcome = iota
	// Destroyed: the kernel aborted the socket (ECONNABORTED for its owner,
	// RST to the peer where the state calls for one).
	Destroyed
	// Gone: the socket no longer exists; nothing was done.
	Gone
	// Changed: the kernel has the socket, in another state than the one
	// the caller named (Result.State): it is not the socket the caller
	// judged, and nothing was done.
	Changed
	// Confirmed: Check found the socket in the state named; Destroy would
	// destroy it. Destroy itself never returns it.
	Confirmed
)

func (o Outcome) String() string {
	switch o {
	case Failed:
		return "failed"
	case Destroyed:
		return "destroyed"
	case Gone:
		return "gone"
	case Changed:
		return "changed"
	case Confirmed:
		return "confirmed"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Path says how a socket was destroyed.
type Path uint8

const (
	// Netlink: a SOCK_DESTROY request carrying the cookie and the 4-tuple.
	Netlink Path = iota
	// Kfunc: the destroy iterator's bpf_sock_destroy() call.
	Kfunc
)

func (p Path) String() string {
	if p == Kfunc {
		return "kfunc"
	}
	return "netlink"
}

// Result is the outcome of destroying one connection. Err is set exactly
// when Outcome is Failed. Via says which path gave the outcome. State is
// the socket's state as the kernel reported it before anything was done
// (0 when it did not: gone, or no answer).
type Result struct {
	Outcome Outcome
	Err     error
	Via     Path
	State   conn.State
}

var (
	// ErrNoCookie refuses a connection without a socket cookie (0, or the
	// all-ones INET_DIAG_NOCOOKIE). A request carrying INET_DIAG_NOCOOKIE
	// is matched by tuple alone, and the tuple of a server connection that
	// is already gone resolves to the LISTEN socket it came from: the
	// kernel destroys the service's listener. (Cookie 0 would only miss,
	// but it always means the caller lost track of the socket.)
	ErrNoCookie = errors.New("no socket cookie: refusing a tuple-only destroy")
	// ErrNoState refuses a connection whose state is unknown: the kernel's
	// answer could not be checked against it.
	ErrNoState = errors.New("no TCP state: refusing a destroy that cannot be checked")
	// ErrNoAnswer: the kernel's answer to a request never arrived (receive
	// timeout, or the answer was dropped on a full receive queue). The
	// socket may or may not have been destroyed.
	ErrNoAnswer = errors.New("no answer from the kernel")
	// ErrClosed: the Destroyer has been closed.
	ErrClosed = errors.New("destroyer closed")
	// ErrNoEffect: the kernel answered a destroy with success, and still
	// has the socket (same tuple, same cookie). Before Linux 6.11,
	// tcp_abort() on an orphan (SOCK_DEAD: no process holds it) did
	// nothing and reported success (fixed by bac76cf89816).
	ErrNoEffect = errors.New("destroy had no effect")
)

const (
	// recvTimeout bounds the wait for each answer, so that a lost answer
	// becomes an error instead of a hang.
	recvTimeout = 5 * time.Second

	// sizeof(struct nlmsghdr) + sizeof(struct inet_diag_req_v2).
	nlmsgHdrLen = 16
	reqLen      = nlmsgHdrLen + 56

	// Requests go out in datagrams of at most this many bytes (910
	// requests); the kernel handles them one after another in the sendmsg
	// call and queues one ACK per request before sendmsg returns.
	maxBatchBytes = 64 << 10
	// rcvBuf is asked for with SO_RCVBUFFORCE (needs CAP_NET_ADMIN, which
	// SOCK_DESTROY needs anyway), falling back to SO_RCVBUF (capped by
	// net.core.rmem_max). The kernel doubles it.
	rcvBuf = 4 << 20
	// ackCost is what one queued ACK costs in the receive buffer (skb
	// truesize, measured at about 830 bytes on 6.18), with a margin. A
	// batch never holds more requests than the buffer has room for ACKs:
	// an ACK that does not fit is dropped by the kernel (ENOBUFS).
	ackCost = 1536
	// checkCost is what one answer to a lookup costs in the receive
	// buffer: the kernel sizes it for every attribute it might add
	// (tcp_info among them), about 2.3 KiB of truesize on 6.18, with a
	// margin.
	checkCost = 4096

	// nlmsg type of a sock_diag lookup and of its answer.
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY

	// INET_DIAG_NOCOOKIE in both cookie words switches the kernel's cookie
	// check off.
	noCookie = ^uint64(0)
)

// Destroyer holds a NETLINK_SOCK_DIAG socket in one network namespace and
// destroys sockets of that namespace only, whichever thread calls it. It
// is safe for concurrent use: calls are serialised.
//
// A call with many sockets is split over several netlink sockets, one per
// CPU Go runs on (at most maxWorkers), each driven from an OS thread of
// its own: the kernel's work for each destroy runs on the CPU that asks.
// The extra sockets are opened in the namespace for that call and closed
// after it; between calls a Destroyer holds one socket, a handle on its
// namespace and the buffers of a small call (a few KiB).
//
// Where netlink cannot destroy (a kernel built without
// CONFIG_INET_DIAG_DESTROY answers EOPNOTSUPP), full sockets are destroyed
// by one walk of the namespace with the bpf_sock_destroy() kfunc (Linux >=
// 6.5; see iterKiller), loaded on first need.
type Destroyer struct {
	mu    sync.Mutex
	ns    *netns.NS // the namespace; owned
	inode uint32    // its inode
	sock  *nlSock   // nil once closed

	workers   int // most sockets (and threads) one call uses
	perWorker int // fewest requests a further socket is used for

	iter     *iterKiller
	iterErr  error // why the iterator is not used
	iterUsed bool  // the iterator was loaded, or failed to

	// noDiagDestroy makes the Destroyer behave as on a kernel built
	// without CONFIG_INET_DIAG_DESTROY: every SOCK_DESTROY is answered
	// EOPNOTSUPP without being sent (lookups still go out). Tests set it
	// to drive the kfunc fallback.
	noDiagDestroy bool
	// opened, when set, is called with each socket a call opens besides
	// the Destroyer's own, before it is used (tests).
	opened func(fd int)

	// verify looks up again every socket whose destroy answered success,
	// and fails one the kernel still has (ErrNoEffect): set where the
	// kernel rules say a success may be silent (orphans before Linux
	// 6.11, kernel.Capabilities.DestroyOrphans), or the kernel is unknown.
	// Tests set it to treat the running kernel as older.
	verify bool
	// keep, when set (tests), names confirmed sockets whose SOCK_DESTROY
	// is not sent but answered with success: what a kernel that silently
	// keeps a socket does.
	keep func(c *conn.Conn) bool
}

// New opens a Destroyer for the network namespace of the calling thread,
// its socket opened on that thread (no move, no CAP_SYS_ADMIN needed).
func New() (*Destroyer, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Current()
	if err != nil {
		return nil, err
	}
	d := newDestroyer(ns)
	if d.sock, err = openSock(ns); err != nil {
		ns.Close()
		return nil, err
	}
	return d, nil
}

// NewAt opens a Destroyer for the network namespace ns, from any thread:
// the calling thread does not move. The Destroyer keeps its own handle;
// the caller keeps ns. Entering a namespace other than the calling
// thread's needs CAP_SYS_ADMIN.
func NewAt(ns *netns.NS) (*Destroyer, error) {
	own, err := ns.Dup()
	if err != nil {
		return nil, err
	}
	d := newDestroyer(own)
	netns.OnThread(func() { d.sock, err = openSock(own) })
	if err != nil {
		own.Close()
		return nil, err
	}
	return d, nil
}

// newDestroyer is a Destroyer for namespace ns (owned), without its socket.
func newDestroyer(ns *netns.NS) *Destroyer {
	rules, err := kernel.Running()
	return &Destroyer{
		ns:        ns,
		inode:     ns.Inode(),
		workers:   min(maxWorkers, runtime.GOMAXPROCS(0)),
		perWorker: parMin,
		verify:    err != nil || !rules.DestroyOrphans,
	}
}

// Netns is the inode of the Destroyer's network namespace.
func (d *Destroyer) Netns() uint32 { return d.inode }

// IterErr says why the kfunc iterator could not be used (nil when it was,
// or has not been needed yet).
func (d *Destroyer) IterErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.iterErr
}

// Close closes the netlink socket and the namespace handle. Later calls to
// Destroy fail with ErrClosed.
func (d *Destroyer) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sock == nil {
		return nil
	}
	var errs []error
	if d.iter != nil {
		errs = append(errs, d.iter.close())
		d.iter = nil
	}
	d.sock.close()
	d.sock = nil
	if err := d.ns.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close network namespace handle: %w", err))
	}
	return errors.Join(errs...)
}

// DestroyOne destroys one connection.
func (d *Destroyer) DestroyOne(c *conn.Conn) Result {
	return d.Destroy([]*conn.Conn{c})[0]
}

// Check asks the kernel about every connection in conns, by tuple and
// cookie, and destroys nothing: Confirmed when the kernel has the socket in
// c.State, Changed (with the kernel's state) when in another, Gone when it
// has no such socket. It is what Destroy does first, and what a dry run
// needs to say exactly what a live run would do.
func (d *Destroyer) Check(conns []*conn.Conn) []Result {
	return d.run(conns, false)
}

// Destroy destroys every connection in conns, each by its cookie, and
// returns one Result per connection, in order. Only a socket the kernel
// has, at the moment it is asked, in the state c.State names is destroyed
// (see Check); a connection without a cookie or a state, or with unusable
// addresses, fails without anything being sent. Lookups and destroys go
// out many per sendmsg, in turns: each batch of lookups is followed by the
// destroys of the sockets it confirmed.
//
// Where the kernel may answer success and keep the socket (orphans before
// Linux 6.11: see ErrNoEffect), every socket whose destroy answered
// success is looked up again, and one the kernel still has fails with
// ErrNoEffect. A process may close its socket between the lookup and the
// destroy, so on those kernels no success is taken on trust.
func (d *Destroyer) Destroy(conns []*conn.Conn) []Result {
	return d.run(conns, true)
}

func (d *Destroyer) run(conns []*conn.Conn, kill bool) []Result {
	res := make([]Result, len(conns))
	reqs := make([][reqLen]byte, 0, len(conns))
	idx := make([]int, 0, len(conns))
	for i, c := range conns {
		if c == nil {
			res[i] = Result{Outcome: Failed, Err: errors.New("destroy: nil connection")}
			continue
		}
		req, err := encode(c)
		if err != nil {
			res[i] = Result{Outcome: Failed, Err: fmt.Errorf("destroy %s: %w", c, err)}
			continue
		}
		reqs = append(reqs, req)
		idx = append(idx, i)
	}
	if len(reqs) == 0 {
		return res
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sock == nil {
		for _, i := range idx {
			res[i] = Result{Outcome: Failed, Err: fmt.Errorf("destroy %s: %w", conns[i], ErrClosed)}
		}
		return res
	}
	refused := d.fanOut(len(reqs), func(k *nlSock, lo, hi int) []int {
		return d.work(k, conns, reqs[lo:hi], idx[lo:hi], res, kill)
	})
	if len(refused) > 0 && d.loadIter() {
		// A socket the walk does not destroy keeps netlink's answer.
		for k, r := range d.walk(conns, refused) {
			if kept, ok := r.result(conns[refused[k]]); ok {
				res[refused[k]] = kept
			}
		}
	}
	if kill && d.verify {
		d.check(conns, reqs, idx, res)
	}
	d.sock.trim()
	return res
}

// check looks up again, on the Destroyer's socket, the sockets reqs
// (conns[idx[j]]) whose destroy answered success, and fails those the
// kernel still has (ErrNoEffect), or that it could not be asked about.
// d.mu is held.
func (d *Destroyer) check(conns []*conn.Conn, reqs [][reqLen]byte, idx []int, res []Result) {
	var again [][reqLen]byte
	var which []int // again[m] is conns[which[m]]
	for j, i := range idx {
		if res[i].Outcome == Destroyed {
			again, which = append(again, reqs[j]), append(which, i)
		}
	}
	d.sock.lookups(again, func(lo int, ans []answer) {
		for m, a := range ans {
			i := which[lo+m]
			c, r := conns[i], res[i]
			switch {
			case a.err == nil && (a.errno == unix.ENOENT || a.errno == unix.ESTALE):
				// Gone: the destroy did what it said.
			case a.err == nil && a.errno == 0 && a.found:
				res[i] = Result{Outcome: Failed, Via: r.Via, State: r.State,
					Err: fmt.Errorf("destroy %s: %w: the kernel answered success and still has it in %s", c, ErrNoEffect, a.state)}
			case a.err != nil:
				res[i] = Result{Outcome: Failed, Via: r.Via, State: r.State, Err: fmt.Errorf("check destroy of %s: %w", c, a.err)}
			case a.errno != 0:
				res[i] = Result{Outcome: Failed, Via: r.Via, State: r.State, Err: fmt.Errorf("check destroy of %s: %w", c, a.errno)}
			default:
				res[i] = Result{Outcome: Failed, Via: r.Via, State: r.State, Err: fmt.Errorf("check destroy of %s: %w", c, ErrNoAnswer)}
			}
		}
	})
}

// work looks up reqs (conns[idx[j]]) on socket k, in batches, fills in
// their results, and when kill destroys the confirmed ones of each batch
// right after its lookups. It returns the indexes of the full sockets
// netlink refused to destroy with EOPNOTSUPP.
func (d *Destroyer) work(k *nlSock, conns []*conn.Conn, reqs [][reqLen]byte, idx []int, res []Result, kill bool) []int {
	var refused []int
	var confirmed [][reqLen]byte
	var which []int // confirmed[m] is conns[which[m]]
	k.lookups(reqs, func(lo int, ans []answer) {
		confirmed, which = confirmed[:0], which[:0]
		for j, a := range ans {
			i := idx[lo+j]
			c := conns[i]
			switch {
			case a.err != nil:
				res[i] = Result{Outcome: Failed, Err: fmt.Errorf("look up %s: %w", c, a.err)}
			case a.errno == unix.ENOENT || a.errno == unix.ESTALE:
				res[i] = Result{Outcome: Gone}
			case a.errno != 0:
				res[i] = Result{Outcome: Failed, Err: fmt.Errorf("look up %s: %w", c, a.errno)}
			case !a.found:
				res[i] = Result{Outcome: Failed, Err: fmt.Errorf("look up %s: %w", c, ErrNoAnswer)}
			case a.state != c.State:
				res[i] = Result{Outcome: Changed, State: a.state}
			default:
				res[i] = Result{Outcome: Confirmed, State: a.state}
				confirmed, which = append(confirmed, reqs[lo+j]), append(which, i)
			}
		}
		if !kill || len(confirmed) == 0 {
			return
		}
		var dans []answer
		switch {
		case d.noDiagDestroy:
			dans = make([]answer, len(confirmed))
			for m := range dans {
				dans[m] = answer{errno: unix.EOPNOTSUPP, done: true}
			}
		case d.keep != nil:
			dans = d.keepSome(k, conns, confirmed, which)
		default:
			dans = k.destroys(confirmed)
		}
		for m, a := range dans {
			i := which[m]
			c := conns[i]
			st := res[i].State
			switch {
			case a.err != nil:
				res[i] = Result{Outcome: Failed, Err: fmt.Errorf("destroy %s: %w", c, a.err), State: st}
			case a.errno == 0:
				res[i] = Result{Outcome: Destroyed, State: st}
			// ENOENT: no socket on the tuple carries our cookie. The tuple may
			// be free, or name another socket: a new connection on the same
			// ports, or — for the accepted end of a dead connection — the
			// listener it came from (the lookup falls back to listeners). The
			// kernel (6.18) answers ENOENT to a cookie mismatch; the ESTALE of
			// sock_diag_check_cookie() is what older kernels leaked for it.
			case a.errno == unix.ENOENT || a.errno == unix.ESTALE:
				res[i] = Result{Outcome: Gone}
			default:
				res[i] = Result{Outcome: Failed, Err: fmt.Errorf("destroy %s: %w", c, a.errno), State: st}
				if a.errno == unix.EOPNOTSUPP && !c.Timewait {
					refused = append(refused, i)
				}
			}
		}
	})
	return refused
}

// keepSome sends the destroys of confirmed (conns[which[m]]) but for the
// sockets d.keep names, which it answers with success unsent (tests).
func (d *Destroyer) keepSome(k *nlSock, conns []*conn.Conn, confirmed [][reqLen]byte, which []int) []answer {
	dans := make([]answer, len(confirmed))
	var send [][reqLen]byte
	var at []int
	for m := range confirmed {
		if d.keep(conns[which[m]]) {
			dans[m] = answer{done: true}
			continue
		}
		send, at = append(send, confirmed[m]), append(at, m)
	}
	for n, a := range k.destroys(send) {
		dans[at[n]] = a
	}
	return dans
}

// result is the Result of the walk's r for c: ok is false when the walk did
// not settle it (not found as a full socket, or the kfunc failed).
func (r iterResult) result(c *conn.Conn) (Result, bool) {
	switch {
	case r.destroyed:
		return Result{Outcome: Destroyed, Via: Kfunc, State: c.State}, true
	case r.changed:
		return Result{Outcome: Changed, Via: Kfunc, State: r.state}, true
	}
	return Result{}, false
}

// walk destroys the full sockets conns[sel[k]] with the kfunc iterator, in
// as many walks as the kill map needs, and reports what it did with each.
// A socket listed twice is destroyed once; its copy reports nothing done.
// d.mu is held.
func (d *Destroyer) walk(conns []*conn.Conn, sel []int) []iterResult {
	out := make([]iterResult, len(sel))
	var cookies []uint64
	var states []conn.State
	var which []int // cookies[k] is conns[sel[which[k]]]
	seen := make(map[uint64]struct{}, len(sel))
	for k, i := range sel {
		c := conns[i].Cookie
		if _, dup := seen[c]; dup {
			continue
		}
		seen[c] = struct{}{}
		cookies = append(cookies, c)
		states = append(states, conns[i].State)
		which = append(which, k)
	}
	if d.iter == nil {
		return out
	}
	step := d.iter.cap
	for lo := 0; lo < len(cookies) && d.iter != nil; lo += step {
		hi := min(len(cookies), lo+step)
		err := d.iter.destroy(cookies[lo:hi], states[lo:hi], d.inNetns, func(k int, r iterResult) {
			out[which[lo+k]] = r
		})
		if err != nil {
			// The kill map may hold stale entries: never walk again.
			d.iterErr = err
			_ = d.iter.close()
			d.iter = nil
		}
	}
	return out
}

// loadIter loads the kfunc iterator on first use; it reports whether it is
// available. d.mu is held.
func (d *Destroyer) loadIter() bool {
	if !d.iterUsed && d.sock != nil {
		d.iterUsed = true
		d.iter, d.iterErr = newIterKiller(d.inode)
	}
	return d.iter != nil
}

// encode builds the SOCK_DESTROY request for c: an nlmsghdr (sequence
// number left for exchange to fill) and a struct inet_diag_req_v2.
func encode(c *conn.Conn) ([reqLen]byte, error) {
	var b [reqLen]byte
	if c.Cookie == 0 || c.Cookie == noCookie {
		return b, ErrNoCookie
	}
	if c.State == 0 || c.State >= 32 {
		return b, ErrNoState
	}
	l, r := c.Local.Addr(), c.Remote.Addr()
	var family uint8
	switch {
	case !l.IsValid() || !r.IsValid():
		return b, errors.New("missing address")
	case l.Is4() && r.Is4():
		family = unix.AF_INET
	case l.Is6() && r.Is6():
		// IPv4-mapped addresses included: such sockets are AF_INET6 ones.
		family = unix.AF_INET6
	default:
		return b, fmt.Errorf("mixed address families %s and %s", l, r)
	}
	// The kernel does not filter the exact lookup by state (Linux 6.18):
	// the mask is sent for completeness, and check() compares the state.
	states := uint32(1) << c.State

	ne := binary.NativeEndian
	ne.PutUint32(b[0:], reqLen)
	ne.PutUint16(b[4:], unix.SOCK_DESTROY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	// b[8:12] sequence, b[12:16] port id 0 (the kernel fills it in).
	b[16] = family
	b[17] = unix.IPPROTO_TCP
	ne.PutUint32(b[20:], states)
	binary.BigEndian.PutUint16(b[24:], c.Local.Port())
	binary.BigEndian.PutUint16(b[26:], c.Remote.Port())
	if family == unix.AF_INET {
		l4, r4 := l.As4(), r.As4()
		copy(b[28:], l4[:])
		copy(b[44:], r4[:])
	} else {
		l16, r16 := l.As16(), r.As16()
		copy(b[28:], l16[:])
		copy(b[44:], r16[:])
	}
	ne.PutUint32(b[60:], c.Ifindex)
	ne.PutUint32(b[64:], uint32(c.Cookie))
	ne.PutUint32(b[68:], uint32(c.Cookie>>32))
	return b, nil
}

// lookupOf turns a SOCK_DESTROY request into the exact lookup of the same
// socket: SOCK_DIAG_BY_FAMILY without NLM_F_DUMP, any state. The kernel
// answers it with the socket (struct inet_diag_msg) or an error, never
// both, so it needs no NLM_F_ACK.
func lookupOf(req [reqLen]byte) [reqLen]byte {
	ne := binary.NativeEndian
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[20:], ^uint32(0))
	return req
}

// answer is the kernel's reply to one request: errno (0 for success), or
// err when no reply came. A lookup's answer is the socket: found, with its
// state.
type answer struct {
	errno unix.Errno
	err   error
	done  bool
	found bool
	state conn.State
}
