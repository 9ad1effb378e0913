package notify

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// Bounds of one message.
const (
	// TopN is how many peers and processes a message names.
	TopN = 5
	// Examples is how many connections a message lists one by one.
	Examples = 10
	// maxKeys bounds the distinct peers (and processes) a summary counts
	// one by one; more are counted as others: a window's memory is bounded
	// whatever was destroyed in it.
	maxKeys = 4096
)

// kill is what a notification needs of one destroyed socket, copied from
// the sweep's report.
type kill struct {
	state         conn.State
	local, remote netip.AddrPort
	comm          string // the first owner's, "" when none is known
	rule          string
	netns         string
}

// proc is one owner --kill-process ended.
type proc struct {
	comm    string
	pid     int
	outcome sweep.ProcessOutcome
}

// collect copies from r what a notification needs: the sockets destroyed
// and the processes --kill-process ended.
func collect(r *sweep.Report, ks []kill, ps []proc) ([]kill, []proc) {
	for i := range r.Items {
		it := &r.Items[i]
		if it.Outcome == sweep.Destroyed {
			k := kill{state: it.Conn.State, local: it.Conn.Local, remote: it.Conn.Remote,
				rule: it.Verdict.Rule, netns: it.Conn.NetNSName}
			if it.Conn.Owner != nil {
				k.comm = it.Conn.Owner.Comm
			}
			ks = append(ks, k)
		}
		for _, p := range it.Processes {
			if p.Outcome == sweep.ProcessTerminated || p.Outcome == sweep.ProcessKilled {
				ps = append(ps, proc{comm: p.Owner.Comm, pid: p.Owner.PID, outcome: p.Outcome})
			}
		}
	}
	return ks, ps
}

// summary is what one window (or several merged) saw.
type summary struct {
	start, end time.Time
	destroyed  int
	byState    map[conn.State]int
	byRule     map[string]int
	peers      counter
	comms      counter
	examples   []kill
	terminated int // processes ended by SIGTERM
	killed     int // processes ended by SIGKILL
	procComms  counter
	// dropped counts connections left out because the queue was full.
	dropped int
}

func newSummary(start time.Time) *summary {
	return &summary{start: start, end: start, byState: map[conn.State]int{}, byRule: map[string]int{},
		peers: counter{}, comms: counter{}, procComms: counter{}}
}

func (s *summary) empty() bool {
	return s.destroyed == 0 && s.terminated == 0 && s.killed == 0 && s.dropped == 0
}

func (s *summary) addKill(k kill) {
	s.destroyed++
	s.byState[k.state]++
	s.byRule[k.rule]++
	s.peers.add(k.remote.Addr().Unmap().String(), 1)
	comm := k.comm
	if comm == "" {
		comm = "-"
	}
	s.comms.add(comm, 1)
	if len(s.examples) < Examples {
		s.examples = append(s.examples, k)
	}
}

func (s *summary) addProc(p proc) {
	if p.outcome == sweep.ProcessKilled {
		s.killed++
	} else {
		s.terminated++
	}
	s.procComms.add(p.comm, 1)
}

// merge adds o, a later window, to s.
func (s *summary) merge(o *summary) {
	if o.start.Before(s.start) {
		s.start = o.start
	}
	if o.end.After(s.end) {
		s.end = o.end
	}
	s.destroyed += o.destroyed
	for k, v := range o.byState {
		s.byState[k] += v
	}
	for k, v := range o.byRule {
		s.byRule[k] += v
	}
	s.peers.merge(o.peers)
	s.comms.merge(o.comms)
	s.procComms.merge(o.procComms)
	for _, e := range o.examples {
		if len(s.examples) < Examples {
			s.examples = append(s.examples, e)
		}
	}
	s.terminated += o.terminated
	s.killed += o.killed
	s.dropped += o.dropped
}

// others is the key of what a counter counts beyond maxKeys.
const others = "others"

// counter counts by key, at most maxKeys of them.
type counter map[string]int

func (c counter) add(k string, n int) {
	if _, ok := c[k]; !ok && len(c) >= maxKeys {
		k = others
	}
	c[k] += n
}

func (c counter) merge(o counter) {
	for k, v := range o {
		c.add(k, v)
	}
}

// top is the n largest counts, the largest first, ties by key.
func (c counter) top(n int) []Count {
	out := make([]Count, 0, len(c))
	for k, v := range c {
		out = append(out, Count{Name: k, Count: v})
	}
	slices.SortFunc(out, func(a, b Count) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out[:min(n, len(out))]
}
