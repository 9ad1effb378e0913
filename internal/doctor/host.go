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

// missingCaps names what hck-bpf lacks: loading BPF (CAP_BPF), tracing and
// reading kernel pointers (CAP_PERFMON), SOCK_DESTROY (CAP_NET_ADMIN).
// CAP_SYS_ADMIN stands in for the first two, as the kernel lets it.
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

func effectiveCaps() (capSet, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capSet{}, fmt.Errorf("capget: %w", err)
	}
	return capSet{data[0].Effective, data[1].Effective}, nil
}

func checkCapabilities(Options) (Status, string) {
	c, err := effectiveCaps()
	if err != nil {
		return failf("read effective capabilities: %v", err)
	}
	if miss := missingCaps(c); len(miss) > 0 {
		return failf("missing %s (run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)", strings.Join(miss, ", "))
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
	return OK, "effective: " + strings.Join(have, ", ")
}

const bpffsMagic = 0xcafe4a11

func checkBPFFS(opts Options) (Status, string) {
	var st unix.Statfs_t
	err := unix.Statfs(opts.BPFFS, &st)
	switch {
	case errors.Is(err, unix.ENOENT):
		return Warn, fmt.Sprintf("%s does not exist, so bpffs is not mounted: hck-bpf mounts it when it starts", opts.BPFFS)
	case err != nil:
		return failf("statfs %s: %v", opts.BPFFS, err)
	case uint32(st.Type) != bpffsMagic:
		return Warn, fmt.Sprintf("bpffs not mounted at %s: hck-bpf mounts it when it starts", opts.BPFFS)
	}
	detail := fmt.Sprintf("bpffs mounted at %s", opts.BPFFS)
	if opts.PinDir != "" {
		if tracking.Pinned(opts.PinDir) {
			detail += fmt.Sprintf("; a tracker is pinned in %s", opts.PinDir)
		} else {
			detail += fmt.Sprintf("; no tracker pinned in %s yet", opts.PinDir)
		}
	}
	return OK, detail
}
