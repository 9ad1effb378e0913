package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// The bench runs in a network namespace of its own: the outer process
// re-executes itself with CLONE_NEWNET (the same as unshare(CLONE_NEWNET),
// for every thread of the new process at once), and everything that makes
// sockets, destroys them, or starts hck-bpf and ss runs in that process or
// its children, which inherit the namespace.

// netnsInode is the inode of the namespace process pid is in.
func netnsInode(pid int) (uint64, error) {
	ns, err := netns.FromPID(pid)
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	return uint64(ns.Inode()), nil
}

// mustBePrivate refuses to go on unless the calling process is in a
// network namespace other than the host's (hostNS, the outer process's) and
// init's.
func mustBePrivate(hostNS uint64) error {
	self, err := netnsInode(os.Getpid())
	if err != nil {
		return err
	}
	if hostNS == 0 || self == hostNS {
		return fmt.Errorf("refusing to run: not in a private network namespace (netns %d, host %d)", self, hostNS)
	}
	if initNS, err := netnsInode(1); err == nil && initNS == self {
		return fmt.Errorf("refusing to run: in init's network namespace")
	}
	return nil
}

// reexecInNewNetNS returns the command that runs this program again, with
// args, in a fresh network namespace. A dying parent sends it sig.
func reexecInNewNetNS(sig syscall.Signal, args ...string) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: sig}
	return cmd
}

// setNetSysctl writes a net.* sysctl of the calling process's network
// namespace (name like "ipv4/tcp_max_tw_buckets"). Only net.* sysctls are
// per namespace; nothing else is written.
func setNetSysctl(name, value string) error {
	if strings.Contains(name, "..") {
		return fmt.Errorf("bad sysctl name %q", name)
	}
	path := filepath.Join("/proc/sys/net", name)
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("set net.%s=%s: %w", strings.ReplaceAll(name, "/", "."), value, err)
	}
	return nil
}
