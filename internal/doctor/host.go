package doctor

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

func checkKernel(Options) (Status, string) {
	r, err := kernel.Running()
	if err != nil {
		return failf("%v", err)
	}
	if r.Warning() != "" {
		return Warn, r.Summary()
	}
	return OK, r.Summary()
}

// traceType is the BTF type tp_btf/inet_sock_set_state attaches by.
const traceType = "btf_trace_inet_sock_set_state"

func checkBTF(Options) (Status, string) {
	if err := kernel.CheckBTF(); err != nil {
		return failf("%v", err)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return failf("parse kernel BTF: %v", err)
	}
	if _, err := spec.AnyTypeByName(traceType); err != nil {
		return failf("kernel BTF has no %s: the inet_sock_set_state tracepoint is missing: %v", traceType, err)
	}
	return OK, fmt.Sprintf("%s parsed; %s present", kernel.VmlinuxBTF, traceType)
}

// withoutSysAdmin is what hck-bpf cannot do without CAP_SYS_ADMIN, though
// it runs: open a program by id (to check the pinned tracker's program and
// maps, and to count the transitions the kernel skipped) and mount bpffs.
const withoutSysAdmin = "without CAP_SYS_ADMIN the pinned tracker is checked by its link only (not its program and maps), transitions the kernel skipped are not counted, and bpffs cannot be mounted when missing"

func checkCapabilities(Options) (Status, string) {
	c, err := kernel.Effective()
	if err != nil {
		return failf("%v", err)
	}
	if miss := c.Missing(); len(miss) > 0 {
		return failf("missing %s (tracking %s; destroying %s)", strings.Join(miss, ", "), kernel.NeedBPF, kernel.NeedDestroy)
	}
	var have []string
	if c.Has(kernel.CapBPF) {
		have = append(have, "CAP_BPF")
	}
	if c.Has(kernel.CapPerfmon) {
		have = append(have, "CAP_PERFMON")
	}
	if c.Has(kernel.CapSysAdmin) {
		have = append(have, "CAP_SYS_ADMIN")
	}
	have = append(have, "CAP_NET_ADMIN")
	if !c.Has(kernel.CapSysAdmin) {
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
	if c, cerr := kernel.Effective(); cerr == nil && !c.Has(kernel.CapSysAdmin) {
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
