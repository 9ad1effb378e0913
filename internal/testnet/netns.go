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
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// NS is a throwaway named network namespace (/run/netns/<Name>), removed when
// the test ends.
type NS struct {
	Name string
	ns   *netns.NS
	mu   sync.Mutex
	diag *netlink.Handle // sock_diag inside the namespace, opened on first Dump
	t    testing.TB
}

// RequireRoot skips the test, with the reason, unless it runs as root with
// the tools the privileged tests need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and loads BPF (run: sudo make test)")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("needs util-linux's nsenter")
	}
}

// New makes a fresh network namespace with loopback up, bind-mounted as
// /run/netns/<Name> so that commands enter it by path and the tracker
// counts it as alive.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &NS{Name: "hcktest-" + hex.EncodeToString(b), t: t}
	h, err := netns.NewNamed(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	ns.ns = h
	t.Cleanup(func() {
		if ns.diag != nil {
			ns.diag.Close()
		}
		h.Close()
		_ = netns.DeleteNamed(ns.Name)
	})
	if err := h.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	return ns
}

// Path is the namespace's bind mount, for setns(2).
func (ns *NS) Path() string { return ns.ns.Path() }

// Inode is the namespace's inode number, the id the BPF tracker records.
func (ns *NS) Inode() uint32 { return ns.ns.Inode() }

// Do runs fn on an OS thread that has joined the namespace (netns.NS.Do).
// Sockets fn creates belong to the namespace for good, whichever thread
// uses them later.
func (ns *NS) Do(fn func() error) error { return ns.ns.Do(fn) }

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
