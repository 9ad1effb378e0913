package owners_test

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/owners"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// BenchmarkOwners: one walk of each owners method for the owners of 1,200
// hung sockets (held by this process) among 60,000 open files (the rest
// held by helper processes; besides the host's). bpf-ns/walk is the
// program's own time from the kernel's BPF statistics. iter/task_file, the
// other candidate for the fallback, measured 80-110 ms a walk here (15 ms
// of program time) and was dropped: see bpf/owners_compat.bpf.c.
// go test -run - -bench Owners -benchtime 20x ./internal/owners/
func BenchmarkOwners(b *testing.B) {
	const hungN, filesN = 1200, 60000
	ns := testnet.New(b)
	pin := testnet.PinDir(b)
	tr := openTracker(b, pin)
	cs := hung(b, ns, tr, hungN)
	// The other files, in processes of their own (this one's limit is
	// 20,000): each opens /dev/null that many times and waits.
	for left := filesN - 3*hungN; left > 0; left -= 15000 {
		n := min(left, 15000)
		cmd := exec.Command("python3", "-c", fmt.Sprintf(
			"import sys,time\nfs=[open('/dev/null') for _ in range(%d)]\nprint('ok',flush=True)\ntime.sleep(3600)", n))
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if _, err := out.Read(make([]byte, 3)); err != nil {
			b.Fatalf("file holder: %v", err)
		}
	}
	methods := []bpf.OwnersMethod{bpf.OwnersIterNum, bpf.OwnersLoop}
	if m, _ := bpf.ChooseOwners(); m == bpf.OwnersLoop {
		methods = methods[1:] // a kernel without bpf_iter_num
	}
	for _, m := range methods {
		b.Run(m.String(), func(b *testing.B) {
			f := finder(b, pin, m)
			if _, err := f.Owners(cs); err != nil { // loads it
				b.Fatal(err)
			}
			// The programs' own time, from the kernel's BPF statistics
			// (on while stats is open): what the walks cost the kernel.
			stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				b.Fatal(err)
			}
			defer stats.Close()
			prog := walker(b, f)
			before := runTime(b, prog)
			b.ResetTimer()
			for range b.N {
				out, err := f.Owners(cs)
				if err != nil {
					b.Fatal(err)
				}
				if len(out) != hungN {
					b.Fatalf("found the owners of %d of %d sockets", len(out), hungN)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(runTime(b, prog)-before)/float64(b.N), "bpf-ns/walk")
		})
	}
}

func runTime(b *testing.B, prog *ebpf.Program) time.Duration {
	st, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	return st.Runtime
}

// walker is the program behind f's pinned iterator.
func walker(b *testing.B, f *owners.Finder) *ebpf.Program {
	id, err := f.ProgramID()
	if err != nil {
		b.Fatal(err)
	}
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}
