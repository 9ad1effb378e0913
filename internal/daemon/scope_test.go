package daemon_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/daemon"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/scope"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// Privileged tests of the service over several namespaces, as `run
// --all-netns` runs it: a Scope found by discovery (here, Discover's
// namespaces that the test made, so nothing else of the host is ever in
// scope), a tracker walking each from inside it, and a pool of
// destroyers, one per namespace.

// discovery is a Scope's discover function that sees only the test's
// namespaces; hook, when set, runs after each discovery.
type discovery struct {
	mu   sync.Mutex
	mine map[uint32]bool
	hook func()
}

func (d *discovery) add(ns ...*testnet.NS) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range ns {
		d.mine[n.Inode()] = true
	}
}

func (d *discovery) setHook(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hook = fn
}

func (d *discovery) discover() []netns.Found {
	var out []netns.Found
	all := netns.Discover()
	d.mu.Lock()
	for _, f := range all {
		if d.mine[f.Inode] {
			out = append(out, f)
		}
	}
	hook := d.hook
	d.hook = nil
	d.mu.Unlock()
	if hook != nil {
		hook()
	}
	return out
}

// startAll runs the service from home over every namespace d discovers,
// with the given backstop, until the test ends; it returns once the
// first sweep is done.
func startAll(t *testing.T, home *testnet.NS, d *discovery, pol sweep.Options, backstop time.Duration) *service {
	t.Helper()
	sc, err := scope.NewAll(d.discover)
	if err != nil {
		t.Fatal(err)
	}
	pin := testnet.PinDir(t)
	t.Cleanup(func() {
		if err := tracking.Unload(pin); err != nil {
			t.Error(err)
		}
	})
	tr, err := tracking.Open(tracking.Options{PinDir: pin, Watch: sc.Inodes(), Enter: sc.Do})
	if err != nil {
		t.Fatal(err)
	}
	s := &service{ns: home, tr: tr, pin: pin}
	var pool *destroy.Pool
	home.MustDo(func() error { pool, err = destroy.NewPool(sc.Dup); return err })
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := daemon.Config{
		Sweep:    pol,
		Log:      zerolog.New(s).Level(zerolog.DebugLevel),
		Ready:    func() { close(ready) },
		Backstop: backstop,
		Swept: func(r *sweep.Report) {
			s.mu.Lock()
			s.reps = append(s.reps, *r)
			s.at = append(s.at, conn.Now())
			s.mu.Unlock()
		},
		Scope:  sc,
		Closed: pool.Close,
	}
	s.launch(t, cancel, done, ready,
		func() error {
			return home.Do(func() error {
				return daemon.Run(ctx, tr, sweep.Live(daemon.Audited(pool, cfg.Log, func() {}, true)), cfg)
			})
		},
		func() { pool.CloseAll(); tr.Close(); sc.Close() })
	return s
}

// awaitDestroyed waits for the service to destroy the socket, and returns
// its item.
func awaitDestroyed(t *testing.T, s *service, sock *testnet.Sock, within time.Duration) *sweep.Item {
	t.Helper()
	var it *sweep.Item
	if !waitFor(within, func() bool { it = s.destroyed(sock.Cookie); return it != nil }) {
		t.Fatalf("%s not destroyed within %v; the service said:\n%s", sock, within, s.logged())
	}
	return it
}

// TestEveryNamespace: one service over three namespaces destroys a hung
// socket in each on its threshold (one older than the tracker, found by
// the walk inside its namespace, and new ones), from inside its own
// namespace, naming it; a namespace outside the scope is not touched.
func TestEveryNamespace(t *testing.T) {
	home, a, b, outside := testnet.New(t), testnet.New(t), testnet.New(t), testnet.New(t)
	old, _ := a.CloseWait(t, "tcp4") // before the tracker
	d := &discovery{mine: map[uint32]bool{}}
	d.add(home, a, b)
	pol := thresholds(time.Hour)
	pol.Thresholds.CloseWait = time.Second
	s := startAll(t, home, d, sweep.Options{Policy: &pol}, time.Hour)
	out, _ := outside.CloseWait(t, "tcp4")
	for _, ns := range []*testnet.NS{home, a, b} {
		for _, fam := range testnet.Families {
			srv, _ := ns.CloseWait(t, fam)
			it := awaitDestroyed(t, s, srv, 10*time.Second)
			if it.Conn.NetNS != ns.Inode() || it.Conn.NetNSName != ns.Name || it.Verdict.Age < time.Second {
				t.Errorf("%s destroyed as %d (%q) aged %v; want in %d (%s) aged 1s or more",
					srv, it.Conn.NetNS, it.Conn.NetNSName, it.Verdict.Age, ns.Inode(), ns.Name)
			}
			ns.Await(t, srv.Gone())
		}
	}
	if it := awaitDestroyed(t, s, old, 10*time.Second); it.Conn.NetNS != a.Inode() || it.Conn.Exact {
		t.Errorf("the socket older than the tracker: destroyed as %+v, want in %d with a lower-bound age", it.Conn, a.Inode())
	}
	if st, ok := out.State(); !ok || st != conn.CloseWait {
		t.Errorf("the socket outside the scope is %v (%v), want still CLOSE_WAIT", st, ok)
	}
	for _, r := range s.reports() {
		if r.Namespaces != 3 || r.ReconcileErr != nil || r.Failed > 0 {
			t.Errorf("a sweep over %d namespaces: walk error %v, %d failed", r.Namespaces, r.ReconcileErr, r.Failed)
		}
	}
	if !strings.Contains(s.logged(), fmt.Sprintf(`"netns":%d,"netns_name":%q`, b.Inode(), b.Name)) {
		t.Errorf("no line names namespace %d (%s):\n%s", b.Inode(), b.Name, s.logged())
	}
}

