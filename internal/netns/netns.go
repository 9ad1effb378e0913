// Package netns is hck-bpf's one place for network namespaces: which one
// the calling thread is in, handles on others (by path, pid or inode),
// running a function inside one, which namespaces are still alive, and
// bringing a fresh namespace's loopback up. It is built on
// github.com/vishvananda/netns (handles) and github.com/vishvananda/netlink
// (links).
//
// A network namespace belongs to an OS thread, not to a goroutine. Do runs
// its function on a thread of its own, locked, and hands that thread back
// to the Go scheduler only once it is back in the namespace it came from;
// a thread that cannot be moved back dies with its goroutine.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NamedDir is where named namespaces are bind-mounted (`ip netns add`).
const NamedDir = "/run/netns"

// NS is an open handle on a network namespace: the namespace lives at
// least as long as the handle.
type NS struct {
	h     vns.NsHandle
	inode uint32
	path  string // where it was opened, for messages
}

func open(path string) (*NS, error) {
	h, err := vns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	ino, err := inodeOf(int(h))
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	return &NS{h: h, inode: ino, path: path}, nil
}

// FromPath opens the namespace at path: a bind mount (/run/netns/NAME) or
// a /proc/PID/ns/net link.
func FromPath(path string) (*NS, error) { return open(path) }

// FromPID opens the namespace process pid is in.
func FromPID(pid int) (*NS, error) { return open(fmt.Sprintf("/proc/%d/ns/net", pid)) }

// Current opens the namespace of the calling thread.
func Current() (*NS, error) { return open(threadPath()) }

// FromInode opens the namespace with inode ino, found among the named ones
// and those some thread is in; ErrGone when there is none.
func FromInode(ino uint32) (*NS, error) {
	var found string
	walk(func(path string, i uint32) bool {
		if i == ino {
			found = path
			return false
		}
		return true
	})
	if found == "" {
		return nil, fmt.Errorf("open network namespace %d: %w", ino, ErrGone)
	}
	ns, err := open(found)
	if err == nil && ns.inode != ino { // the thread or mount moved on meanwhile
		ns.Close()
		return nil, fmt.Errorf("open network namespace %d: %w", ino, ErrGone)
	}
	return ns, err
}

// Found is a network namespace Discover found: its inode, and the path
// that names it best (a bind mount's, else a process's /proc/PID/ns/net).
type Found struct {
	Inode uint32
	Path  string
	// Name is the bind mount's file name (an `ip netns` name, a Docker
	// sandbox, a CNI cni-… name), empty for a namespace only processes
	// are in.
	Name string
	// PID is the lowest pid of the processes in the namespace (in a
	// container's namespace its first process: its init, or the pod's
	// sandbox), 0 when none was seen (a namespace kept only by a bind
	// mount).
	PID int
}

// Discover lists every network namespace of the host that can be entered,
// each once: the bind mounts of MountDirs first (they name it), then the
// namespaces of every process's threads. Reading another user's
// /proc/PID/ns/net needs CAP_SYS_PTRACE: without it those are missed.
func Discover() []Found {
	var out []Found
	at := map[uint32]int{}
	walk(func(path string, ino uint32) bool {
		pid := pidOf(path)
		if i, ok := at[ino]; ok {
			if pid != 0 && (out[i].PID == 0 || pid < out[i].PID) {
				out[i].PID = pid
			}
			return true
		}
		f := Found{Inode: ino, Path: path, PID: pid}
		if pid == 0 {
			f.Name = filepath.Base(path)
		}
		at[ino] = len(out)
		out = append(out, f)
		return true
	})
	return out
}

// pidOf is the pid in /proc/PID/task/TID/ns/net, 0 for another path.
func pidOf(path string) int {
	rest, ok := strings.CutPrefix(path, "/proc/")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '/'), 0)])
	if err != nil {
		return 0
	}
	return pid
}

// Resolve opens the namespace a user named with --netns: a name in
// MountDirs (`ip netns` names, Docker sandboxes), a path (a bind mount,
// /proc/PID/ns/net), or a pid.
func Resolve(spec string) (*NS, error) {
	switch {
	case spec == "":
		return nil, errors.New("open network namespace: empty name")
	case strings.ContainsRune(spec, '/'):
		return FromPath(spec)
	}
	if pid, err := strconv.Atoi(spec); err == nil && pid > 0 {
		return FromPID(pid)
	}
	for _, pattern := range MountDirs {
		dirs, _ := filepath.Glob(pattern)
		for _, dir := range dirs {
			p := filepath.Join(dir, spec)
			if _, err := os.Stat(p); err == nil {
				return FromPath(p)
			}
		}
	}
	return nil, fmt.Errorf("open network namespace %q: no such name under %s, and not a path or a pid", spec, strings.Join(MountDirs, ", "))
}

// ErrGone: no process is in the namespace and nothing names it.
var ErrGone = errors.New("network namespace gone")

