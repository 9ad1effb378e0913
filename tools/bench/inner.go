package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/loopsock"
	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// bench is the inner process: everything here runs in the private network
// namespace the outer process made.
type bench struct {
	options
	hostNS    uint64
	pinPrefix string
	start     time.Time

	port     int             // next listener port (below the ephemeral range)
	pins     map[string]bool // pin dirs that may hold a tracker
	holders  []*holderProc
	services []*service

	trigLn, trigPort int // the bench's own listener, for TIME_WAIT triggers

	want map[string]bool // the phases to run

	tables []*table
}

// Sizes and counts of a full run, and of -quick.
type plan struct {
	sizes       []int // sockets in the namespace, grown in steps
	reps        int   // repetitions of each timed command (median)
	sweeps      int   // service sweeps measured per size
	lagSockets  int
	destroyN    int // CLOSE_WAIT sockets destroyed per round
	destroyReps int
	memTracked  int // tracked sockets for the memory row
	churnN      int // connections per churn run
	churnReps   int // throughput runs, each way
	costReps    int // runs with BPF statistics on
	namespaces  int // namespaces of the netns phase
	perNS       int // sockets in each
	killN       int // sockets in the namespace for the kill row
	killPeer    int // ESTABLISHED connections from the peer, the kill's targets
	killReps    int // timed runs of each command
}

var fullPlan = plan{sizes: []int{1000, 10000, 60000}, reps: 3, sweeps: 5, lagSockets: 300,
	destroyN: 10000, destroyReps: 2, memTracked: 100000, churnN: 50000, churnReps: 5, costReps: 3,
	namespaces: 100, perNS: 600, killN: 60000, killPeer: 1000, killReps: 5}

var quickPlan = plan{sizes: []int{1000}, reps: 1, sweeps: 3, lagSockets: 100,
	destroyN: 2000, destroyReps: 1, memTracked: 10000, churnN: 10000, churnReps: 1, costReps: 1,
	namespaces: 10, perNS: 200, killN: 1000, killPeer: 100, killReps: 1}

// phaseOrder is the order the measurements run in.
var phaseOrder = []string{"sweep", "lag", "destroy", "kill", "memory", "idle", "churn", "netns", "top"}

// parsePhases reads -phases: names from phaseOrder, comma-separated.
func parsePhases(list string) (map[string]bool, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(phaseOrder, name) {
			return nil, fmt.Errorf("-phases: unknown %q (%s)", name, strings.Join(phaseOrder, ", "))
		}
		want[name] = true
	}
	return want, nil
}

func innerMain(args []string) int {
	// Children get a death signal from the thread that forked them: all
	// are started from this goroutine, kept on its thread.
	runtime.LockOSThread()
	b := &bench{pins: map[string]bool{}, port: 2000, start: time.Now()}
	fs := flag.NewFlagSet(innerCmd, flag.ContinueOnError)
	b.options.register(fs)
	fs.Uint64Var(&b.hostNS, "host-netns", 0, "the host's network namespace inode")
	fs.StringVar(&b.pinPrefix, "pins", "", "prefix of the bench's pin dirs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := b.run(ctx)
	b.cleanup()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; everything cleaned up")
			return 130
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func (b *bench) run(ctx context.Context) error {
	if err := mustBePrivate(b.hostNS); err != nil {
		return err
	}
	if b.pinPrefix == "" {
		return fmt.Errorf("no pin dir prefix")
	}
	if err := b.setup(); err != nil {
		return err
	}
	p := fullPlan
	if b.quick {
		p = quickPlan
	}
	m := describeMachine()
	fmt.Printf("hck-bpf benchmark: %s\n", m)
	if n := attachedTrackers(); n > 0 {
		b.progress("note: %d hck_set_state program(s) already loaded on this host (other hck-bpf users)", n)
	}

	phases := map[string]func(context.Context, plan) error{
		"sweep": b.sweepPhase, "lag": b.lagPhase, "destroy": b.destroyPhase, "kill": b.killPhase, "memory": b.memoryPhase, "idle": b.idlePhase, "churn": b.churnPhase, "top": b.topPhase,
		"netns": b.netnsPhase,
	}
	var err error
	if b.want, err = parsePhases(b.phases); err != nil {
		return err
	}
	for _, name := range phaseOrder {
		if !b.want[name] {
			continue
		}
		if err := phases[name](ctx, p); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	took := time.Since(b.start).Round(time.Second)
	fmt.Printf("\n%s\n", legend)
	renderText(os.Stdout, b.tables)
	fmt.Printf("\n%s\n", targetSummary(b.tables))
	fmt.Printf("Ran in %s on %s.\n", took, m)
	fmt.Printf("Reproduce: sudo make bench   (or: make build && sudo go run ./tools/bench -bin bin/hck-bpf [-quick] [-md FILE])\n")
	if b.md != "" {
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "Machine: %s; the bench ran in %s.\n\n%s\n", m, took, legend)
		renderMarkdown(&buf, b.tables)
		fmt.Fprintf(&buf, "\n%s\n", targetSummary(b.tables))
		if err := os.WriteFile(b.md, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", b.md, err)
		}
	}
	return nil
}

// setup makes the namespace usable: loopback up, ports and queues sized for
// 100k sockets, the bench's own listener for TIME_WAIT triggers.
func (b *bench) setup() error {
	here, err := netns.Current()
	if err != nil {
		return err
	}
	err = here.LoopbackUp()
	here.Close()
	if err != nil {
		return err
	}
	for _, s := range [][2]string{
		{"ipv4/ip_local_port_range", "10000 65535"}, // listeners live below
		{"core/somaxconn", "4096"},
		{"ipv4/tcp_max_syn_backlog", "4096"},
	} {
		if err := setNetSysctl(s[0], s[1]); err != nil {
			return err
		}
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	b.trigPort = b.nextPort()
	b.trigLn, err = listen(b.trigPort)
	return err
}

func (b *bench) nextPort() int {
	b.port++
	return b.port
}

// pin names a pin dir of the bench; the outer process removes leftovers
// by this prefix.
func (b *bench) pin(phase string) string { return b.pinPrefix + "-" + phase }

func (b *bench) progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, a...))
}

// cleanup stops every child and unloads every tracker, whatever happened.
func (b *bench) cleanup() {
	for _, s := range b.services {
		s.stop()
	}
	holderSet(b.holders).stop()
	for d := range b.pins {
		if err := b.unload(d); err != nil {
			fmt.Fprintf(os.Stderr, "bench: unload %s: %v\n", d, err)
		}
	}
	if b.trigLn > 0 {
		unix.Close(b.trigLn)
	}
}

// trigger makes one TIME_WAIT socket the tracker announces (FIN_WAIT2 ->
// TIME_WAIT while the client still holds it): a service whose TIME_WAIT
// threshold is short sweeps once, that long after.
func (b *bench) trigger() error {
	c, s, err := loopsock.Pair(b.trigLn, small)
	if err != nil {
		return err
	}
	if err := unix.Shutdown(c, unix.SHUT_WR); err != nil {
		return err
	}
	unix.Close(s) // its FIN reaches the client in FIN_WAIT2: TIME_WAIT
	time.Sleep(time.Millisecond)
	unix.Close(c)
	return nil
}
