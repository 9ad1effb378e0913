package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// OwnersMethod is how the owners iterator reads the processes' file tables.
type OwnersMethod int

const (
	// OwnersIterNum: iter/task reading each file table as an array of
	// pointers, in loops of the bpf_iter_num kfuncs (owners.bpf.c; open-coded
	// iterators, Linux 6.4).
	OwnersIterNum OwnersMethod = iota + 1
	// OwnersLoop: the same walk with its loops as bpf_loop() callbacks
	// (owners_compat.bpf.c; Linux 5.17): the fallback.
	OwnersLoop
)

// OwnersEnv forces an owners method, for tests only: "iter_num" or
// "bpf_loop" (the fallbacks, owners iterator and kill's sockfile program,
// which then run on a kernel that has the primaries:
// HCK_BPF_TEST_OWNERS=bpf_loop go test ./... runs the whole suite with
// them). Unset, the kernel is probed.
const OwnersEnv = "HCK_BPF_TEST_OWNERS"

func (m OwnersMethod) String() string {
	switch m {
	case OwnersIterNum:
		return "iter/task with bpf_iter_num"
	case OwnersLoop:
		return "iter/task with bpf_loop"
	}
	return fmt.Sprintf("owners method %d", int(m))
}

// spec is the method's object, its pin prefix and digest, and its program.
func (m OwnersMethod) spec() (*ebpf.CollectionSpec, string, string, string, error) {
	switch m {
	case OwnersIterNum:
		spec, err := LoadOwners()
		if err != nil {
			return nil, "", "", "", fmt.Errorf("load owners spec: %w", err)
		}
		return spec, OwnersIterPin, OwnersDigest, OwnersProgHckOwners, nil
	case OwnersLoop:
		spec, err := LoadOwnersCompat()
		if err != nil {
			return nil, "", "", "", fmt.Errorf("load owners compat spec: %w", err)
		}
		return spec, OwnersCompatIterPin, OwnersCompatDigest, OwnersCompatProgHckOwnersCompat, nil
	}
	return nil, "", "", "", fmt.Errorf("load owners iterator: unknown %v", m)
}

// ChooseOwners is the owners method for this kernel: OwnersIterNum when its
// BTF has the kfuncs the primaries call (bpf_iter_num_new, Linux 6.4;
// bpf_rdonly_cast, 6.2, kill's sockfile program), OwnersLoop otherwise
// (probed once per process); OwnersEnv overrides it (tests).
func ChooseOwners() (OwnersMethod, error) {
	switch v := os.Getenv(OwnersEnv); v {
	case "":
	case "iter_num":
		return OwnersIterNum, nil
	case "bpf_loop":
		return OwnersLoop, nil
	default:
		return 0, fmt.Errorf("read %s: %q is no owners method (iter_num or bpf_loop)", OwnersEnv, v)
	}
	return probeIterNum()
}

// ChooseOwnersIn is ChooseOwners for a pin dir: the method whose owners
// iterator (or, with sockfile, whose sockfile program) this build pinned
// there, since it loaded on this kernel (pins do not outlive a boot), else
// the kernel's. Reading the kernel's BTF costs a process about 20 ms; a
// look at the pin dir almost nothing.
func ChooseOwnersIn(pinDir string, sockfile bool) (OwnersMethod, error) {
	if os.Getenv(OwnersEnv) == "" {
		primary, fallback := OwnersIterPin+OwnersDigest, OwnersCompatIterPin+OwnersCompatDigest
		if sockfile {
			primary, fallback = OwnersIterNum.SockfilePin(), OwnersLoop.SockfilePin()
		}
		if _, err := os.Lstat(filepath.Join(pinDir, primary)); err == nil {
			return OwnersIterNum, nil
		}
		if _, err := os.Lstat(filepath.Join(pinDir, fallback)); err == nil {
			return OwnersLoop, nil
		}
	}
	return ChooseOwners()
}

var probeIterNum = sync.OnceValues(func() (OwnersMethod, error) {
	for _, kfunc := range []string{"bpf_iter_num_new", "bpf_rdonly_cast"} {
		ok, err := HasKfunc(kfunc)
		if err != nil {
			return 0, err
		}
		if !ok {
			return OwnersLoop, nil
		}
	}
	return OwnersIterNum, nil
})

// HasKfunc reports whether the running kernel's BTF has the function
// name (a kfunc is callable only if it has).
func HasKfunc(name string) (bool, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false, fmt.Errorf("read kernel BTF: %w", err)
	}
	var fn *btf.Func
	err = spec.TypeByName(name, &fn)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, btf.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("look up %s in kernel BTF: %w", name, err)
}

// SockfilePin is the pin name of the sockfile program that goes with
// method m: the primary's, or with OwnersLoop its fallback's.
func (m OwnersMethod) SockfilePin() string {
	if m == OwnersLoop {
		return SockfileCompatPin + SockfileCompatDigest
	}
	return SockfilePin + SockfileDigest
}
