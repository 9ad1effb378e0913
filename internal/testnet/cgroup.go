package testnet

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cgroup is a control group of the test's own, removed when the test ends.
type Cgroup struct {
	Dir  string // its directory, under the hierarchy's mount
	Path string // its path as /proc/PID/cgroup shows it
	root string // the hierarchy's mount
}

// NewCgroup makes a fresh cgroup: in the unified (v2) hierarchy where one
// is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts),
// else in the v1 name=systemd hierarchy, which has no controllers. A
// process moved into it (Add) leaves it when it exits; the test's end
// moves any process left back to the hierarchy's root, then removes the
// directory. It skips unless root.
func NewCgroup(t testing.TB) *Cgroup {
	t.Helper()
	RequireRoot(t)
	mnt, root, err := cgroupMount()
	if err != nil {
		t.Skipf("needs a cgroup2 or name=systemd hierarchy mounted: %v", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "hcktest-" + hex.EncodeToString(b)
	cg := &Cgroup{Dir: filepath.Join(mnt, name), Path: filepath.Join(root, name), root: mnt}
	if err := os.Mkdir(cg.Dir, 0o755); err != nil {
		t.Fatalf("make a cgroup: %v", err)
	}
	t.Cleanup(func() {
		for range 50 {
			cg.evacuate()
			if err := os.Remove(cg.Dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond) // a process on its way out
		}
		t.Errorf("cgroup %s left behind", cg.Dir)
	})
	return cg
}

// Add moves process pid into the cgroup.
func (cg *Cgroup) Add(t testing.TB, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cg.Dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("move pid %d into %s: %v", pid, cg.Dir, err)
	}
}

// evacuate moves the processes still in the cgroup to the hierarchy's root.
func (cg *Cgroup) evacuate() {
	b, err := os.ReadFile(filepath.Join(cg.Dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, pid := range strings.Fields(string(b)) {
		_ = os.WriteFile(filepath.Join(cg.root, "cgroup.procs"), []byte(pid), 0)
	}
}

// cgroupMount finds where a hierarchy tests may make groups in is mounted,
// and the root of that hierarchy the mount shows (mountinfo's root field).
func cgroupMount() (mnt, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var v1mnt, v1root string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		switch {
		case tail[0] == "cgroup2":
			return fields[4], fields[3], nil
		case tail[0] == "cgroup" && v1mnt == "" && strings.Contains(","+tail[2]+",", ",name=systemd,"):
			v1mnt, v1root = fields[4], fields[3]
		}
	}
	if v1mnt != "" {
		return v1mnt, v1root, nil
	}
	return "", "", errors.New("none in /proc/self/mountinfo")
}
