package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/loopsock"
	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// A holder is this program re-executed (`bench hold ...`) inside the
// bench's namespace: it builds a set of sockets, says "ready" on stdout,
// holds them until its stdin closes or it gets SIGTERM/SIGINT, then aborts
// them all (resets: nothing lingers for the next measurement). The
// machine's RLIMIT_NOFILE hard limit (20000 here, not raisable) is why 60k
// sockets take several holders.
const holdCmd = "hold"

// maxHolderFDs keeps each holder under the hard limit with room to spare.
const maxHolderFDs = 18000

// holdSpec is what one holder builds, in connections (two sockets each).
type holdSpec struct {
	Est int // ESTABLISHED pairs
	CW  int // CLOSE_WAIT (server) + FIN_WAIT2 (client, half-closed)
	FW1 int // FIN_WAIT1 (client, FIN behind data) + ESTABLISHED (server)
	LA  int // LAST_ACK (server, FIN behind data) + FIN_WAIT2 (client)
	// Peer: ESTABLISHED pairs whose client connects from peerAddr
	// (127.0.0.2): the server ends are the kill bench's targets.
	Peer int
}

// peerAddr is the address the Peer connections come from.
var peerAddr = netip.AddrFrom4([4]byte{127, 0, 0, 2})

func (s holdSpec) conns() int   { return s.Est + s.CW + s.FW1 + s.LA + s.Peer }
func (s holdSpec) sockets() int { return 1 + 2*s.conns() } // + the listener
func (s holdSpec) hung() int    { return 2*s.CW + s.FW1 + 2*s.LA }

// readyMsg is a holder's first stdout line.
type readyMsg struct {
	Ready  bool           `json:"ready"`
	FDs    int            `json:"fds"`
	States map[string]int `json:"states"`
	Took   float64        `json:"took_s"`
}

// lagRec is one socket of the kill-lag holder: when its client sent FIN
// (just before shutdown(), a lower bound of the server's CLOSE_WAIT entry)
// and when the holder saw the server socket closed (0: never).
type lagRec struct {
	Cookie uint64 `json:"cookie"`
	ShutNs int64  `json:"shut_ns"`
	DeadNs int64  `json:"dead_ns"`
}

