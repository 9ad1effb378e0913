package destroy

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// Pool holds one Destroyer per network namespace: a sweep's Killer and
// Lookup over several namespaces. It sends each socket to the Destroyer of
// its own namespace (conn.Conn.NetNS), so every lookup and SOCK_DESTROY
// runs inside the socket's namespace. The calling thread's namespace's
// Destroyer is opened by NewPool (destroy.New); another namespace's on its
// first socket (NewAt), kept for the next sweeps, and closed by Close when
// the namespace leaves the scope.
type Pool struct {
	mu   sync.Mutex
	own  *Destroyer
	open func(ns uint32) (*netns.NS, error)
	ds   map[uint32]*Destroyer
}

// NewPool opens the calling thread's namespace's Destroyer; open gives a
// handle (the caller's to close) on any other namespace a socket names,
// wrapping netns.ErrGone when it is gone (scope.Scope.Dup).
func NewPool(open func(ns uint32) (*netns.NS, error)) (*Pool, error) {
	own, err := New()
	if err != nil {
		return nil, err
	}
	return &Pool{own: own, open: open, ds: map[uint32]*Destroyer{own.Netns(): own}}, nil
}

// Kill destroys each socket from inside its namespace (sweep.Killer). A
// socket of a namespace that is gone is sweep.ErrGone: its sockets went
// with it.
func (p *Pool) Kill(conns []*conn.Conn) []error { return p.each(conns, (*Destroyer).Kill) }

// Lookup looks each socket up from inside its namespace (sweep.Lookup).
func (p *Pool) Lookup(conns []*conn.Conn) []error { return p.each(conns, (*Destroyer).Lookup) }

func (p *Pool) each(conns []*conn.Conn, fn func(*Destroyer, []*conn.Conn) []error) []error {
	errs := make([]error, len(conns))
	// One namespace, the common case: no regrouping.
	var ns uint32
	one, seen := true, false
	for _, c := range conns {
		switch {
		case c == nil:
		case !seen:
			ns, seen = c.NetNS, true
		case c.NetNS != ns:
			one = false
		}
	}
	if one {
		d, err := p.get(ns)
		if err != nil {
			for i, c := range conns {
				errs[i] = failed(c, err)
			}
			return errs
		}
		return fn(d, conns)
	}
	var order []uint32
	idx := map[uint32][]int{}
	for i, c := range conns {
		var ns uint32
		if c != nil {
			ns = c.NetNS
		}
		if _, ok := idx[ns]; !ok {
			order = append(order, ns)
		}
		idx[ns] = append(idx[ns], i)
	}
	for _, ns := range order {
		is := idx[ns]
		d, err := p.get(ns)
		if err != nil {
			for _, i := range is {
				errs[i] = failed(conns[i], err)
			}
			continue
		}
		group := make([]*conn.Conn, len(is))
		for k, i := range is {
			group[k] = conns[i]
		}
		for k, e := range fn(d, group) {
			errs[is[k]] = e
		}
	}
	return errs
}

// failed is the error of c when its namespace's Destroyer could not be had.
func failed(c *conn.Conn, err error) error {
	if errors.Is(err, netns.ErrGone) {
		return sweep.ErrGone
	}
	if c == nil {
		return err
	}
	return fmt.Errorf("destroy %s: %w", c, err)
}

// get is namespace ns's Destroyer (0: the calling thread's at NewPool),
// opened on first need.
func (p *Pool) get(ns uint32) (*Destroyer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.own == nil {
		return nil, ErrClosed
	}
	if ns == 0 {
		return p.own, nil
	}
	if d, ok := p.ds[ns]; ok {
		return d, nil
	}
	if p.open == nil {
		return nil, fmt.Errorf("open network namespace %d: %w", ns, netns.ErrGone)
	}
	h, err := p.open(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	d, err := NewAt(h)
	if err != nil {
		return nil, err
	}
	p.ds[ns] = d
	return d, nil
}

// Len is how many Destroyers are open.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ds)
}

// Close closes namespace ns's Destroyer, if one is open: its namespace
// left the scope. The calling thread's stays until CloseAll.
func (p *Pool) Close(ns uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.ds[ns]; ok && d != p.own {
		d.Close()
		delete(p.ds, ns)
	}
}

// CloseAll closes every Destroyer; later calls fail with ErrClosed.
func (p *Pool) CloseAll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for ns, d := range p.ds {
		errs = append(errs, d.Close())
		delete(p.ds, ns)
	}
	p.own = nil
	return errors.Join(errs...)
}
