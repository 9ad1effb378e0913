package tracking

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/hck-bpf/hck-bpf/internal/kernel"
)

// explainLoad turns the usual load failures into one line a user can act on.
func explainLoad(err error, opts Options) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.As(err, &verr):
		return fmt.Errorf("load tracker: the kernel's verifier refused it: %v", verr)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("load tracker: %s (%s)", WithoutMemlockHint(err), kernel.NeedBPF)
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