func holdMain(args []string) int {
	fs := flag.NewFlagSet(holdCmd, flag.ContinueOnError)
	hostNS := fs.Uint64("host-netns", 0, "the host's network namespace inode (refuse to run there)")
	port := fs.Int("port", 0, "listener port on 127.0.0.1")
	var s holdSpec
	fs.IntVar(&s.Est, "est", 0, "ESTABLISHED pairs")
	fs.IntVar(&s.CW, "cw", 0, "CLOSE_WAIT pairs")
	fs.IntVar(&s.FW1, "fw1", 0, "FIN_WAIT1 connections")
	fs.IntVar(&s.LA, "la", 0, "LAST_ACK connections")
	fs.IntVar(&s.Peer, "peer", 0, "ESTABLISHED pairs whose client connects from 127.0.0.2")
	lag := fs.Int("lag", 0, "kill-lag mode: this many CLOSE_WAIT pairs, half-closed over -spread, watched until destroyed")
	spread := fs.Duration("spread", time.Second, "kill-lag mode: spread the half-closes over this long")
	lagWait := fs.Duration("lag-wait", 20*time.Second, "kill-lag mode: give up on a socket after this long")
	loUp := fs.Bool("lo-up", false, "bring loopback up first (a holder started in a namespace of its own)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "bench hold: %v\n", err)
		return 1
	}
	if err := mustBePrivate(*hostNS); err != nil {
		return fail(err)
	}
	if *loUp {
		here, err := netns.Current()
		if err != nil {
			return fail(err)
		}
		err = here.LoopbackUp()
		here.Close()
		if err != nil {
			return fail(err)
		}
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	h := &holder{}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	defer h.abortAll()

	out := bufio.NewWriter(os.Stdout)
	var err error
	if *lag > 0 {
		err = h.lag(*port, *lag, *spread, *lagWait, out)
	} else {
		err = h.build(*port, s, out)
	}
	if err != nil {
		return fail(err)
	}
	select {
	case <-eof:
	case <-stop:
	}
	return 0
}

type holder struct {
	fds []int
}

func (h *holder) keep(fds ...int) { h.fds = append(h.fds, fds...) }

func (h *holder) abortAll() {
	for _, fd := range h.fds {
		_ = loopsock.Abort(fd)
	}
	h.fds = nil
}

// build makes the sockets of s and reports their states as the kernel
// sees them.
func (h *holder) build(port int, s holdSpec, out *bufio.Writer) error {
	start := time.Now()
	if s.sockets() > maxHolderFDs {
		return fmt.Errorf("%d sockets: more than %d per holder", s.sockets(), maxHolderFDs)
	}
	ln, err := listen(port)
	if err != nil {
		return err
	}
	h.keep(ln)
	clients := make([]int, s.conns())
	servers := make([]int, s.conns())
	for i := range clients {
		o := small
		if i >= len(clients)-s.Peer {
			o.From = peerAddr
		}
		if clients[i], servers[i], err = loopsock.Pair(ln, o); err != nil {
			return fmt.Errorf("connection %d of %d: %w", i+1, len(clients), err)
		}
		h.keep(clients[i], servers[i])
	}
	// Slices of the connections: ESTABLISHED first, then each hung kind,
	// then the peer's (last, ESTABLISHED).
	i := s.Est
	cw := span{i, i + s.CW}
	i += s.CW
	fw1 := span{i, i + s.FW1}
	i += s.FW1
	la := span{i, i + s.LA}

	for j := cw.lo; j < cw.hi; j++ {
		if err := unix.Shutdown(clients[j], unix.SHUT_WR); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	// FIN_WAIT1: fill the server's window (it never reads), then FIN.
	if err := loopsock.Fill(clients[fw1.lo:fw1.hi]...); err != nil {
		return err
	}
	for j := fw1.lo; j < fw1.hi; j++ {
		if err := unix.Shutdown(clients[j], unix.SHUT_WR); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	// LAST_ACK: the client half-closes, then the server fills the client's
	// window (it never reads) and sends its FIN behind the data.
	for j := la.lo; j < la.hi; j++ {
		if err := unix.Shutdown(clients[j], unix.SHUT_WR); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	if err := loopsock.Fill(servers[la.lo:la.hi]...); err != nil {
		return err
	}
	for j := la.lo; j < la.hi; j++ {
		if err := unix.Shutdown(servers[j], unix.SHUT_WR); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the last FINs and ACKs land
	states := map[string]int{}
	for _, fd := range h.fds {
		st, err := loopsock.State(fd)
		if err != nil {
			return err
		}
		states[st.String()]++
	}
	return say(out, readyMsg{Ready: true, FDs: len(h.fds), States: states, Took: time.Since(start).Seconds()})
}

type span struct{ lo, hi int }

// lag builds n ESTABLISHED pairs, then half-closes their clients one by
// one over spread (each server enters CLOSE_WAIT) and waits in epoll for
// each server socket to be destroyed (SOCK_DESTROY leaves it CLOSE, with
// an error: EPOLLERR|EPOLLHUP). It prints one lagRec per socket, then
// {"done":true}.
func (h *holder) lag(port, n int, spread, wait time.Duration, out *bufio.Writer) error {
	if 1+2*n > maxHolderFDs {
		return fmt.Errorf("%d pairs: too many for one holder", n)
	}
	ln, err := listen(port)
	if err != nil {
		return err
	}
	h.keep(ln)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	h.keep(ep)
	recs := make([]lagRec, n)
	clients := make([]int, n)
	servers := make([]int, n)
	for i := range n {
		if clients[i], servers[i], err = loopsock.Pair(ln, small); err != nil {
			return err
		}
		h.keep(clients[i], servers[i])
		c, err := unix.GetsockoptUint64(servers[i], unix.SOL_SOCKET, unix.SO_COOKIE)
		if err != nil {
			return fmt.Errorf("SO_COOKIE: %w", err)
		}
		recs[i].Cookie = c
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLERR | unix.EPOLLHUP | unix.EPOLLET, Fd: int32(i)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, servers[i], &ev); err != nil {
			return fmt.Errorf("epoll add: %w", err)
		}
	}
	if err := say(out, readyMsg{Ready: true, FDs: len(h.fds)}); err != nil {
		return err
	}

	// The half-closes run on their own thread, on a fixed schedule.
	var wg sync.WaitGroup
	wg.Add(1)
	shutErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		t0 := time.Now()
		for i := range n {
			if d := time.Until(t0.Add(spread * time.Duration(i) / time.Duration(n))); d > 0 {
				time.Sleep(d)
			}
			recs[i].ShutNs = bootNow()
			if err := unix.Shutdown(clients[i], unix.SHUT_WR); err != nil {
				shutErr <- fmt.Errorf("shutdown: %w", err)
				return
			}
		}
	}()

	dead := make([]int64, n)
	left := n
	deadline := time.Now().Add(spread + wait)
	events := make([]unix.EpollEvent, 256)
	for left > 0 && time.Now().Before(deadline) {
		k, err := unix.EpollWait(ep, events, 100)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}
		now := bootNow()
		for _, ev := range events[:k] {
			i := int(ev.Fd)
			if dead[i] != 0 {
				continue
			}
			if st, err := loopsock.State(servers[i]); err == nil && st == conn.Close {
				dead[i] = now
				left--
			}
		}
	}
	wg.Wait()
	select {
	case err := <-shutErr:
		return err
	default:
	}
	for i := range recs {
		recs[i].DeadNs = dead[i]
		if err := say(out, recs[i]); err != nil {
			return err
		}
	}
	return say(out, map[string]bool{"done": true})
}

// say writes one JSON line and flushes it.
func say(out *bufio.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	out.Write(b)
	out.WriteByte('\n')
	return out.Flush()
}