// fdsIn counts this process's descriptors that hold network namespace
// ino: handles on it, and sockets that live in it.
func fdsIn(t *testing.T, ino uint32) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var nsfs unix.Stat_t // where namespace handles live
	if err := unix.Stat("/proc/self/ns/net", &nsfs); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		path := "/proc/self/fd/" + e.Name()
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil && st.Dev == nsfs.Dev && uint32(st.Ino) == ino {
			n++ // a handle (opened by any path: a bind mount, /proc)
			continue
		}
		target, err := os.Readlink(path)
		if err != nil {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
		if err != nil {
			continue
		}
		var sk unix.Stat_t
		if unix.Fstat(nsfd, &sk) == nil && uint32(sk.Ino) == ino {
			n++
		}
		unix.Close(nsfd)
	}
	return n
}

// TestNamespacesComeAndGo: a namespace made after the service started
// joins its scope at the next backstop walk (1 s here) and its hung socket
// dies; one deleted while a sweep runs (between its discovery and its
// walk and destroys) is no error, leaves the scope at the next backstop,
// and every descriptor the service held on it (its handle, its
// destroyer's handle and netlink socket) is closed.
func TestNamespacesComeAndGo(t *testing.T) {
	home, doomed := testnet.New(t), testnet.New(t)
	d := &discovery{mine: map[uint32]bool{}}
	d.add(home, doomed)
	pol := thresholds(time.Hour)
	pol.Thresholds.CloseWait = time.Second
	doomed.Dump()                      // the test's own sock_diag handle there, before counting
	before := fdsIn(t, doomed.Inode()) // the test's own
	s := startAll(t, home, d, sweep.Options{Policy: &pol}, time.Second)

	srv, _ := doomed.CloseWait(t, "tcp4")
	awaitDestroyed(t, s, srv, 10*time.Second)
	held := fdsIn(t, doomed.Inode())
	// The pair the test made there, and the service's three: the scope's
	// handle, the destroyer's handle and its netlink socket.
	if held != before+2+3 {
		t.Fatalf("%d descriptors in the namespace with the service's destroyer open, %d before; want %d", held, before, before+5)
	}

	late := testnet.New(t)
	d.add(late)
	lsrv, _ := late.CloseWait(t, "tcp6")
	it := awaitDestroyed(t, s, lsrv, 15*time.Second)
	if it.Conn.NetNS != late.Inode() || it.Conn.NetNSName != late.Name {
		t.Errorf("the late namespace's socket destroyed as %d (%q), want %d (%s)", it.Conn.NetNS, it.Conn.NetNSName, late.Inode(), late.Name)
	}
	if !strings.Contains(s.logged(), fmt.Sprintf("Network namespace %d (%s) joined the scope", late.Inode(), late.Name)) {
		t.Errorf("no line says namespace %d joined:\n%s", late.Inode(), s.logged())
	}

	// A hung socket due now in the doomed namespace; the next discovery
	// still finds the namespace, which is deleted right after: the sweep
	// walks it and destroys in it all the same.
	doomed.CloseWait(t, "tcp4")
	deleted := make(chan struct{})
	sweepsBefore := len(s.reports())
	d.setHook(func() {
		if err := netns.DeleteNamed(doomed.Name); err != nil {
			t.Error(err)
		}
		close(deleted)
	})
	select {
	case <-deleted:
	case <-time.After(10 * time.Second):
		t.Fatal("no discovery within 10 s with a 1 s backstop")
	}
	if !waitFor(15*time.Second, func() bool {
		return strings.Contains(s.logged(), fmt.Sprintf("Network namespace %d left the scope", doomed.Inode()))
	}) {
		t.Fatalf("the deleted namespace never left the scope:\n%s", s.logged())
	}
	for i, r := range s.reports()[sweepsBefore:] {
		if r.ReconcileErr != nil || r.Failed > 0 || r.OwnerErr != nil {
			t.Errorf("sweep %d after the deletion: walk error %v, %d failed, owners %v", i, r.ReconcileErr, r.Failed, r.OwnerErr)
		}
	}
	if strings.Contains(s.logged(), "Sweep failed") {
		t.Errorf("a sweep failed:\n%s", s.logged())
	}
	if n := fdsIn(t, doomed.Inode()); n != before+4 { // the two sockets of each pair the test made since
		t.Errorf("%d descriptors in the deleted namespace after it left the scope, want the test's %d: the service leaked %d",
			n, before+4, n-before-4)
	}
}
