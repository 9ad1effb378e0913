package kernel

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Capability numbers (include/uapi/linux/capability.h).
const (
	CapNetAdmin = 12
	CapSysAdmin = 21
	CapPerfmon  = 38
	CapBPF      = 39
)

// NeedBPF names the capabilities loading and attaching hck-bpf's programs
// takes (measured on Linux 6.18 with setpriv, see the README): every bpf(2)
// call needs CAP_BPF (kernel.unprivileged_bpf_disabled), loading a tracing
// program or an iterator CAP_PERFMON too; CAP_SYS_ADMIN stands in for both.
// Nothing needs CAP_SYS_RESOURCE: since Linux 5.11 BPF memory is charged to
// the memory cgroup, not RLIMIT_MEMLOCK.
const NeedBPF = "needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN; root has them"

// NeedDestroy names the capability SOCK_DESTROY takes.
const NeedDestroy = "needs CAP_NET_ADMIN; root has it"

// CapSet is a thread's effective capability set.
type CapSet [2]uint32

// Has reports whether the set holds capability (a Cap* number).
func (c CapSet) Has(capability int) bool {
	return capability/32 < len(c) && c[capability/32]&(1<<(capability%32)) != 0
}

// Missing names what hck-bpf lacks: every bpf(2) call (CAP_BPF), loading
// tracing programs and iterators (CAP_PERFMON), SOCK_DESTROY
// (CAP_NET_ADMIN). CAP_SYS_ADMIN stands in for the first two, as the kernel
// lets it. (Measured with setpriv on Linux 6.18; see the README's table.)
func (c CapSet) Missing() []string {
	var miss []string
	if !c.Has(CapBPF) && !c.Has(CapSysAdmin) {
		miss = append(miss, "CAP_BPF")
	}
	if !c.Has(CapPerfmon) && !c.Has(CapSysAdmin) {
		miss = append(miss, "CAP_PERFMON")
	}
	if !c.Has(CapNetAdmin) {
		miss = append(miss, "CAP_NET_ADMIN")
	}
	return miss
}

// Effective reads the calling thread's effective capabilities.
func Effective() (CapSet, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return CapSet{}, fmt.Errorf("read effective capabilities: capget: %w", err)
	}
	return CapSet{data[0].Effective, data[1].Effective}, nil
}

// CanEnter fails, naming the capability, when this process cannot move a
// thread into another network namespace: setns(2) needs CAP_SYS_ADMIN.
func CanEnter() error {
	c, err := Effective()
	if err != nil {
		return err
	}
	if !c.Has(CapSysAdmin) {
		return errors.New("this process lacks CAP_SYS_ADMIN, which entering another network namespace (setns) needs: run as root, or grant CAP_SYS_ADMIN")
	}
	return nil
}

// CanDestroy fails, naming the capability, when this process cannot
// destroy sockets: netlink SOCK_DESTROY needs CAP_NET_ADMIN (in the user
// namespace owning the socket's network namespace), and without it every
// destroy fails with EPERM.
func CanDestroy() error {
	c, err := Effective()
	if err != nil {
		return err
	}
	if !c.Has(CapNetAdmin) {
		return errors.New("this process lacks CAP_NET_ADMIN, which destroying sockets (netlink SOCK_DESTROY) needs: run as root, or grant CAP_NET_ADMIN (with CAP_BPF and CAP_PERFMON)")
	}
	return nil
}
