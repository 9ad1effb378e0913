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
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
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

// Options of a Destroyer.
type Options struct {
	// IterMin > 0: a Destroy call with at least this many full sockets (not
	// timewait) destroys them with one walk of the namespace's sockets, the
	// kfunc iterator (Linux >= 6.5), and the rest with netlink.
	//
	// 0, the default: netlink for everything; the walk only retries full
	// sockets netlink refused with EOPNOTSUPP (a kernel built without
	// CONFIG_INET_DIAG_DESTROY). Netlink is the faster path wherever it
	// works. Measured on Linux 6.18 (2 cores, loopback CLOSE_WAIT sockets):
	// destroying costs 7-9 us a socket either way, mostly tcp_abort() and
	// the peer's reset, and a netlink request adds under 1 us to that,
	// while the walk visits every TCP socket of the namespace at about
	// 0.65 us each (iter/tcp takes a reference and the lock of each).
	// Medians: 10,000 kills among 20,000 sockets, netlink 97 ms, walk 160
	// ms; among 60,000, netlink 85-135 ms, walk 220-300 ms; 10 among
	// 60,000, netlink 0.2-4 ms, walk 47-52 ms.
	//
	// Negative: never walk.
	IterMin int
}

// Destroyer holds one NETLINK_SOCK_DIAG socket in the network namespace of
// the thread that called New; it destroys sockets of that namespace only,
// whichever thread calls it later. It is safe for concurrent use: calls are
// serialised.
//
// Many full sockets at once are destroyed by one walk of the namespace's
// sockets with the bpf_sock_destroy() kfunc (see iterKiller), loaded on
// first use; everything else, and whatever the walk left, by netlink.
type Destroyer struct {
	mu     sync.Mutex
	fd     int // -1 once closed
	portid uint32
	seq    uint32
	batch  int // destroy requests per sendmsg
	cbatch int // lookups per sendmsg
	wbuf   []byte
	rd     *reader

	netns    uint32 // inode of the namespace of New's thread
	iterMin  int    // see Options.IterMin
	iter     *iterKiller
	iterErr  error // why the iterator is not used
	iterUsed bool  // the iterator was loaded, or failed to
}

// New opens the netlink socket in the calling thread's network namespace,
// with default Options. To work on another namespace, call it from a thread
// locked to (and setns'ed into) that namespace.
func New() (*Destroyer, error) { return NewWithOptions(Options{}) }

// NewWithOptions is New with options.
func NewWithOptions(opts Options) (*Destroyer, error) {
	self, err := netns.CurrentInode()
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open sock_diag socket: %w", err)
	}
	d := &Destroyer{fd: fd, rd: newReader(), netns: self, iterMin: opts.IterMin}
	if err := d.setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return d, nil
}

// IterErr says why the kfunc iterator could not be used (nil when it was,
// or has not been needed yet).
func (d *Destroyer) IterErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.iterErr
}

func (d *Destroyer) setup() error {
	if err := unix.SetsockoptInt(d.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		if err := unix.SetsockoptInt(d.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf); err != nil {
			return fmt.Errorf("set sock_diag receive buffer: %w", err)
		}
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(d.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set sock_diag receive timeout: %w", err)
	}
	// Without NETLINK_CAP_ACK an error ACK echoes the whole request; with it
	// every ACK is 36 bytes. Only an optimisation: the parser takes both.
	_ = unix.SetsockoptInt(d.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)

	if err := unix.Bind(d.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind sock_diag socket: %w", err)
	}
	sa, err := unix.Getsockname(d.fd)
	if err != nil {
		return fmt.Errorf("read sock_diag port id: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return fmt.Errorf("read sock_diag port id: unexpected address %T", sa)
	}
	d.portid = nl.Pid
	// Connected to the kernel (port 0), the socket refuses datagrams from
	// any other netlink socket: only the kernel can answer.
	if err := unix.Connect(d.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("connect sock_diag socket: %w", err)
	}

	rcv, err := unix.GetsockoptInt(d.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return fmt.Errorf("read sock_diag receive buffer: %w", err)
	}
	snd, err := unix.GetsockoptInt(d.fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return fmt.Errorf("read sock_diag send buffer: %w", err)
	}
	// netlink_sendmsg refuses datagrams longer than sk_sndbuf-32 (EMSGSIZE).
	d.batch = min(maxBatchBytes, snd-32) / reqLen
	d.cbatch = max(1, min(d.batch, rcv/checkCost))
	d.batch = max(1, min(d.batch, rcv/ackCost))
	d.wbuf = make([]byte, 0, d.batch*reqLen)
	return nil
}

// Close closes the netlink socket. Later calls to Destroy fail with
// ErrClosed.
func (d *Destroyer) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil
	}
	var errs []error
	if d.iter != nil {
		errs = append(errs, d.iter.close())
		d.iter = nil
	}
	if err := unix.Close(d.fd); err != nil {
		errs = append(errs, fmt.Errorf("close sock_diag socket: %w", err))
	}
	d.fd = -1
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
	res, _ := d.check(conns)
	return res
}