// Inode is the namespace's inode number: the id the kernel tracker records
// for each socket (struct net's ns.inum).
func (ns *NS) Inode() uint32 { return ns.inode }

// Path is where the handle was opened.
func (ns *NS) Path() string { return ns.path }

// Handle is the vishvananda/netns handle, for netlink.NewHandleAt and
// nl.GetNetlinkSocketAt. It is valid until Close.
func (ns *NS) Handle() vns.NsHandle { return ns.h }

func (ns *NS) String() string { return fmt.Sprintf("%d (%s)", ns.inode, ns.path) }

// Close releases the handle; the namespace lives on while anything else
// holds it (a process, a bind mount, a socket).
func (ns *NS) Close() error {
	if ns == nil || !ns.h.IsOpen() {
		return nil
	}
	return ns.h.Close()
}

// Do runs fn on an OS thread moved into the namespace, and waits for it.
// fn runs only once the thread is confirmed inside (its namespace's inode
// is ns's). Sockets fn creates belong to the namespace for good, whichever
// thread uses them later. The thread goes back to the Go scheduler only
// after it is moved back to the namespace it came from; otherwise (or when
// fn panics) it stays locked and dies with its goroutine. fn must not call
// runtime.UnlockOSThread.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if cur, err := CurrentInode(); err == nil && cur == ns.inode {
			// There already: no move, so no CAP_SYS_ADMIN needed. fn may
			// still move the thread: hand it back only if it is home.
			ferr := fn()
			if after, err := CurrentInode(); err == nil && after == ns.inode {
				runtime.UnlockOSThread()
			}
			errc <- ferr
			return
		}
		orig, err := vns.Get()
		if err != nil {
			runtime.UnlockOSThread() // it has not moved
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		// From here every early return leaves the thread locked, so that
		// the runtime ends it with this goroutine; it is moved back first
		// all the same, for the one thread the runtime cannot end (the
		// main thread is parked instead).
		back := func() error { return vns.Set(orig) }
		defer func() {
			if r := recover(); r != nil {
				_ = back()
				errc <- fmt.Errorf("in network namespace %s: panic: %v", ns, r)
			}
		}()
		if err := vns.Set(ns.h); err != nil {
			_ = back()
			errc <- fmt.Errorf("enter network namespace %s: %w", ns, err)
			return
		}
		if cur, err := CurrentInode(); err != nil || cur != ns.inode {
			_ = back()
			errc <- fmt.Errorf("enter network namespace %s: the thread is in %d (%v): refusing to run there", ns, cur, err)
			return
		}
		ferr := fn()
		if err := back(); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w (the thread ends)", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Dup returns a second handle on the namespace, which the caller closes.
func (ns *NS) Dup() (*NS, error) {
	fd, err := unix.FcntlInt(uintptr(ns.h), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("copy the handle of network namespace %s: %w", ns, err)
	}
	return &NS{h: vns.NsHandle(fd), inode: ns.inode, path: ns.path}, nil
}

// NetlinkSocket opens a netlink socket of protocol proto inside the
// namespace (vishvananda/netlink's nl.GetNetlinkSocketAt) and returns its
// descriptor: blocking, close-on-exec, owned by the caller. Call it on a
// locked thread (see OnThread): nl moves the thread into the namespace
// and back, unless it is there already (then no move, and no
// CAP_SYS_ADMIN, is needed), and unlocks it when done.
func (ns *NS) NetlinkSocket(proto int) (int, error) {
	target := ns.h
	if cur, err := CurrentInode(); err == nil && cur == ns.inode {
		target = vns.None()
	}
	s, err := nl.GetNetlinkSocketAt(target, vns.None(), proto)
	if err != nil {
		return -1, fmt.Errorf("open netlink socket in network namespace %s: %w", ns, err)
	}
	// nl's socket is non-blocking and registered with Go's poller (epoll):
	// every message the kernel queues would also run epoll's wake-up
	// callback. Keep a copy of the descriptor and close nl's, which takes
	// it out of epoll.
	fd, err := unix.FcntlInt(uintptr(s.GetFd()), unix.F_DUPFD_CLOEXEC, 0)
	s.Close()
	if err != nil {
		return -1, fmt.Errorf("copy netlink socket: %w", err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("make netlink socket blocking: %w", err)
	}
	return fd, nil
}

// OnThread runs fn on a new goroutine locked to its OS thread, and waits
// for it. fn may move the thread to another namespace if it moves it back:
// the thread is handed back to the Go scheduler only if it ends in the
// namespace it started in (or that could not be read); otherwise it stays
// locked and ends with its goroutine.
func OnThread(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		here, err := CurrentInode()
		fn()
		if err != nil {
			return
		}
		if after, err := CurrentInode(); err == nil && after == here {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

// New makes a new, empty network namespace (loopback down) and returns a
// handle on it; it lives while the handle, or anything made in it, does.
// The calling thread is not moved.
func New() (*NS, error) {
	return create(func() (vns.NsHandle, error) { return vns.New() })
}

// NewNamed is New, bind-mounted as NamedDir/name (as `ip netns add` does),
// so that other processes can enter it by path (nsenter --net=PATH) and it
// counts as alive (Live) while no process is in it. DeleteNamed removes
// the mount.
func NewNamed(name string) (*NS, error) {
	if name == "" || filepath.Base(name) != name {
		return nil, fmt.Errorf("create network namespace %q: want a plain name", name)
	}
	ns, err := create(func() (vns.NsHandle, error) { return vns.NewNamed(name) })
	if err != nil {
		return nil, err
	}
	ns.path = filepath.Join(NamedDir, name)
	return ns, nil
}

// DeleteNamed unmounts and removes NamedDir/name; the namespace lives on
// while anything holds it.
func DeleteNamed(name string) error {
	if err := vns.DeleteNamed(name); err != nil {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// create runs mk (which moves the calling thread into a new namespace and
// returns a handle on it) on a locked thread, then moves the thread back.
func create(mk func() (vns.NsHandle, error)) (*NS, error) {
	type result struct {
		ns  *NS
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vns.Get()
		if err != nil {
			ch <- result{err: fmt.Errorf("create network namespace: open own: %w", err)}
			return
		}
		defer orig.Close()
		h, err := mk()
		if err != nil {
			// The thread may or may not have moved: it ends (see Do).
			_ = vns.Set(orig)
			ch <- result{err: fmt.Errorf("create network namespace: %w", err)}
			return
		}
		ino, err := inodeOf(int(h))
		if err == nil && ino == inodeOrZero(int(orig)) {
			err = errors.New("still in the caller's namespace")
		}
		if err != nil {
			h.Close()
			_ = vns.Set(orig)
			ch <- result{err: fmt.Errorf("create network namespace: %w", err)}
			return
		}
		if err := vns.Set(orig); err != nil {
			h.Close()
			ch <- result{err: fmt.Errorf("create network namespace: move back: %w (the thread ends)", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ns: &NS{h: h, inode: ino, path: fmt.Sprintf("new namespace %d", ino)}}
	}()
	r := <-ch
	return r.ns, r.err
}

// LoopbackUp brings the namespace's lo up (a new namespace has it down),
// through a netlink socket opened inside it.
func (ns *NS) LoopbackUp() error {
	h, err := netlink.NewHandleAt(ns.h, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("bring lo up in network namespace %s: %w", ns, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("bring lo up in network namespace %s: %w", ns, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up in network namespace %s: %w", ns, err)
	}
	return nil
}

// CurrentInode is the inode of the calling thread's network namespace: the
// default scope of every sweep.
func CurrentInode() (uint32, error) {
	h, err := vns.Get()
	if err != nil {
		return 0, fmt.Errorf("open own network namespace: %w", err)
	}
	defer h.Close()
	ino, err := inodeOf(int(h))
	if err != nil {
		return 0, fmt.Errorf("read own network namespace: %w", err)
	}
	return ino, nil
}

// Live lists the network namespaces a process could still enter: the ones
// some thread is in, and the ones bind-mounted under NamedDir (or
// /var/run/netns). Any other namespace is gone (its sockets went with it,
// without an event) or nothing can reach it. Reading another user's
// /proc/PID/ns/net needs CAP_SYS_PTRACE: without it such a namespace may
// look gone.
func Live() map[uint32]bool {
	live := map[uint32]bool{}
	walk(func(_ string, ino uint32) bool {
		live[ino] = true
		return true
	})
	return live
}

// MountDirs are where namespaces are bind-mounted by name: ip netns (and
// CNI plugins, containerd's CRI, podman) under /run/netns, Docker under
// /run/docker/netns, rootless podman under /run/user/UID/netns.
var MountDirs = []string{NamedDir, "/var/run/netns", "/run/docker/netns", "/var/run/docker/netns", "/run/user/*/netns"}

// walk calls fn with every namespace bind-mounted in MountDirs, then every
// thread's namespace, until fn returns false.
func walk(fn func(path string, ino uint32) bool) {
	visit := func(path string) bool {
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil {
			return true
		}
		return fn(path, uint32(st.Ino))
	}
	for _, pattern := range MountDirs {
		dirs, _ := filepath.Glob(pattern)
		for _, dir := range dirs {
			names, _ := os.ReadDir(dir)
			for _, n := range names {
				if !n.Type().IsRegular() && n.Type()&os.ModeType != 0 {
					continue // a namespace mount is a file
				}
				if !visit(filepath.Join(dir, n.Name())) {
					return
				}
			}
		}
	}
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	for _, p := range tasks {
		if !visit(p) {
			return
		}
	}
}

func threadPath() string {
	return fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
}

func inodeOf(fd int) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return uint32(st.Ino), nil
}

func inodeOrZero(fd int) uint32 {
	ino, _ := inodeOf(fd)
	return ino
}
