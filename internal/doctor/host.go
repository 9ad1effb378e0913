package doctor

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func checkKernel(Options) (Status, string) {
	r, err := Kernel()
	if err != nil {
		return failf("%v", err)
	}
	if r.Warning() != "" {
		return Warn, r.summary()
	}
	return OK, r.summary()
}

// vmlinuxBTF is the kernel's own BTF, which tp_btf, iterators and CO-RE
// relocations all need.
const vmlinuxBTF = "/sys/kernel/btf/vmlinux"

// traceType is the BTF type tp_btf/inet_sock_set_state attaches by.
const traceType = "btf_trace_inet_sock_set_state"

func checkBTF(Options) (Status, string) {
	f, err := os.Open(vmlinuxBTF)
	if err != nil {
		return failf("kernel BTF %s: %v (hck-bpf needs a kernel built with CONFIG_DEBUG_INFO_BTF=y)", vmlinuxBTF, err)
	}
	f.Close()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return failf("parse kernel BTF: %v", err)
	}
	if _, err := spec.AnyTypeByName(traceType); err != nil {
		return failf("kernel BTF has no %s: the inet_sock_set_state tracepoint is missing: %v", traceType, err)
	}
	return OK, fmt.Sprintf("%s parsed; %s present", vmlinuxBTF, traceType)
}

// Capability numbers (include/uapi/linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// capSet is a thread's effective capability set.
type capSet [2]uint32

func (c capSet) has(capability int) bool {
	return capability/32 < len(c) && c[capability/32]&(1<<(capability%32)) != 0
}

// missingCaps names what hck-bpf lacks: every bpf(2) call (CAP_BPF),
// loading tracing programs and iterators (CAP_PERFMON), SOCK_DESTROY
// (CAP_NET_ADMIN). CAP_SYS_ADMIN stands in for the first two, as the kernel
// lets it. CAP_SYS_RESOURCE is not among them: since Linux 5.11 BPF memory
// is charged to the memory cgroup, not RLIMIT_MEMLOCK. (Measured with
// setpriv on Linux 6.18; see the README's table.)
func missingCaps(c capSet) []string {
	var miss []string
	if !c.has(capBPF) && !c.has(capSysAdmin) {
		miss = append(miss, "CAP_BPF")
	}
	if !c.has(capPerfmon) && !c.has(capSysAdmin) {
		miss = append(miss, "CAP_PERFMON")
	}
	if !c.has(capNetAdmin) {
		miss = append(miss, "CAP_NET_ADMIN")
	}
	return miss
}

// withoutSysAdmin is what hck-bpf cannot do without CAP_SYS_ADMIN, though
// it runs: open a program by id (to check the pinned tracker's program and
// maps, and to count the transitions the kernel skipped) and mount bpffs.
const withoutSysAdmin = "without CAP_SYS_ADMIN the pinned tracker is checked by its link only (not its program and maps), transitions the kernel skipped are not counted, and bpffs cannot be mounted when missing"

func effectiveCaps() (capSet, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capSet{}, fmt.Errorf("capget: %w", err)
	}
	return capSet{data[0].Effective, data[1].Effective}, nil
}

// CanDestroy fails, naming the capability, when this process cannot
// destroy sockets: netlink SOCK_DESTROY needs CAP_NET_ADMIN (in the user
// namespace owning the socket's network namespace), and without it every
// destroy fails with EPERM.
func CanDestroy() error {
	c, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("read effective capabilities: %w", err)
	}
	if !c.has(capNetAdmin) {
		return errors.New("this process lacks CAP_NET_ADMIN, which destroying sockets (netlink SOCK_DESTROY) needs: run as root, or grant CAP_NET_ADMIN (with CAP_BPF and CAP_PERFMON)")
	}
	return nil
}

func checkCapabilities(Options) (Status, string) {
	c, err := effectiveCaps()
	if err != nil {
		return failf("read effective capabilities: %v", err)
	}
	if miss := missingCaps(c); len(miss) > 0 {
		return failf("missing %s (tracking %s; destroying needs CAP_NET_ADMIN)", strings.Join(miss, ", "), tracking.NeedBPF)
	}
	var have []string
	if c.has(capBPF) {
		have = append(have, "CAP_BPF")
	}
	if c.has(capPerfmon) {
		have = append(have, "CAP_PERFMON")
	}
	if c.has(capSysAdmin) {
		have = append(have, "CAP_SYS_ADMIN")
	}
	have = append(have, "CAP_NET_ADMIN")
	if !c.has(capSysAdmin) {
		return Warn, "effective: " + strings.Join(have, ", ") + "; " + withoutSysAdmin
	}
	return OK, "effective: " + strings.Join(have, ", ")
}

const bpffsMagic = 0xcafe4a11

func checkBPFFS(opts Options) (Status, string) {
	var st unix.Statfs_t
	err := unix.Statfs(opts.BPFFS, &st)
	// Not mounted: hck-bpf mounts it, which takes CAP_SYS_ADMIN.
	missing, mountable := Warn, "hck-bpf mounts it when it starts"
	if c, cerr := effectiveCaps(); cerr == nil && !c.has(capSysAdmin) {
		missing, mountable = Fail, "hck-bpf cannot mount it without CAP_SYS_ADMIN (mount it first: mount -t bpf bpf "+opts.BPFFS+")"
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return missing, fmt.Sprintf("%s does not exist, so bpffs is not mounted: %s", opts.BPFFS, mountable)
	case err != nil:
		return failf("statfs %s: %v", opts.BPFFS, err)
	case uint32(st.Type) != bpffsMagic:
		return missing, fmt.Sprintf("bpffs not mounted at %s: %s", opts.BPFFS, mountable)
	}
	detail := fmt.Sprintf("bpffs mounted at %s", opts.BPFFS)
	if opts.PinDir == "" {
		return OK, detail
	}
	if err := tracking.CheckPinDir(opts.PinDir); err != nil {
		return failf("%s; %v", detail, err)
	}
	pinned, err := tracking.VerifyPinned(opts.PinDir)
	switch {
	case err != nil:
		return failf("%s; %v", detail, err)
	case pinned:
		detail += fmt.Sprintf("; a tracker is pinned in %s", opts.PinDir)
	default:
		detail += fmt.Sprintf("; no tracker pinned in %s yet", opts.PinDir)
	}
	if pid := tracking.ServicePID(opts.PinDir); pid != 0 {
		detail += fmt.Sprintf("; the service running on it is pid %d", pid)
	}
	return OK, detail
}