// check looks every connection up and returns the results, with the
// requests for SOCK_DESTROY of the confirmed ones and their indexes into
// conns.
func (d *Destroyer) check(conns []*conn.Conn) ([]Result, pending) {
	res := make([]Result, len(conns))
	var p pending
	p.reqs = make([][reqLen]byte, 0, len(conns))
	p.idx = make([]int, 0, len(conns))
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
		p.reqs = append(p.reqs, req)
		p.idx = append(p.idx, i)
	}
	looks := make([][reqLen]byte, len(p.reqs))
	for j := range p.reqs {
		looks[j] = lookupOf(p.reqs[j])
	}
	n := 0
	for j, a := range d.exchangeLookups(looks) {
		i := p.idx[j]
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
			p.reqs[n], p.idx[n] = p.reqs[j], i
			n++
		}
	}
	p.reqs, p.idx = p.reqs[:n], p.idx[:n]
	return res, p
}

// pending are SOCK_DESTROY requests: reqs[j] destroys conns[idx[j]].
type pending struct {
	reqs [][reqLen]byte
	idx  []int
}

// Destroy destroys every connection in conns, each by its cookie, and
// returns one Result per connection, in order. Only a socket the kernel
// has, at the moment it is asked, in the state c.State names is destroyed
// (see Check); a connection without a cookie or a state, or with unusable
// addresses, fails without anything being sent. Requests go out many per
// sendmsg; see Options.IterMin for when full sockets are destroyed by the
// kfunc iterator instead.
func (d *Destroyer) Destroy(conns []*conn.Conn) []Result {
	res, p := d.check(conns)
	reqs, idx := d.destroyIter(conns, p.reqs, p.idx, res)
	var refused []int // full sockets netlink cannot destroy on this kernel
	for j, a := range d.exchange(reqs) {
		c := conns[idx[j]]
		st := res[idx[j]].State
		switch {
		case a.err != nil:
			res[idx[j]] = Result{Outcome: Failed, Err: fmt.Errorf("destroy %s: %w", c, a.err), State: st}
		case a.errno == 0:
			res[idx[j]] = Result{Outcome: Destroyed, State: st}
		// ENOENT: no socket on the tuple carries our cookie. The tuple may
		// be free, or name another socket: a new connection on the same
		// ports, or — for the accepted end of a dead connection — the
		// listener it came from (the lookup falls back to listeners). The
		// kernel (6.18) answers ENOENT to a cookie mismatch; the ESTALE of
		// sock_diag_check_cookie() is what older kernels leaked for it.
		case a.errno == unix.ENOENT || a.errno == unix.ESTALE:
			res[idx[j]] = Result{Outcome: Gone}
		default:
			res[idx[j]] = Result{Outcome: Failed, Err: fmt.Errorf("destroy %s: %w", c, a.errno), State: st}
			if a.errno == unix.EOPNOTSUPP && !c.Timewait {
				refused = append(refused, idx[j])
			}
		}
	}
	if len(refused) > 0 && d.iterMin >= 0 && d.loadIter() {
		// A socket the walk does not destroy keeps netlink's answer.
		for k, r := range d.walk(conns, refused) {
			if kept, ok := r.result(conns[refused[k]]); ok {
				res[refused[k]] = kept
			}
		}
	}
	return res
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

// destroyIter destroys the full sockets among reqs with the kfunc iterator
// when Options.IterMin asks for it, fills in their results, and returns
// the requests left for netlink: timewait sockets, and whatever the walk
// did not destroy (not found: gone or changed; or the kfunc failed).
// Netlink then answers for those exactly.
func (d *Destroyer) destroyIter(conns []*conn.Conn, reqs [][reqLen]byte, idx []int, res []Result) ([][reqLen]byte, []int) {
	if d.iterMin <= 0 {
		return reqs, idx
	}
	var full []int // indexes into reqs
	for j, i := range idx {
		if !conns[i].Timewait {
			full = append(full, j)
		}
	}
	if len(full) < d.iterMin || !d.loadIter() {
		return reqs, idx
	}
	sel := make([]int, len(full))
	for k, j := range full {
		sel[k] = idx[j]
	}
	done := make([]bool, len(reqs))
	for k, r := range d.walk(conns, sel) {
		if kept, ok := r.result(conns[sel[k]]); ok {
			res[sel[k]] = kept
			done[full[k]] = true
		}
	}
	n := 0
	for j := range reqs {
		if !done[j] {
			reqs[n], idx[n] = reqs[j], idx[j]
			n++
		}
	}
	return reqs[:n], idx[:n]
}

// walk destroys the full sockets conns[sel[k]] with the kfunc iterator, in
// as many walks as the kill map needs, and reports what it did with each.
// A socket listed twice is destroyed once; its copy reports nothing done.
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
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.iter == nil {
		return out
	}
	step := d.iter.cap
	for lo := 0; lo < len(cookies) && d.iter != nil; lo += step {
		hi := min(len(cookies), lo+step)
		err := d.iter.destroy(cookies[lo:hi], states[lo:hi], func(k int, r iterResult) {
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
// available.
func (d *Destroyer) loadIter() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.iterUsed && d.fd >= 0 {
		d.iterUsed = true
		d.iter, d.iterErr = newIterKiller(d.netns)
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

// exchange sends SOCK_DESTROY reqs in batches, each request with its own
// sequence number, and collects one answer per request.
func (d *Destroyer) exchange(reqs [][reqLen]byte) []answer {
	return d.exchangeAs(reqs, d.batch, d.roundTrip)
}

// exchangeLookups is exchange for lookups (see lookupOf).
func (d *Destroyer) exchangeLookups(reqs [][reqLen]byte) []answer {
	return d.exchangeAs(reqs, d.cbatch, d.lookupTrip)
}

func (d *Destroyer) exchangeAs(reqs [][reqLen]byte, batch int, trip func([][reqLen]byte, []answer) error) []answer {
	d.mu.Lock()
	defer d.mu.Unlock()
	ans := make([]answer, len(reqs))
	batch = max(1, batch)
	for lo := 0; lo < len(reqs); lo += batch {
		hi := min(len(reqs), lo+batch)
		if err := trip(reqs[lo:hi], ans[lo:hi]); err != nil {
			for i := lo; i < hi; i++ {
				if !ans[i].done {
					ans[i] = answer{err: err, done: true}
				}
			}
		}
	}
	return ans
}

// roundTrip sends one datagram of requests and reads answers until every
// request has one. It returns the reason when some did not get one.
//
// Only the last request asks for an acknowledgement (NLM_F_ACK): the
// kernel answers a failed request whether asked or not, and handles the
// datagram's requests in order inside sendmsg, queueing each answer as it
// goes. So once the last request's answer is read, every earlier request
// without an answer succeeded: 10,000 successes cost one answer instead
// of 10,000 (an skb each, read one recvmsg at a time). An answer the
// kernel could not queue is reported as ENOBUFS; then silence proves
// nothing, and unanswered requests fail with ErrNoAnswer.
func (d *Destroyer) roundTrip(reqs [][reqLen]byte, ans []answer) error {
	first, err := d.send(reqs, true)
	if err != nil {
		return err
	}
	last := len(reqs) - 1
	overrun, err := d.receive(first, ans, func() bool { return ans[last].done })
	if err != nil {
		return err
	}
	if overrun {
		// Some answer was lost; unanswered requests may have failed.
		return fmt.Errorf("%w: %w", ErrNoAnswer, unix.ENOBUFS)
	}
	for i := range ans {
		if !ans[i].done {
			ans[i] = answer{done: true} // no error answer: it succeeded
		}
	}
	return nil
}

// lookupTrip sends one datagram of lookups and reads until each has its
// answer: the socket, or an error. A lookup whose answer was lost stays
// unanswered: nothing is known of its socket.
func (d *Destroyer) lookupTrip(reqs [][reqLen]byte, ans []answer) error {
	first, err := d.send(reqs, false)
	if err != nil {
		return err
	}
	left := len(reqs)
	overrun, err := d.receive(first, ans, func() bool {
		left = 0
		for i := range ans {
			if !ans[i].done {
				left++
			}
		}
		return left == 0
	})
	if err != nil {
		return err
	}
	if overrun && left > 0 {
		return fmt.Errorf("%w: %w", ErrNoAnswer, unix.ENOBUFS)
	}
	return nil
}

// send writes reqs as one datagram, numbered from the returned sequence
// number. ackLast: only the last request asks for an acknowledgement (see
// roundTrip); otherwise the flags are left as encoded.
func (d *Destroyer) send(reqs [][reqLen]byte, ackLast bool) (uint32, error) {
	if d.fd < 0 {
		return 0, ErrClosed
	}
	first := d.seq + 1
	d.seq += uint32(len(reqs))
	d.wbuf = d.wbuf[:0]
	for i := range reqs {
		d.wbuf = append(d.wbuf, reqs[i][:]...)
		h := d.wbuf[i*reqLen:]
		binary.NativeEndian.PutUint32(h[8:], first+uint32(i))
		if ackLast && i < len(reqs)-1 {
			binary.NativeEndian.PutUint16(h[6:], unix.NLM_F_REQUEST)
		}
	}
	for {
		_, err := unix.Write(d.fd, d.wbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("send sock_diag requests: %w", err)
		}
		return first, nil
	}
}

// receive reads answers to the requests numbered from first into ans until
// finished says so. overrun reports that the kernel dropped answers on a
// full receive queue; receive then returns once the queue is drained.
func (d *Destroyer) receive(first uint32, ans []answer, finished func() bool) (overrun bool, err error) {
	for !finished() {
		var n int
		if overrun {
			n, err = d.rd.recv(d.fd, unix.MSG_DONTWAIT)
		} else {
			n, err = d.rd.recv(d.fd, msgWaitForOne)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ENOBUFS:
			// Answers were dropped on a full receive queue. The kernel
			// queues every answer before sendmsg returns, so once the
			// queue is drained the missing ones are lost, not late.
			overrun = true
			continue
		case err == unix.EAGAIN && overrun:
			return true, nil
		case err == unix.EAGAIN:
			return overrun, fmt.Errorf("%w within %s", ErrNoAnswer, recvTimeout)
		case err != nil:
			return overrun, fmt.Errorf("receive sock_diag answer: %w", err)
		}
		for m := range n {
			parseAnswers(d.rd.datagram(m), d.portid, func(seq uint32, a answer) {
				i := seq - first // wraps past len(ans) for foreign sequences
				if i < uint32(len(ans)) && !ans[i].done {
					a.done = true
					ans[i] = a
				}
			})
		}
	}
	return overrun, nil
}

// parseAnswers walks one datagram of netlink messages addressed to portid
// and calls fn with the sequence number and the answer of each: the errno
// of an NLMSG_ERROR, or the state of the socket a lookup found (struct
// inet_diag_msg: family, state, timer, retrans, ...). Other messages, and
// anything truncated, are skipped; it never reads past b.
func parseAnswers(b []byte, portid uint32, fn func(seq uint32, a answer)) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := ne.Uint32(b[0:])
		if l < nlmsgHdrLen || l > uint32(len(b)) {
			return
		}
		msg := b[:l]
		if ne.Uint32(msg[12:]) == portid {
			switch typ := ne.Uint16(msg[4:]); {
			case typ == unix.NLMSG_ERROR && len(msg) >= nlmsgHdrLen+4:
				code := int64(int32(ne.Uint32(msg[16:])))
				if code < 0 {
					code = -code
				}
				fn(ne.Uint32(msg[8:]), answer{errno: unix.Errno(code)})
			case typ == sockDiagByFamily && len(msg) >= nlmsgHdrLen+4:
				fn(ne.Uint32(msg[8:]), answer{found: true, state: conn.State(msg[nlmsgHdrLen+1])})
			}
		}
		// Messages are 4-byte aligned; the last one may lack its padding.
		next := (uint64(l) + 3) &^ 3
		if next >= uint64(len(b)) {
			return
		}
		b = b[next:]
	}
}
