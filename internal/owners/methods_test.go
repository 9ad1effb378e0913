package owners_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/loopsock"
	"github.com/hck-bpf/hck-bpf/internal/owners"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// hung makes n CLOSE_WAIT sockets in ns (their peers in FIN_WAIT2), held
// by this process, and returns the servers
// as the tracker has them (with their open file).
func hung(t testing.TB, ns *testnet.NS, tr *tracking.Tracker, n int) []*conn.Conn {
	t.Helper()
	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	want := map[uint64]bool{}
	opts := loopsock.Options{Timeout: 10 * time.Second}
	ns.MustDo(func() error {
		ln, _, err := loopsock.Listen(netip.AddrPortFrom(loopsock.Loopback4, 0), opts)
		if err != nil {
			return err
		}
		defer unix.Close(ln)
		for range n {
			client, server, err := loopsock.Pair(ln, opts)
			if err != nil {
				return err
			}
			fds = append(fds, client, server)
			if err := unix.Shutdown(client, unix.SHUT_WR); err != nil {
				return err
			}
			ck, err := unix.GetsockoptUint64(server, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err != nil {
				return err
			}
			want[ck] = true
		}
		return nil
	})
	var cs []*conn.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		cs = cs[:0]
		ns.MustDo(func() error { _, err := tr.Reconcile(nil); return err })
		all, err := tr.Conns(ns.Inode())
		if err != nil {
			t.Fatal(err)
		}
		for i := range all {
			if want[all[i].Cookie] && all[i].State == conn.CloseWait && all[i].File != 0 {
				cs = append(cs, &all[i])
			}
		}
		if len(cs) == n {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker has %d of the %d hung sockets, with their file", len(cs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openTracker(t testing.TB, pin string) *tracking.Tracker {
	t.Helper()
	tr, err := tracking.Open(tracking.Options{PinDir: pin, WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func finder(t testing.TB, pin string, m bpf.OwnersMethod) *owners.Finder {
	f := owners.New(pin, 4096)
	f.Use(m)
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFallbackFindsSameOwners: the fallback owners iterator (bpf_loop, for
// kernels without bpf_iter_num), forced on this kernel, finds exactly the
// owners the primary finds, on the same sockets: held by this process
// alone, or shared with a child. Where the kernel lacks bpf_iter_num (before
// 6.4) the fallback alone is checked.
func TestFallbackFindsSameOwners(t *testing.T) {
	ns := testnet.New(t)
	pin := testnet.PinDir(t)
	tr := openTracker(t, pin)
	cs := hung(t, ns, tr, 6)
	// Half of them shared with a child (fds 3, 4, 5 in it).
	var files []*os.File
	for _, c := range cs[:3] {
		fd := ownFD(t, c)
		files = append(files, os.NewFile(uintptr(fd), "shared"))
	}
	child := exec.Command("sleep", "60")
	child.ExtraFiles = files
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	for _, f := range files {
		f.Close()
	}

	methods := []bpf.OwnersMethod{bpf.OwnersIterNum, bpf.OwnersLoop}
	if ok, err := bpf.HasKfunc("bpf_iter_num_new"); err != nil {
		t.Fatal(err)
	} else if !ok {
		t.Logf("kernel without the bpf_iter_num_new kfunc (Linux 6.4): %v alone", bpf.OwnersLoop)
		methods = methods[1:]
	}
	got := map[bpf.OwnersMethod]map[uint64][]conn.Owner{}
	for _, m := range methods {
		f := finder(t, pin, m)
		out, err := f.Owners(cs)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		// The method's own program walked, not the kernel's choice.
		if name := progName(t, f); name != progOf[m] {
			t.Fatalf("%v: the walk ran program %q, want %q", m, name, progOf[m])
		}
		for _, os := range out {
			slices.SortFunc(os, func(a, b conn.Owner) int { return a.PID - b.PID })
		}
		got[m] = out
	}
	for _, c := range cs {
		want := []int{os.Getpid()}
		if slices.Contains(cs[:3], c) {
			want = append(want, child.Process.Pid)
			slices.Sort(want)
		}
		for m, out := range got {
			var pids []int
			for _, o := range out[c.Cookie] {
				pids = append(pids, o.PID)
			}
			if !slices.Equal(pids, want) {
				t.Errorf("%v: owners of %d: pids %v, want %v", m, c.Cookie, pids, want)
			}
		}
	}
	if len(methods) == 2 && fmt.Sprint(got[bpf.OwnersIterNum]) != fmt.Sprint(got[bpf.OwnersLoop]) {
		t.Errorf("the methods disagree:\n%v: %v\n%v: %v", bpf.OwnersIterNum, got[bpf.OwnersIterNum], bpf.OwnersLoop, got[bpf.OwnersLoop])
	}
}

// progOf is each method's program.
var progOf = map[bpf.OwnersMethod]string{
	bpf.OwnersIterNum: bpf.OwnersProgHckOwners,
	bpf.OwnersLoop:    bpf.OwnersCompatProgHckOwnersCompat,
}

// progName is the name of the program f's iterator runs.
func progName(t *testing.T, f *owners.Finder) string {
	t.Helper()
	id, err := f.ProgramID()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Name
}

// ownFD is a new descriptor of this process for the socket c (a dup of
// the test's own, found by cookie).
func ownFD(t testing.TB, c *conn.Conn) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err != nil {
			continue
		}
		ck, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		if err == nil && ck == c.Cookie {
			nfd, err := unix.Dup(fd)
			if err != nil {
				t.Fatal(err)
			}
			return nfd
		}
	}
	t.Fatalf("no descriptor of this process for socket %d", c.Cookie)
	return -1
}
