// Package scope is the set of network namespaces a command works on: the
// one it runs in (the default), the ones --netns names, or every one of
// the host (--all-netns), found again while the service runs. Each is
// held by a handle, so it can be entered, and has a readable name.
package scope

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/cgroup"
	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// Name is a namespace's readable name: the Kubernetes pod or the
// container its first process runs in, read from that process's cgroup
// path ("pod:<uid>", "container:<id, 12 hex>"), else its bind mount's
// name (an `ip netns` name), else "".
func Name(f netns.Found) string {
	if f.PID > 0 {
		if in, err := cgroup.Read(f.PID); err == nil {
			if name := cgroupName(in); name != "" {
				return name
			}
		}
	}
	return f.Name
}

func cgroupName(in cgroup.Info) string {
	switch {
	case in.PodUID != "":
		return "pod:" + in.PodUID
	case in.ContainerID != "":
		return "container:" + in.ContainerID[:12]
	}
	return ""
}

// Scope is the set of network namespaces a command works on, each with a
// handle held open (so it can be entered) and its readable name: the one
// the command runs in (Own), the ones --netns names (Resolve), or every
// namespace of the host (All), found again by Refresh.
//
// A handle keeps its namespace alive: Refresh closes the handles of the
// namespaces nothing else holds any more (no process is in them, no bind
// mount names them), which then go with their sockets.
type Scope struct {
	mu       sync.RWMutex
	all      bool
	discover func() []netns.Found // every namespace only
	members  map[uint32]*member
}

type member struct {
	ns   *netns.NS
	name string
}

// Own is the calling thread's namespace alone: every command's default.
// It is named, as discovery would, after its first process: pid 1 when
// pid 1 is in it (the host, or a container's own pid namespace), else
// this process (hck-bpf in a pod of its own). A DaemonSet's hck-bpf on the
// host's network is not the host's namesake.
func Own() (*Scope, error) { return own(1) }

// own is Own naming the namespace after process first when first is in
// it.
func own(first int) (*Scope, error) {
	ns, err := netns.Current()
	if err != nil {
		return nil, err
	}
	f := netns.Found{Inode: ns.Inode(), PID: os.Getpid(), Name: mountName(ns.Inode())}
	var st unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", first), &st) == nil && uint32(st.Ino) == ns.Inode() {
		f.PID = first
	}
	return &Scope{members: map[uint32]*member{ns.Inode(): {ns: ns, name: Name(f)}}}, nil
}

// Resolve opens the namespaces --netns names (netns.Resolve: a name, a
// path, a pid), each once, named as discovery names them. One that cannot
// be opened is an error naming it.
func Resolve(specs []string) (*Scope, error) {
	if len(specs) == 0 {
		return nil, errors.New("open network namespaces: none named")
	}
	s := &Scope{members: map[uint32]*member{}}
	for _, spec := range specs {
		ns, err := netns.Resolve(spec)
		if err != nil {
			s.Close()
			return nil, err
		}
		if _, ok := s.members[ns.Inode()]; ok {
			ns.Close()
			continue
		}
		s.members[ns.Inode()] = &member{ns: ns}
	}
	found := map[uint32]netns.Found{}
	for _, f := range netns.Discover() {
		found[f.Inode] = f
	}
	for ino, m := range s.members {
		f, ok := found[ino]
		if !ok {
			f = netns.Found{Inode: ino, Name: mountName(ino)}
		}
		m.name = Name(f)
	}
	return s, nil
}

// All is every network namespace of the host that netns.Discover finds.
func All() (*Scope, error) { return NewAll(netns.Discover) }

// NewAll is All finding namespaces with discover (tests give one that
// keeps only their own namespaces).
func NewAll(discover func() []netns.Found) (*Scope, error) {
	s := &Scope{all: true, discover: discover, members: map[uint32]*member{}}
	s.Refresh()
	if len(s.members) == 0 {
		return nil, errors.New("discover network namespaces: found none that can be opened")
	}
	return s, nil
}

// All reports whether the scope is every namespace of the host.
func (s *Scope) All() bool { return s.all }

// Len is how many namespaces the scope holds.
func (s *Scope) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.members)
}

