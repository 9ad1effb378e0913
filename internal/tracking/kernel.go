package tracking

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
)

func checkKernel() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("kernel BTF is missing (/sys/kernel/btf/vmlinux): hck-bpf needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
	}
	return nil
}

// explainLoad turns the usual load failures into one line a user can act on.
func explainLoad(err error, opts Options) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.As(err, &verr):
		return fmt.Errorf("load tracker: the kernel's verifier refused it: %v", verr)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("load tracker: %w (needs root, or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_RESOURCE)", err)
	case errors.Is(err, ebpf.ErrMapIncompatible):
		return fmt.Errorf("load tracker: the maps pinned in %s do not match this build or --map-size %d (run 'hck-bpf unload --pin-dir %s' first): %w",
			opts.PinDir, opts.MapSize, opts.PinDir, err)
	}
	return fmt.Errorf("load tracker: %w", err)
}
