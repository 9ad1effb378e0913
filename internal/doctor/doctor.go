// Package doctor checks that this machine can run hck-bpf: kernel version
// rules, BTF, capabilities, bpffs, the BPF program types hck-bpf loads, and
// SOCK_DESTROY itself, probed on sockets of a private network namespace.
//
// The doctor changes nothing: it mounts nothing, pins nothing, and never
// creates or destroys a socket in the caller's network namespace. Programs
// it loads use fresh, unpinned maps and are detached and unloaded before
// Run returns.
package doctor

import (
	"fmt"
	"time"
)

// Status is a check's verdict.
type Status string

// The verdicts. Only Fail makes hck-bpf unusable; Warn means it runs with a
// limit the detail names.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is the result of one check.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"` // one line
}

// Names of the checks, in the order Run performs them.
const (
	CheckKernel       = "kernel"
	CheckBTF          = "btf"
	CheckCapabilities = "capabilities"
	CheckBPFFS        = "bpffs"
	CheckTpBTF        = "tp_btf"
	CheckIterTask     = "iter/task"
	CheckIterTCP      = "iter/tcp"
	CheckSockDestroy  = "sock_destroy"
)

// Options tune Run. The zero value checks this machine as hck-bpf uses it.
type Options struct {
	// BPFFS is where hck-bpf mounts bpffs; "/sys/fs/bpf" when empty.
	BPFFS string
	// PinDir, when set, is reported on: whether a tracker is pinned there.
	PinDir string
	// Timeout bounds each wait of the SOCK_DESTROY probe for a socket
	// state; 5s when 0.
	Timeout time.Duration
}

func (o *Options) defaults() {
	if o.BPFFS == "" {
		o.BPFFS = "/sys/fs/bpf"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
}

// Run performs every check, each on its own: one that fails does not stop
// the others.
func Run(opts Options) []Check {
	opts.defaults()
	checks := []struct {
		name string
		fn   func(Options) (Status, string)
	}{
		{CheckKernel, checkKernel},
		{CheckBTF, checkBTF},
		{CheckCapabilities, checkCapabilities},
		{CheckBPFFS, checkBPFFS},
		{CheckTpBTF, checkTpBTF},
		{CheckIterTask, checkIterTask},
		{CheckIterTCP, checkIterTCP},
		{CheckSockDestroy, checkSockDestroy},
		{CheckTrackerMap, checkTrackerMap},
	}
	out := make([]Check, 0, len(checks))
	for _, c := range checks {
		st, detail := guard(c.fn, opts)
		out = append(out, Check{Name: c.name, Status: st, Detail: oneLine(detail)})
	}
	return out
}

// Failed counts the checks that failed.
func Failed(checks []Check) int {
	n := 0
	for _, c := range checks {
		if c.Status == Fail {
			n++
		}
	}
	return n
}

// guard runs one check; a panic in it (a missing feature the code did not
// foresee) fails that check instead of the doctor.
func guard(fn func(Options) (Status, string), opts Options) (st Status, detail string) {
	defer func() {
		if r := recover(); r != nil {
			st, detail = Fail, fmt.Sprintf("check crashed: %v", r)
		}
	}()
	return fn(opts)
}

// oneLine keeps a detail on one line: verifier logs and wrapped errors can
// span several.
func oneLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' || c == '\r' || c == '\t' {
			b[i] = ' '
		}
	}
	return string(b)
}

func failf(format string, a ...any) (Status, string) { return Fail, fmt.Sprintf(format, a...) }
