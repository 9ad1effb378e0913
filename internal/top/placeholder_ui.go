package top

// TEMPORARY (H7, issue 12): minimal stand-ins for H6's Source, WriteTable
// and WriteJSON, with the contract's signatures, so that `hck-bpf top` and
// its end-to-end test run on the UI branch. They read only the tracker's
// map (no per-state counters, no SYN counters, no kills ring). The lead
// deletes this file when H6's internal/top is merged.

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Options of a Source.
type Options struct {
	PinDir   string
	Policy   *policy.Policy
	Scope    *scope.Scope
	SynAlarm int
	MaxPeers int
}

// Source takes Snapshots. Not safe for concurrent use.
type Source struct {
	opts Options
	tr   *tracking.Tracker
	prev time.Time
}

// Open opens the pinned tracker (attaching one when none is pinned).
func Open(opts Options) (*Source, error) {
	if opts.Scope == nil {
		return nil, errors.New("open top: no scope")
	}
	if opts.Policy == nil {
		p := policy.Default()
		opts.Policy = &p
	}
	tr, err := tracking.Open(tracking.Options{PinDir: opts.PinDir, Watch: opts.Scope.Inodes(), Enter: opts.Scope.Do})
	if err != nil {
		return nil, fmt.Errorf("open top: %w", err)
	}
	return &Source{opts: opts, tr: tr}, nil
}

// Close closes the tracker's handle.
func (s *Source) Close() { s.tr.Close() }

// Snapshot reads the tracked sockets of the scope.
func (s *Source) Snapshot() (Snapshot, error) {
	names := s.opts.Scope.Names()
	var conns []conn.Conn
	if err := s.tr.Walk(0, func(c *conn.Conn) {
		if _, ok := names[c.NetNS]; ok {
			c.NetNSName = names[c.NetNS]
			conns = append(conns, *c)
		}
	}); err != nil {
		return Snapshot{}, err
	}
	ask := make([]*conn.Conn, len(conns))
	for i := range conns {
		ask[i] = &conns[i]
	}
	owners, err := s.tr.Owners(ask)
	if err != nil {
		return Snapshot{}, err
	}
	now, mono := time.Now(), conn.Now()
	snap := Snapshot{At: now, Namespaces: len(names)}
	if !s.prev.IsZero() {
		snap.Interval = now.Sub(s.prev)
	}
	s.prev = now
	counts := map[conn.State]int{}
	peers := map[netip.Addr]*Peer{}
	for i := range conns {
		c := &conns[i]
		if o := owners[c.Cookie]; len(o) > 0 {
			c.Owner = &o[0]
		}
		counts[c.State]++
		p := peers[c.Remote.Addr()]
		if p == nil {
			p = &Peer{Addr: c.Remote.Addr()}
			peers[p.Addr] = p
		}
		p.Conns++
		if !c.State.Closing() {
			continue
		}
		v := s.opts.Policy.Decide(c, mono)
		cand := Candidate{Conn: *c, Age: v.Age, Threshold: v.Threshold, Rule: v.Rule}
		if v.Threshold > 0 {
			cand.Left = v.Threshold - v.Age
		}
		if v.Hung {
			p.Hung++
		}
		if v.Skip != policy.NotSkipped {
			cand.Excluded = v.SkipDetail
		}
		snap.Candidates = append(snap.Candidates, cand)
	}
	for st := conn.Established; st <= conn.NewSynRecv; st++ {
		if counts[st] > 0 {
			snap.States = append(snap.States, StateCount{State: st, Count: counts[st]})
		}
	}
	for _, p := range peers {
		snap.Peers = append(snap.Peers, *p)
	}
	slices.SortFunc(snap.Peers, func(a, b Peer) int {
		return cmp.Or(cmp.Compare(b.Conns, a.Conns), cmp.Compare(b.Hung, a.Hung), a.Addr.Compare(b.Addr))
	})
	slices.SortFunc(snap.Candidates, func(a, b Candidate) int { return cmp.Compare(a.Left, b.Left) })
	return snap, nil
}

// WriteJSON writes snap as one JSON line.
func WriteJSON(w io.Writer, snap Snapshot) error {
	b, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteTable writes snap's states and candidates.
func WriteTable(w io.Writer, snap Snapshot, maxRows int) error {
	for _, s := range snap.States {
		fmt.Fprintf(w, "%-12s %d\n", s.State, s.Count)
	}
	for i, c := range snap.Candidates {
		if maxRows > 0 && i >= maxRows {
			break
		}
		fmt.Fprintf(w, "%s %s -> %s %s left %s\n", c.Conn.State, c.Conn.Local, c.Conn.Remote, c.Age, c.Left)
	}
	_, err := fmt.Fprintln(w)
	return err
}