// Inodes lists the scope's namespaces, sorted.
func (s *Scope) Inodes() []uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]uint32, 0, len(s.members))
	for ino := range s.members {
		out = append(out, ino)
	}
	slices.Sort(out)
	return out
}

// Names maps each namespace of the scope to its readable name ("" when it
// has none): a copy.
func (s *Scope) Names() map[uint32]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[uint32]string, len(s.members))
	for ino, m := range s.members {
		out[ino] = m.name
	}
	return out
}

// Name is the readable name of namespace ino ("" when none, or not in the
// scope).
func (s *Scope) Name(ino uint32) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if m, ok := s.members[ino]; ok {
		return m.name
	}
	return ""
}

// Do runs fn inside namespace ino (netns.NS.Do); netns.ErrGone when the
// scope does not hold it (any more).
func (s *Scope) Do(ino uint32, fn func() error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.members[ino]
	if !ok {
		return fmt.Errorf("enter network namespace %d: %w", ino, netns.ErrGone)
	}
	return m.ns.Do(fn)
}

// Dup returns a handle of its own on namespace ino, which the caller
// closes; netns.ErrGone when the scope does not hold it (any more).
func (s *Scope) Dup(ino uint32) (*netns.NS, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.members[ino]
	if !ok {
		return nil, fmt.Errorf("open network namespace %d: %w", ino, netns.ErrGone)
	}
	return m.ns.Dup()
}

// liveNetNS lists the live namespaces (tests replace it).
var liveNetNS = netns.Live

// othersThanOwn reports whether the scope has a namespace other than the
// calling thread's (or that could not be read).
func (s *Scope) othersThanOwn() bool {
	here, err := netns.CurrentInode()
	if err != nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ino := range s.members {
		if ino != here {
			return true
		}
	}
	return false
}

// Refresh brings the scope up to date and returns the namespaces it
// added and removed. Every namespace: what discovery finds now is the
// scope, new ones opened, names read again. Chosen ones: those nothing
// holds any more (netns.Live) leave it. A namespace leaving the scope has
// its handle closed.
func (s *Scope) Refresh() (added, removed []uint32) {
	var found []netns.Found
	var live map[uint32]bool
	if s.all {
		found = s.discover()
	} else if s.othersThanOwn() {
		live = liveNetNS()
	} else {
		// The service's own namespace alone: it lives while the
		// service does. Listing the live ones is a walk of every
		// thread in /proc, the most of an idle backstop's cost.
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.all {
		for ino, m := range s.members {
			if !live[ino] {
				m.ns.Close()
				delete(s.members, ino)
				removed = append(removed, ino)
			}
		}
		slices.Sort(removed)
		return nil, removed
	}
	seen := make(map[uint32]bool, len(found))
	for _, f := range found {
		m, ok := s.members[f.Inode]
		if !ok {
			ns, err := netns.FromPath(f.Path)
			if err != nil {
				continue // gone meanwhile, or not ours to enter
			}
			if ns.Inode() != f.Inode { // the process or mount moved on
				ns.Close()
				continue
			}
			m = &member{ns: ns}
			s.members[f.Inode] = m
			added = append(added, f.Inode)
		}
		seen[f.Inode] = true
		m.name = Name(f)
	}
	for ino, m := range s.members {
		if !seen[ino] {
			m.ns.Close()
			delete(s.members, ino)
			removed = append(removed, ino)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}

// Close closes every handle; the scope is empty afterwards.
func (s *Scope) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ino, m := range s.members {
		m.ns.Close()
		delete(s.members, ino)
	}
}

// mountName is the name of a bind mount of namespace ino in
// netns.MountDirs, "" when none.
func mountName(ino uint32) string {
	for _, pattern := range netns.MountDirs {
		dirs, _ := filepath.Glob(pattern)
		for _, dir := range dirs {
			names, _ := os.ReadDir(dir)
			for _, n := range names {
				var st unix.Stat_t
				if unix.Stat(filepath.Join(dir, n.Name()), &st) == nil && uint32(st.Ino) == ino {
					return n.Name()
				}
			}
		}
	}
	return ""
}
