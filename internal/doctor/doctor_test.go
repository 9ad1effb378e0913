package doctor

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and probes SOCK_DESTROY in a private network namespace (run: sudo make test)")
	}
}

// threadNetnses are the network namespaces of every thread of this process.
func threadNetnses(t *testing.T) map[string]bool {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, task := range tasks {
		ns, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err != nil {
			continue // the thread just exited
		}
		out[ns] = true
	}
	return out
}

// TestRun runs every check on this machine (Linux 6.18, root): all must
// pass, and no thread may be left in a foreign network namespace. (Pins and
// mounts: TestRunLeavesNoPins, which has a bpffs nobody else writes to.)
func TestRun(t *testing.T) {
	requireRoot(t)
	// The test's own thread, to compare its namespace before and after.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	var st unix.Statfs_t
	mounted := unix.Statfs("/sys/fs/bpf", &st) == nil && uint32(st.Type) == bpffsMagic
	nsBefore, err := netns.CurrentInode()
	if err != nil {
		t.Fatal(err)
	}
	nsLink, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}

	checks := Run(Options{})
	rules, err := kernel.Running()
	if err != nil {
		t.Fatal(err)
	}
	method, err := bpf.ChooseOwners()
	if err != nil {
		t.Fatal(err)
	}

	names := make([]string, 0, len(checks))
	for _, c := range checks {
		names = append(names, c.Name)
		t.Logf("%-15s %-4s %s", c.Name, c.Status, c.Detail)
		if strings.ContainsAny(c.Detail, "\n\r") {
			t.Errorf("%s: detail spans lines: %q", c.Name, c.Detail)
		}
		want := OK
		if c.Name == CheckBPFFS && !mounted {
			want = Warn // not mounted, and the doctor must not mount it
		}
		if c.Name == CheckKernel && rules.Warning() != "" {
			want = Warn // before 6.11: orphans are reported, not destroyed
		}
		// The lines say which rules, owner method and destroy path apply.
		if c.Name == CheckKernel && c.Detail != rules.Summary() {
			t.Errorf("%s: %q, want the per-state rules %q", c.Name, c.Detail, rules.Summary())
		}
		if c.Name == CheckIterTask && !strings.Contains(c.Detail, "owner method: "+method.String()) {
			t.Errorf("%s: %q does not name the owner method %s", c.Name, c.Detail, method)
		}
		if c.Status != want {
			t.Errorf("%s: %s (%s), want %s", c.Name, c.Status, c.Detail, want)
		}
		// This kernel has CONFIG_INET_DIAG_DESTROY: the doctor says the
		// kill path is netlink.
		if c.Name == CheckSockDestroy && !strings.Contains(c.Detail, "path: netlink SOCK_DESTROY") {
			t.Errorf("%s: %q does not name the path netlink SOCK_DESTROY", c.Name, c.Detail)
		}
	}
	wantNames := []string{CheckKernel, CheckBTF, CheckCapabilities, CheckBPFFS, CheckTpBTF, CheckIterTask, CheckIterTCP, CheckSockDestroy, CheckTrackerMap}
	if !slices.Equal(names, wantNames) {
		t.Errorf("checks %v, want %v", names, wantNames)
	}
	if n := Failed(checks); n != 0 {
		t.Errorf("Failed() = %d", n)
	}

	nsAfter, err := netns.CurrentInode()
	if err != nil {
		t.Fatal(err)
	}
	if nsAfter != nsBefore {
		t.Errorf("the test's thread moved from netns %d to %d", nsBefore, nsAfter)
	}
	// The probe's thread dies with its goroutine, which may take a moment
	// after its result arrives; no thread may stay in its namespace.
	deadline := time.Now().Add(2 * time.Second)
	for {
		all := threadNetnses(t)
		if len(all) == 1 && all[nsLink] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads in network namespaces %v, want only %s", all, nsLink)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIterTaskNamesMethod: the iter/task line names the owner method the
// kernel gets, the fallback as one (forced here, as on a kernel without
// bpf_iter_num).
func TestIterTaskNamesMethod(t *testing.T) {
	requireRoot(t)
	t.Setenv(bpf.OwnersEnv, "bpf_loop")
	st, detail := checkIterTask(Options{})
	if st != OK || !strings.Contains(detail, "owner method: iter/task with bpf_loop (fallback: no bpf_iter_num kfuncs") {
		t.Errorf("with the fallback: %s %q", st, detail)
	}
	if m, _ := bpf.ChooseOwners(); m != bpf.OwnersLoop {
		t.Fatalf("ChooseOwners = %v with %s=bpf_loop", m, bpf.OwnersEnv)
	}
	t.Setenv(bpf.OwnersEnv, "")
	if m, _ := bpf.ChooseOwners(); m != bpf.OwnersIterNum {
		t.Skipf("kernel without bpf_iter_num: the primary is not checked")
	}
	st, detail = checkIterTask(Options{})
	if st != OK || !strings.Contains(detail, "owner method: iter/task with bpf_iter_num (file-table scan)") {
		t.Errorf("the primary: %s %q", st, detail)
	}
}

// childEnv tells the test binary it runs as TestRunLeavesNoPins' child.
const childEnv = "HCK_DOCTOR_TEST_CHILD"

// TestRunLeavesNoPins runs the doctor in a child process with a mount
// namespace of its own, where /sys/fs/bpf is a fresh bpffs that no other
// program writes to (or a tmpfs: no bpffs at all). Everything under it is
// listed before and after: the doctor must pin nothing and mount nothing.
// (The machine's own /sys/fs/bpf cannot be compared: other hck-bpf tests
// pin and unpin there concurrently.)
func TestRunLeavesNoPins(t *testing.T) {
	requireRoot(t)
	if fstype := os.Getenv(childEnv); fstype != "" {
		runIsolated(t, fstype)
		return
	}
	if _, err := os.Stat("/sys/fs/bpf"); err != nil {
		t.Skipf("no /sys/fs/bpf to mount over: %v", err)
	}
	for _, fstype := range []string{"bpf", "tmpfs"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRunLeavesNoPins$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"="+fstype)
		// Go makes the new mount namespace's mounts private before exec:
		// nothing mounted there reaches the machine.
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestRunLeavesNoPins") {
			t.Errorf("doctor over a fresh %s at /sys/fs/bpf: %v\n%s", fstype, err, out)
		}
	}
}

