package scope

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and cgroups (run: sudo make test)")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// named makes a bind-mounted namespace, removed when the test ends.
func named(t *testing.T) (*netns.NS, string) {
	t.Helper()
	name := "hckscope-" + randHex(4)
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(); _ = netns.DeleteNamed(name) })
	return ns, name
}

// cgroupRoot is a writable cgroup hierarchy: the unified one, else the
// named systemd one (no controller: moving a process there changes
// nothing it may use).
func cgroupRoot(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var v1 string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+3 >= len(fields) || fields[3] != "/" {
			continue
		}
		switch {
		case fields[sep+1] == "cgroup2":
			return fields[4]
		case fields[sep+1] == "cgroup" && strings.Contains(fields[sep+3], "name=systemd") && v1 == "":
			v1 = fields[4]
		}
	}
	if v1 == "" {
		t.Fatal("no cgroup2 and no named cgroup v1 hierarchy mounted: cannot give a test process a container's cgroup")
	}
	return v1
}

// inNamespace starts a process alone in a new unnamed namespace, in a
// cgroup whose path ends in cgPath (made for the test; "" keeps the test's
// own), and returns the namespace and the pid. Both end with the test.
func inNamespace(t *testing.T, cgPath string) (*netns.NS, int) {
	t.Helper()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "--", "sleep", "120")
	fd, err := unix.FcntlInt(uintptr(ns.Handle()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "netns")
	cmd.ExtraFiles = []*os.File{f}
	err = cmd.Start()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	for i := 0; ; i++ { // until nsenter has entered (and exec'd)
		if ino, err := inodeOfPath("/proc/" + strconv.Itoa(pid) + "/ns/net"); err == nil && ino == ns.Inode() {
			break
		}
		if i == 200 {
			t.Fatalf("pid %d never entered namespace %d", pid, ns.Inode())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cgPath != "" {
		top := filepath.Join(cgroupRoot(t), "hckscope-"+randHex(4))
		dir := filepath.Join(top, cgPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			// Innermost first: a cgroup with children cannot go.
			for d := dir; len(d) >= len(top); d = filepath.Dir(d) {
				for i := 0; os.Remove(d) != nil && i < 50; i++ {
					time.Sleep(20 * time.Millisecond) // the process leaves it as it is reaped
				}
			}
		})
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ns, pid
}

func inodeOfPath(p string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, err
	}
	return uint32(st.Ino), nil
}

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestAll: every namespace discovered is in the scope, entered by
// inode, named by its bind mount or by its process's cgroup (a Kubernetes
// pod, a container); a new namespace joins on Refresh, a deleted one
// leaves it with its handle closed.
func TestAll(t *testing.T) {
	requireRoot(t)
	const (
		uid = "0f3c7b2e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
		id  = "4b6c1b1b2b5e3f0e1f7c3d2a9e8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
	)
	fdsBefore := openFDs(t)
	t.Cleanup(func() { // last: after every process is reaped and namespace closed
		if now := openFDs(t); now != fdsBefore {
			t.Errorf("%d descriptors open after the test, %d before", now, fdsBefore)
		}
	})
	a, aName := named(t)
	b, bName := named(t)
	pod, _ := inNamespace(t, "kubepods/burstable/pod"+uid+"/"+id)
	ctr, _ := inNamespace(t, "system.slice/docker-"+id+".scope")
	plain, _ := inNamespace(t, "")
	mine := map[uint32]bool{a.Inode(): true, b.Inode(): true, pod.Inode(): true, ctr.Inode(): true, plain.Inode(): true}
	ours := func() []netns.Found {
		var out []netns.Found
		for _, f := range netns.Discover() {
			if mine[f.Inode] {
				out = append(out, f)
			}
		}
		return out
	}
	s, err := NewAll(ours)
	if err != nil {
		t.Fatal(err)
	}
	fdsOpen := openFDs(t)
	want := map[uint32]string{a.Inode(): aName, b.Inode(): bName, pod.Inode(): "pod:" + uid,
		ctr.Inode(): "container:" + id[:12], plain.Inode(): ""}
	if got := s.Names(); !equalNames(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	if !s.All() || s.Len() != 5 {
		t.Errorf("All %v, Len %d; want true, 5", s.All(), s.Len())
	}
	for ino := range want {
		var in uint32
		if err := s.Do(ino, func() (err error) { in, err = netns.CurrentInode(); return err }); err != nil || in != ino {
			t.Errorf("Do(%d) ran in %d (%v)", ino, in, err)
		}
	}

	// One more namespace, and b deleted: nothing holds it but the scope.
	c, cName := named(t)
	mine[c.Inode()] = true
	b.Close()
	if err := netns.DeleteNamed(bName); err != nil {
		t.Fatal(err)
	}
	added, removed := s.Refresh()
	if !slices.Equal(added, []uint32{c.Inode()}) || !slices.Equal(removed, []uint32{b.Inode()}) {
		t.Errorf("Refresh: added %v removed %v; want [%d] [%d]", added, removed, c.Inode(), b.Inode())
	}
	if s.Name(c.Inode()) != cName || s.Len() != 5 {
		t.Errorf("after Refresh: %v", s.Names())
	}
	if err := s.Do(b.Inode(), func() error { return nil }); !errors.Is(err, netns.ErrGone) {
		t.Errorf("Do in the deleted namespace: %v, want ErrGone", err)
	}
	if _, err := s.Dup(b.Inode()); !errors.Is(err, netns.ErrGone) {
		t.Errorf("Dup of the deleted namespace: %v, want ErrGone", err)
	}
	// The deleted namespace's handle is closed: c's took its place.
	if now := openFDs(t); now != fdsOpen {
		t.Errorf("%d descriptors open after Refresh, %d before: a handle leaked or was not opened", now, fdsOpen)
	}
	s.Close()
}

func equalNames(a, b map[uint32]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestResolve: --netns's forms open each namespace once, named as
// discovery names it; a namespace no process or mount holds leaves on
// Refresh; an unknown name is an error.
func TestResolve(t *testing.T) {
	requireRoot(t)
	a, aName := named(t)
	const uid = "11111111-2222-4333-8444-555555555555"
	pod, pid := inNamespace(t, "kubepods/pod"+uid)
	s, err := Resolve([]string{aName, netns.NamedDir + "/" + aName, strconv.Itoa(pid)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[uint32]string{a.Inode(): aName, pod.Inode(): "pod:" + uid}
	if got := s.Names(); !equalNames(got, want) || s.All() {
		t.Errorf("names %v (all %v), want %v", got, s.All(), want)
	}
	if added, removed := s.Refresh(); len(added)+len(removed) != 0 {
		t.Errorf("Refresh with both alive: added %v removed %v", added, removed)
	}
	// The process ends: nothing but the scope holds its namespace.
	p, _ := os.FindProcess(pid)
	_ = p.Kill()
	pod.Close()
	for i := 0; netns.Live()[pod.Inode()]; i++ {
		if i == 200 {
			t.Fatal("the namespace stays live after its process died")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, removed := s.Refresh(); !slices.Equal(removed, []uint32{pod.Inode()}) {
		t.Errorf("Refresh after the process died: removed %v, want [%d]", removed, pod.Inode())
	}
	if got := s.Inodes(); !slices.Equal(got, []uint32{a.Inode()}) {
		t.Errorf("inodes %v, want [%d]", got, a.Inode())
	}
	for _, bad := range [][]string{nil, {"hckscope-no-such-name"}, {aName, "/no/such/path"}} {
		if s, err := Resolve(bad); err == nil {
			s.Close()
			t.Errorf("Resolve(%q): no error", bad)
		}
	}
}

// TestOwn: the calling thread's namespace, one member.
func TestOwn(t *testing.T) {
	s, err := Own()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mine, err := netns.CurrentInode()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Inodes(); !slices.Equal(got, []uint32{mine}) || s.All() {
		t.Errorf("Own: %v (all %v), want [%d]", got, s.All(), mine)
	}
}

// TestOwnNamedAfterItsFirstProcess: hck-bpf in a container's cgroup but
// on the host's network (a DaemonSet with hostNetwork) does not name the
// host's namespace after its own container: the namespace's first process
// (pid 1 for Own; here a process of the test's) is in it, and its cgroup
// names no container. In a namespace that process is not in, hck-bpf's
// own cgroup names it.
func TestOwnNamedAfterItsFirstProcess(t *testing.T) {
	requireRoot(t)
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	// The first process: made before this one moves, in its cgroup.
	first := exec.Command("sleep", "60")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Process.Kill(); _ = first.Wait() })
	root := cgroupRoot(t)
	home := ownCgroup(t, root)
	top := filepath.Join(root, "hckscope-"+randHex(4))
	dir := filepath.Join(top, "system.slice", "docker-"+id+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(root, home, "cgroup.procs"), pid, 0o644); err != nil {
			t.Errorf("move the test back to %s: %v", home, err)
		}
		for d := dir; len(d) >= len(top); d = filepath.Dir(d) {
			_ = os.Remove(d)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0o644); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread() // Own names the calling thread's namespace
	defer runtime.UnlockOSThread()
	s, err := own(first.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	name := s.Name(s.Inodes()[0])
	s.Close()
	if strings.HasPrefix(name, "container:") {
		t.Errorf("the namespace of the first process named %q, after this process's container", name)
	}
	other, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Do(func() error {
		s, err := own(first.Process.Pid)
		if err != nil {
			return err
		}
		defer s.Close()
		name = s.Name(other.Inode())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if name != "container:"+id[:12] {
		t.Errorf("a namespace the first process is not in named %q, want this process's container:%s", name, id[:12])
	}
}

// ownCgroup is this process's cgroup in the hierarchy mounted at root.
func ownCgroup(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	v2 := false
	var st unix.Statfs_t
	if unix.Statfs(root, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		v2 = true
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 && (v2 && parts[0] == "0" && parts[1] == "" || !v2 && strings.Contains(parts[1], "name=systemd")) {
			return parts[2]
		}
	}
	t.Fatalf("no line for %s in /proc/self/cgroup:\n%s", root, b)
	return ""
}

// TestRefreshOwnListsNothing: a scope of the service's own namespace alone
// stays as it is without a walk of /proc (the namespace lives while the
// service does); a chosen other namespace is still checked.
func TestRefreshOwnListsNothing(t *testing.T) {
	calls := 0
	liveNetNS = func() map[uint32]bool { calls++; return map[uint32]bool{} }
	defer func() { liveNetNS = netns.Live }()
	s, err := Own()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if added, removed := s.Refresh(); len(added)+len(removed) != 0 || calls != 0 || len(s.Inodes()) != 1 {
		t.Fatalf("Refresh of the own namespace: added %v, removed %v, %d lists of live namespaces; want nothing", added, removed, calls)
	}
}
