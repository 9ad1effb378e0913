package top

import (
	"net/netip"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// Snapshot is everything one refresh of top shows.
type Snapshot struct {
	At          time.Time     // when it was taken
	Interval    time.Duration // since the previous snapshot (0 on the first: rates unknown)
	Service     bool          // a service (hck-bpf run) holds the pin dir
	Mode        string        // the service's mode if known ("live", "dry-run"), else ""
	Policy      string        // what the countdowns follow: "flags", "service's /etc/hck-bpf/config.yaml", "defaults", ...
	States      []StateCount  // every TCP state with sockets or transitions, kernel order
	Transitions float64       // state changes per second, all states (0 when unknown)
	Syn         SynPressure
	Peers       []Peer      // sorted by Conns desc, then Hung desc, then address
	Candidates  []Candidate // tracked sockets in closing states, soonest deadline first
	Kills       []Kill      // newest first
	Namespaces  int         // in scope
	Warnings    []string    // e.g. "tracker not attached", "map full", partial data
	// PeersAt is when Peers' Conns were counted (a full dump of every
	// socket, every PeersEvery or less often: zero if never); their Hung
	// are of this snapshot, and a peer's Conns is at least its Hung.
	PeersAt time.Time
}

// StateCount is one TCP state's sockets and entries.
type StateCount struct {
	State  conn.State
	Count  int     // sockets now in the state (-1 when unknown)
	PerSec float64 // entries into the state per second
}

// SynPressure is the SYN_RECV panel: half-open sockets and the kernel's counters.
type SynPressure struct {
	HalfOpen        int    // request sockets (SYN_RECV) now
	CookiesSent     uint64 // TcpExt SyncookiesSent, cumulative
	CookiesPerSec   float64
	ListenOverflows uint64 // TcpExt ListenOverflows, cumulative
	OverflowsPerSec float64
	Alarm           bool // HalfOpen >= the --syn-alarm threshold (0: never)
}

// Peer is one remote address and its connections.
type Peer struct {
	Addr  netip.Addr
	Conns int // connections with this remote address
	Hung  int // of which hung (past their threshold)
}

// Candidate is a tracked socket in a closing state and its countdown.
type Candidate struct {
	Conn      conn.Conn     // cookie, state, addresses, netns (+name), owner (may be nil)
	Age       time.Duration // in its state; a lower bound when !Conn.Exact
	Threshold time.Duration // 0: none
	Left      time.Duration // until it is hung (<= 0: hung now)
	Excluded  string        // "" or why it will not be destroyed ("excluded port 22", "report-only rule r1", ...)
	Rule      string        // the config rule that decides ("" = the flags')
}

// Kill is one socket the service destroyed, as read from the pinned ring.
type Kill struct {
	At     time.Time
	Conn   conn.Conn     // as it was when destroyed (cookie, state, addresses, netns, owner comm)
	Age    time.Duration // its age in the state when destroyed
	Reason string        // the verdict's reason line
	Rule   string
}
