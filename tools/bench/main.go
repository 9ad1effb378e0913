// Command bench measures hck-bpf side by side with the scripts' method
// (`ss -tanpo` plus parsing), the kernel-filtered `ss -tan state ...` dump
// and `ss -K`, in a throwaway network namespace, and prints one table:
// sweep time at 1k, 10k and 60k sockets, the service's own sweep time, the
// kernel cost per state transition and connection-churn throughput with no
// tracker, with the tracker alone and with the service running, kill lag, destroy throughput, `kill
// --peer` against `ss -K dst`, memory at 100k tracked sockets and owner lookup. Each target of issue 4 is checked and
// reported PASS or MISS.
//
//	sudo go run ./tools/bench -bin bin/hck-bpf [-quick] [-md FILE] [-phases LIST] [-logs DIR]
//
// -quick is a smoke run (1k sockets, small counts); -md also writes the
// tables as Markdown; -phases picks measurements (sweep, lag, destroy,
// kill, memory, idle, churn, netns); -logs keeps each hck-bpf service's JSON log and the
// destroy scans' output, for analysis.
//
// Nothing runs in the host's network namespace: this process re-executes
// itself in a new one (see netns.go), every hck-bpf it starts uses a
// temporary --pin-dir under /sys/fs/bpf, and everything is unloaded and
// removed at the end, on error and on ^C too.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// innerCmd is the hidden subcommand that runs the benchmark inside the
// private namespace.
const innerCmd = "inner"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case holdCmd:
			os.Exit(holdMain(os.Args[2:]))
		case innerCmd:
			os.Exit(innerMain(os.Args[2:]))
		}
	}
	os.Exit(outerMain(os.Args[1:]))
}

// options are the user's flags, passed on to the inner process.
type options struct {
	bin    string
	quick  bool
	md     string
	phases string
	logs   string
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.bin, "bin", "bin/hck-bpf", "hck-bpf binary to measure")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 1k sockets only, small counts, one repetition")
	fs.StringVar(&o.md, "md", "", "also write the results as Markdown to this file")
	fs.StringVar(&o.phases, "phases", "sweep,lag,destroy,kill,memory,idle,churn,netns,top", "which measurements to run, comma-separated")
	fs.StringVar(&o.logs, "logs", "", "keep each hck-bpf service's JSON log in this directory")
}

func (o *options) args() []string {
	return []string{"-bin", o.bin, "-quick=" + strconv.FormatBool(o.quick), "-md", o.md, "-phases", o.phases, "-logs", o.logs}
}

// outerMain checks the machine, starts the inner process in a new network
// namespace, forwards ^C to it and removes whatever it left pinned.
func outerMain(args []string) int {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if _, err := parsePhases(o.phases); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("needs root: sudo make bench"))
	}
	if _, err := exec.LookPath("ss"); err != nil {
		return fail(errors.New("needs ss: apt-get install iproute2"))
	}
	var err error
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fail(fmt.Errorf("%w (make build)", err))
	}
	for _, p := range []*string{&o.md, &o.logs} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return fail(err)
			}
		}
	}
	if o.logs != "" {
		if err := os.MkdirAll(o.logs, 0o755); err != nil {
			return fail(err)
		}
	}
	hostNS, err := netnsInode(os.Getpid())
	if err != nil {
		return fail(err)
	}
	pinPrefix := fmt.Sprintf("/sys/fs/bpf/hck-bench-%d", os.Getpid())

	// Pdeathsig follows the thread that forks: keep this goroutine on it.
	runtime.LockOSThread()
	cmd := reexecInNewNetNS(syscall.SIGTERM, append([]string{innerCmd,
		"-host-netns", strconv.FormatUint(hostNS, 10), "-pins", pinPrefix}, o.args()...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start the bench in a new network namespace: %w", err))
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	removePins(o.bin, pinPrefix)
	if err != nil {
		return fail(fmt.Errorf("failed after %s: %w", time.Since(start).Round(time.Second), err))
	}
	return 0
}

// removePins unloads every tracker the bench pinned (the inner process
// does it too; this catches a crash or a kill).
func removePins(bin, prefix string) {
	dirs, _ := filepath.Glob(prefix + "-*")
	for _, d := range dirs {
		if err := exec.Command(bin, "unload", "--pin-dir", d).Run(); err != nil {
			_ = os.RemoveAll(d)
		}
	}
}
