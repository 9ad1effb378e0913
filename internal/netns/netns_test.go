package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (run: sudo make test)")
	}
}

// TestDo: fn runs inside the namespace, and the caller's thread (and every
// thread handed back to the scheduler) stays where it was.
func TestDo(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine, err := CurrentInode()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if ns.Inode() == mine || ns.Inode() == 0 {
		t.Fatalf("New: inode %d, the caller's is %d", ns.Inode(), mine)
	}
	if now, _ := CurrentInode(); now != mine {
		t.Fatalf("New moved the caller's thread from %d to %d", mine, now)
	}
	var inside uint32
	var fd int
	if err := ns.Do(func() error {
		var err error
		if inside, err = CurrentInode(); err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if inside != ns.Inode() {
		t.Errorf("fn ran in %d, want %d", inside, ns.Inode())
	}
	// The socket belongs to the namespace it was made in.
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		t.Fatal(err)
	}
	if ino, _ := inodeOf(nsfd); ino != ns.Inode() {
		t.Errorf("socket made in Do is in %d, want %d", ino, ns.Inode())
	}
	unix.Close(nsfd)
	if now, _ := CurrentInode(); now != mine {
		t.Errorf("Do moved the caller's thread from %d to %d", mine, now)
	}
	// Many goroutines at once: none ends up in the namespace.
	for range 20 {
		if err := ns.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if foreign := threadsIn(t, ns.Inode()); foreign > 0 {
		t.Errorf("%d threads of this process are still in the namespace", foreign)
	}
}

// threadsIn counts this process's threads in namespace ino.
func threadsIn(t *testing.T, ino uint32) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		var st unix.Stat_t
		if unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st) == nil && uint32(st.Ino) == ino {
			n++
		}
	}
	return n
}

// TestDoErrorAndPanic: fn's error comes back; a panic is an error, not a
// crash, and its thread is never handed back (it ends).
func TestDoErrorAndPanic(t *testing.T) {
	requireRoot(t)
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	boom := errors.New("boom")
	if err := ns.Do(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Do = %v, want fn's error", err)
	}
	if err := ns.Do(func() error { panic("oops") }); err == nil || !strings.Contains(err.Error(), "oops") {
		t.Errorf("Do of a panicking fn = %v, want an error naming the panic", err)
	}
}

// TestNamed: a named namespace can be found by path, pid-less inode and
// Live; loopback comes up through netlink; deleting the name takes it out
// of Live.
func TestNamed(t *testing.T) {
	requireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "hcknetns-" + hex.EncodeToString(b)
	ns, err := NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	defer func() {
		ns.Close()
		if !deleted {
			_ = DeleteNamed(name)
		}
	}()
	if ns.Path() != NamedDir+"/"+name {
		t.Errorf("Path = %s", ns.Path())
	}
	if !Live()[ns.Inode()] {
		t.Errorf("named namespace %d not in Live", ns.Inode())
	}
	byPath, err := FromPath(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	byPath.Close()
	byInode, err := FromInode(ns.Inode())
	if err != nil {
		t.Fatal(err)
	}
	byInode.Close()
	if byPath.Inode() != ns.Inode() || byInode.Inode() != ns.Inode() {
		t.Errorf("by path %d, by inode %d, want %d", byPath.Inode(), byInode.Inode(), ns.Inode())
	}
	self, err := FromPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self.Close()
	if mine, _ := CurrentInode(); self.Inode() != mine {
		t.Errorf("FromPID(self) = %d, want %d", self.Inode(), mine)
	}

	if err := ns.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	var flags uint32
	if err := ns.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		flags = lo.Attrs().RawFlags
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if flags&unix.IFF_UP == 0 {
		t.Errorf("lo flags %#x: not up", flags)
	}

	if err := DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	deleted = true
	if Live()[ns.Inode()] {
		t.Errorf("namespace %d still in Live with no name and no thread", ns.Inode())
	}
	if _, err := FromInode(ns.Inode()); !errors.Is(err, ErrGone) {
		t.Errorf("FromInode of an unnamed, empty namespace = %v, want ErrGone", err)
	}
}

// TestDiscoverAndResolve: a namespace bind-mounted by name and one only a
// process is in are both discovered, once each, by inode; --netns's forms
// (a name, a path, a pid) open the same namespaces.
func TestDiscoverAndResolve(t *testing.T) {
	requireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "hcknetns-" + hex.EncodeToString(b)
	named, err := NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { named.Close(); _ = DeleteNamed(name) }()
	// A process alone in a namespace of its own, with no name.
	anon, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "--", "sleep", "60")
	f := os.NewFile(uintptr(anon.Handle()), "netns")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Give nsenter a moment to enter and exec.
	var found map[uint32][]Found
	for range 100 {
		found = map[uint32][]Found{}
		for _, f := range Discover() {
			found[f.Inode] = append(found[f.Inode], f)
		}
		if len(found[anon.Inode()]) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for ino, fs := range found {
		if len(fs) != 1 {
			t.Errorf("namespace %d discovered %d times: %+v", ino, len(fs), fs)
		}
	}
	if fs := found[named.Inode()]; len(fs) != 1 || fs[0].Name != name || fs[0].Path != NamedDir+"/"+name {
		t.Errorf("named namespace %d: discovered as %+v, want name %s", named.Inode(), fs, name)
	}
	if fs := found[anon.Inode()]; len(fs) != 1 || fs[0].PID != cmd.Process.Pid || fs[0].Name != "" {
		t.Errorf("unnamed namespace %d: discovered as %+v, want pid %d", anon.Inode(), fs, cmd.Process.Pid)
	}
	mine, _ := CurrentInode()
	for spec, want := range map[string]uint32{
		name:                          named.Inode(),
		NamedDir + "/" + name:         named.Inode(),
		strconv.Itoa(cmd.Process.Pid): anon.Inode(),
		strconv.Itoa(os.Getpid()):     mine,
		"/proc/self/ns/net":           mine,
	} {
		ns, err := Resolve(spec)
		if err != nil {
			t.Errorf("Resolve(%q): %v", spec, err)
			continue
		}
		if ns.Inode() != want {
			t.Errorf("Resolve(%q) = %d, want %d", spec, ns.Inode(), want)
		}
		ns.Close()
	}
	for _, bad := range []string{"", "hcknetns-no-such-name", "/no/such/path", "-1"} {
		if ns, err := Resolve(bad); err == nil {
			ns.Close()
			t.Errorf("Resolve(%q): no error", bad)
		}
	}
}
