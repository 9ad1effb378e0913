// Package testnet gives tests a network namespace of their own and real TCP
// sockets in every state inside it. Nothing it does touches the namespace the
// test binary started in: that is where other programs' connections live.
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NS is a throwaway named network namespace (/run/netns/<Name>), removed when
// the test ends.
type NS struct {
	Name string
	t    testing.TB
}

// RequireRoot skips the test, with the reason, unless it runs as root with
// the tools the privileged tests need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and loads BPF (run: sudo make test)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

// New makes a fresh network namespace with loopback up.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &NS{Name: "hcktest-" + hex.EncodeToString(b), t: t}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns.Name).Run() })
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

// Path is the namespace's bind mount, for setns(2).
func (ns *NS) Path() string { return "/run/netns/" + ns.Name }

// Inode is the namespace's inode number, the id the BPF tracker records.
func (ns *NS) Inode() uint32 {
	var st unix.Stat_t
	if err := unix.Stat(ns.Path(), &st); err != nil {
		ns.t.Fatalf("stat %s: %v", ns.Path(), err)
	}
	return uint32(st.Ino)
}

// Do runs fn on an OS thread that has joined the namespace. Sockets fn
// creates belong to the namespace for good, whichever thread uses them
// later. The thread is thrown away afterwards, never returned to the Go
// scheduler with a foreign namespace.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime kills a locked thread when its
		// goroutine exits.
		fd, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open %s: %w", ns.Path(), err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// MustDo is Do that fails the test on error.
func (ns *NS) MustDo(fn func() error) {
	ns.t.Helper()
	if err := ns.Do(fn); err != nil {
		ns.t.Fatal(err)
	}
}

// Command returns a command that runs inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	// nsenter, not "ip netns exec": the latter remounts /sys, hiding the
	// bpffs pins of the namespace the test runs in.
	return exec.Command("nsenter", append([]string{"--net=" + ns.Path(), "--", name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(name string, args ...string) string {
	ns.t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		ns.t.Fatal(err)
	}
	return out
}