func runIsolated(t *testing.T, fstype string) {
	const dir = "/sys/fs/bpf"
	if err := unix.Mount(fstype, dir, fstype, 0, "mode=0700"); err != nil {
		t.Fatalf("mount %s at %s: %v", fstype, dir, err)
	}
	list := func() []string {
		var out []string
		err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			out = append(out, p)
			return err
		})
		if err != nil {
			t.Fatalf("walk %s: %v", dir, err)
		}
		return out
	}
	before := list()
	checks := Run(Options{PinDir: filepath.Join(dir, "hck-bpf")})
	after := list()
	if !slices.Equal(before, after) {
		t.Errorf("%s changed:\nbefore %v\nafter  %v", dir, before, after)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if isBPF := uint32(st.Type) == bpffsMagic; isBPF != (fstype == "bpf") {
		t.Errorf("%s: bpffs=%v after the doctor, over a %s", dir, isBPF, fstype)
	}
	rules, _ := kernel.Running()
	for _, c := range checks {
		want := OK
		if c.Name == CheckBPFFS && fstype != "bpf" {
			want = Warn
		}
		if c.Name == CheckKernel && rules.Warning() != "" {
			want = Warn // before 6.11: orphans are reported, not destroyed
		}
		if c.Status != want {
			t.Errorf("%s: %s (%s), want %s", c.Name, c.Status, c.Detail, want)
		}
	}
}

// TestPrivateNetns: the probe's function runs in a namespace that is not
// the caller's, and sockets it makes are not visible from the caller's.
func TestPrivateNetns(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine, err := netns.CurrentInode()
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := privateNetns(func() (uint32, error) { return netns.CurrentInode() })
	if err != nil {
		t.Fatal(err)
	}
	if theirs == mine {
		t.Fatalf("probe ran in the caller's network namespace %d", mine)
	}
	if now, _ := netns.CurrentInode(); now != mine {
		t.Fatalf("caller's thread moved from %d to %d", mine, now)
	}
}

// TestBPFFSNotMounted: a missing bpffs is a warning when this process
// could mount it (CAP_SYS_ADMIN), a failure otherwise, and the doctor does
// not mount one.
func TestBPFFSNotMounted(t *testing.T) {
	dir := t.TempDir()
	want, says := Warn, "hck-bpf mounts it when it starts"
	if c, err := kernel.Effective(); err != nil || !c.Has(kernel.CapSysAdmin) {
		want, says = Fail, "cannot mount it without CAP_SYS_ADMIN"
	}
	st, detail := checkBPFFS(Options{BPFFS: dir})
	if st != want || !strings.Contains(detail, says) {
		t.Errorf("checkBPFFS(%s) = %s %q, want %s saying %q", dir, st, detail, want, says)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil || uint32(sfs.Type) == bpffsMagic {
		t.Errorf("bpffs mounted at %s", dir)
	}
	st, _ = checkBPFFS(Options{BPFFS: filepath.Join(dir, "missing")})
	if st != want {
		t.Errorf("checkBPFFS(missing dir) = %s, want %s", st, want)
	}
}

// TestTrackerMapOverflow: a pinned tracker whose map refused sockets makes
// the doctor warn, with the count; a tracker with room says how full it is.
func TestTrackerMapOverflow(t *testing.T) {
	ns := testnet.New(t)
	pin := testnet.PinDir(t)
	tr, err := tracking.Open(tracking.Options{PinDir: pin, MapSize: 4, Watch: []uint32{ns.Inode()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		if err := tracking.Unload(pin); err != nil {
			t.Error(err)
		}
	})
	ns.CloseWait(t, "tcp4") // two closing sockets: room
	st, detail := checkTrackerMap(Options{PinDir: pin})
	if st != OK || !strings.Contains(detail, "2 of 4 entries used") {
		t.Errorf("with room: %s %q, want ok, 2 of 4 entries used", st, detail)
	}
	for range 3 {
		ns.CloseWait(t, "tcp4") // six more: two fit
	}
	st, detail = checkTrackerMap(Options{PinDir: pin})
	if st != Warn || !strings.Contains(detail, "map was full") || !strings.Contains(detail, "4 of 4 entries used") {
		t.Errorf("after overflow: %s %q, want warn: the map was full, 4 of 4 entries used", st, detail)
	}
}
