// Package conn holds the one type every part of hck-bpf talks about: a TCP
// connection as the kernel tracker saw it, with its state and the exact time
// it entered that state.
package conn

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// State is a TCP state with the kernel's numbering (include/net/tcp_states.h).
type State uint8

// The kernel's TCP states.
const (
	Established State = 1
	SynSent     State = 2
	SynRecv     State = 3
	FinWait1    State = 4
	FinWait2    State = 5
	TimeWait    State = 6
	Close       State = 7
	CloseWait   State = 8
	LastAck     State = 9
	Listen      State = 10
	Closing     State = 11
	NewSynRecv  State = 12
)

var stateNames = [...]string{
	Established: "ESTABLISHED",
	SynSent:     "SYN_SENT",
	SynRecv:     "SYN_RECV",
	FinWait1:    "FIN_WAIT1",
	FinWait2:    "FIN_WAIT2",
	TimeWait:    "TIME_WAIT",
	Close:       "CLOSE",
	CloseWait:   "CLOSE_WAIT",
	LastAck:     "LAST_ACK",
	Listen:      "LISTEN",
	Closing:     "CLOSING",
	NewSynRecv:  "NEW_SYN_RECV",
}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE(%d)", uint8(s))
}

// ClosingStates are the six states a sweep may destroy, in the order the
// scripts list them.
var ClosingStates = []State{CloseWait, FinWait1, FinWait2, Closing, LastAck, TimeWait}

// Closing reports whether s is one of the six states a sweep may destroy.
func (s State) Closing() bool {
	switch s {
	case CloseWait, FinWait1, FinWait2, Closing, LastAck, TimeWait:
		return true
	}
	return false
}

// ParseState accepts the kernel's names and ss's spellings, any case:
// CLOSE_WAIT, close-wait, closewait.
func ParseState(s string) (State, error) {
	norm := strings.ToUpper(strings.NewReplacer("-", "", "_", "").Replace(strings.TrimSpace(s)))
	for i, name := range stateNames {
		if name != "" && strings.ReplaceAll(name, "_", "") == norm {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown TCP state %q", s)
}

// Owner is the process holding a socket open.
type Owner struct {
	PID  int
	Comm string
	// Cgroup is the process's control group path, as /proc/PID/cgroup
	// shows it (see internal/cgroup); empty when it could not be read
	// (the process exited in between).
	Cgroup string
	// ContainerID and PodUID are what the cgroup path shows of the
	// container the process runs in and of its Kubernetes pod; empty
	// when it shows none.
	ContainerID string
	PodUID      string
}

// Conn is one tracked TCP socket.
type Conn struct {
	Cookie uint64 // the kernel's socket cookie: names exactly one socket
	State  State
	Local  netip.AddrPort
	Remote netip.AddrPort
	NetNS  uint32 // network namespace inode number
	// NetNSName is the namespace's readable name (an `ip netns` name, a
	// pod or container: scope.Name), "" when none is known.
	NetNSName string
	Ifindex   uint32 // bound device, needed to find IPv6 link-local sockets

	// Entered is when the socket entered State, on CLOCK_BOOTTIME, in ns.
	Entered uint64
	// Exact is false when Entered is only the first time hck-bpf saw the
	// socket: its age is then a lower bound.
	Exact bool
	// Timewait marks a socket the kernel keeps as a timewait socket after
	// close (TIME_WAIT, or FIN_WAIT2 with no process left).
	Timewait bool
	// Orphan marks a full socket its process closed: nobody holds it.
	Orphan bool
	// File is the kernel address of the socket's open file, how the
	// owners iterator finds it in file tables; 0 when unknown.
	File uint64

	Owner *Owner // nil when unknown or when no process holds it
}

// Age is how long the socket has been in its state at now (CLOCK_BOOTTIME ns).
func (c *Conn) Age(now uint64) time.Duration {
	if now < c.Entered {
		return 0
	}
	return time.Duration(now - c.Entered)
}

// MayHaveOwner reports whether a process may hold c: a timewait socket or
// an orphan (closed by its process) has no owner, and never will again.
func (c *Conn) MayHaveOwner() bool { return !c.Timewait && !c.Orphan }

// TimewaitLen is TCP_TIMEWAIT_LEN: a TIME_WAIT socket's timer, unless a
// late segment re-arms it.
const TimewaitLen = 60 * time.Second

// MayBeStale reports whether what the tracker's map says of c may be out
// of date in a way no event reports, so that only a walk of the
// namespace's sockets can tell (at now, CLOCK_BOOTTIME ns). This is the
// one rule `list` and a sweep both judge the map by:
//   - a FIN_WAIT2 timewait socket that received the peer's FIN is in
//     TIME_WAIT by now, with no event (the tracepoint does not fire for
//     timewait sockets);
//   - a TIME_WAIT socket older than its timer may be gone, with no event;
//   - a socket that a process may hold but whose file is unknown may have
//     been accepted since it entered its state (its owner would then be
//     unknown).
func (c *Conn) MayBeStale(now uint64) bool {
	switch {
	case c.Timewait && c.State == FinWait2:
		return true
	case c.Timewait:
		return c.Age(now) >= TimewaitLen
	}
	return c.File == 0 && c.MayHaveOwner()
}

// IPv6 reports whether the connection is IPv6 (IPv4-mapped addresses count
// as IPv6: that is the family the kernel keeps them under).
func (c *Conn) IPv6() bool { return c.Local.Addr().Is6() }

// String renders the scripts' form: "tcp CLOSE_WAIT 10.0.0.5:8080 -> 10.0.0.100:52431".
func (c *Conn) String() string {
	s := fmt.Sprintf("tcp %s %s -> %s", c.State, c.Local, c.Remote)
	if c.Owner != nil {
		s += fmt.Sprintf(" (PID: %d, Process: %s)", c.Owner.PID, c.Owner.Comm)
	}
	return s
}
