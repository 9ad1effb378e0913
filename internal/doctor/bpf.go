package doctor

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
)

func checkTpBTF(Options) (Status, string) {
	if err := bpf.ProbeTracker(); err != nil {
		return failf("%v", permHint(err, bpfCaps))
	}
	return OK, "tracker loaded (verifier accepted it, unpinned maps), attached to inet_sock_set_state and detached"
}

func checkIterTask(Options) (Status, string) {
	m, err := bpf.ChooseOwners()
	if err != nil {
		return failf("%v", err)
	}
	if _, err := bpf.ProbeOwners(m); err != nil {
		return failf("%v", permHint(err, bpfCaps))
	}
	return OK, "owner method: " + ownersDetail(m) + "; loaded with an unpinned map, attached and read once"
}

// ownersDetail says why this kernel walks with method m.
func ownersDetail(m bpf.OwnersMethod) string {
	if m == bpf.OwnersLoop {
		return m.String() + " (fallback: no bpf_iter_num kfuncs, Linux 6.4, in this kernel's BTF)"
	}
	return m.String() + " (file-table scan)"
}

// checkIterTCP loads the smallest iter/tcp program there is and walks the
// iterator once, which tells whether the kernel has iter/tcp at all; then
// the same with hck-bpf's own iter/tcp program, which the verifier must
// accept. Both only read: no socket or map is changed.
func checkIterTCP(Options) (Status, string) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "hck_probe_tcp",
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceIter,
		AttachTo:   "tcp",
		License:    "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return failf("load iter/tcp probe: %v", permHint(err, bpfCaps))
	}
	defer prog.Close()
	if _, err := bpf.ReadIterOnce(prog); err != nil {
		return failf("iter/tcp: %v", permHint(err, bpfCaps))
	}
	if _, err := bpf.ProbeSockets(); err != nil {
		return failf("iter/tcp works, but %v", permHint(err, bpfCaps))
	}
	return OK, "iter/tcp probe and the sockets iterator loaded (verifier accepted it), attached and read once"
}

const (
	bpfCaps     = kernel.NeedBPF
	destroyCaps = kernel.NeedDestroy
)

// permHint replaces a permission error with what was missing. (cilium/ebpf
// blames RLIMIT_MEMLOCK for any EPERM; since 5.11 BPF memory is charged to
// the memory cgroup, and the rlimit is not the cause.)
func permHint(err error, caps string) error {
	if !errors.Is(err, os.ErrPermission) {
		return err
	}
	return fmt.Errorf("%s (%s)", bpf.WithoutMemlockHint(err), caps)
}
