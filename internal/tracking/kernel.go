package tracking

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
)

func checkKernel() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("kernel BTF is missing (/sys/kernel/btf/vmlinux): hck-bpf needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}
	return nil
}

// NeedBPF names the capabilities loading and attaching hck-bpf's programs
// takes (measured on Linux 6.18 with setpriv, see the README): every bpf(2)
// call needs CAP_BPF (kernel.unprivileged_bpf_disabled), loading a tracing
// program or an iterator CAP_PERFMON too; CAP_SYS_ADMIN stands in for both.
// Nothing needs CAP_SYS_RESOURCE: since Linux 5.11 BPF memory is charged to
// the memory cgroup, not RLIMIT_MEMLOCK.
const NeedBPF = "needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN; root has them"

// explainLoad turns the usual load failures into one line a user can act on.
func explainLoad(err error, opts Options) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.As(err, &verr):
		return fmt.Errorf("load tracker: the kernel's verifier refused it: %v", verr)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("load tracker: %s (%s)", WithoutMemlockHint(err), NeedBPF)
	case errors.Is(err, ebpf.ErrMapIncompatible):
		return fmt.Errorf("load tracker: the maps pinned in %s do not match this build (run 'hck-bpf unload --pin-dir %s' first): %w",
			opts.PinDir, opts.PinDir, err)
	}
	return fmt.Errorf("load tracker: %w", err)
}

// WithoutMemlockHint is err's message without the hint cilium/ebpf adds to
// every EPERM, "(MEMLOCK may be too low, consider rlimit.RemoveMemlock)":
// since Linux 5.11 the rlimit plays no part, and a missing capability is
// the cause.
func WithoutMemlockHint(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " (MEMLOCK may be too low"); i >= 0 {
		if j := strings.Index(msg[i:], ")"); j >= 0 {
			return msg[:i] + msg[i+j+1:]
		}
		return msg[:i]
	}
	return msg
}
