package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Parent side of the holders: start them, wait until they hold their
// sockets, stop them.

// holderProc is one running holder.
type holderProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte // stdout, one JSON line each; closed at EOF
	done  chan struct{}
	once  sync.Once
}

// startHolder re-executes this program as a holder in the bench's
// namespace (a child inherits it).
func (b *bench) startHolder(args ...string) (*holderProc, error) {
	return b.startHolderIn(false, args...)
}

// startHolderIn is startHolder, in a network namespace of the holder's
// own when newNS (with its loopback up), which goes with it.
func (b *bench) startHolderIn(newNS bool, args ...string) (*holderProc, error) {
	full := append([]string{holdCmd, "-host-netns", strconv.FormatUint(b.hostNS, 10)}, args...)
	if newNS {
		full = append(full, "-lo-up")
	}
	cmd := exec.Command("/proc/self/exe", full...)
	// The holder dies with the bench; its sockets die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if newNS {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start holder: %w", err)
	}
	h := &holderProc{cmd: cmd, stdin: stdin, lines: make(chan []byte, 1024), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			h.lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(h.lines)
	}()
	go func() { _ = cmd.Wait(); close(h.done) }()
	b.holders = append(b.holders, h)
	return h, nil
}

// next returns the holder's next stdout line.
func (h *holderProc) next(ctx context.Context, timeout time.Duration) ([]byte, error) {
	select {
	case l, ok := <-h.lines:
		if !ok {
			return nil, errors.New("holder exited (see its error above)")
		}
		return l, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("holder silent for %s", timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *holderProc) ready(ctx context.Context, timeout time.Duration) (readyMsg, error) {
	var m readyMsg
	l, err := h.next(ctx, timeout)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(l, &m); err != nil || !m.Ready {
		return m, fmt.Errorf("holder: unexpected line %q", l)
	}
	return m, nil
}

// stop closes the holder's stdin (it aborts its sockets and exits), and
// kills it if it has not gone in 20 s.
func (h *holderProc) stop() {
	h.once.Do(func() {
		_ = h.stdin.Close()
		select {
		case <-h.done:
		case <-time.After(20 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.done
		}
	})
}

// holderSet is the holders of one socket set.
type holderSet []*holderProc

func (hs holderSet) stop() {
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() { defer wg.Done(); h.stop() }()
	}
	wg.Wait()
}

// buildSet starts one holder per spec, all at once, and waits until each
// holds its sockets. It returns the states they report, summed.
// buildLargest builds the plan's largest mixed set for phase (mostly
// ESTABLISHED, a few in closing states) and counts the namespace's sockets
// by state; the caller stops the holders.
func (b *bench) buildLargest(ctx context.Context, p plan, phase string) (holderSet, map[string]int, int, error) {
	n := p.sizes[len(p.sizes)-1]
	b.progress("%s: building %s sockets", phase, fmtCount(n))
	hs, _, err := b.buildSet(ctx, planMixed(n))
	if err != nil {
		return hs, nil, 0, err
	}
	counts, total, err := census(ctx)
	if err != nil {
		hs.stop()
		return hs, nil, 0, err
	}
	return hs, counts, total, nil
}

func (b *bench) buildSet(ctx context.Context, specs []holdSpec) (holderSet, map[string]int, error) {
	return b.buildSetIn(ctx, false, specs)
}

// buildSetIn is buildSet, each holder in a network namespace of its own
// when newNS.
func (b *bench) buildSetIn(ctx context.Context, newNS bool, specs []holdSpec) (holderSet, map[string]int, error) {
	var hs holderSet
	states := map[string]int{}
	for _, s := range specs {
		h, err := b.startHolderIn(newNS, "-port", strconv.Itoa(b.nextPort()),
			"-est", strconv.Itoa(s.Est), "-cw", strconv.Itoa(s.CW), "-fw1", strconv.Itoa(s.FW1), "-la", strconv.Itoa(s.LA), "-peer", strconv.Itoa(s.Peer))
		if err != nil {
			hs.stop()
			return nil, nil, err
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		m, err := h.ready(ctx, 3*time.Minute)
		if err != nil {
			hs.stop()
			return nil, nil, err
		}
		for k, v := range m.States {
			states[k] += v
		}
	}
	return hs, states, nil
}

// planMixed splits n sockets over holders, about 2% of them hung, spread
// over CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2 and LAST_ACK: per five hung
// sockets one CLOSE_WAIT pair (CLOSE_WAIT + FIN_WAIT2), one FIN_WAIT1 and
// one LAST_ACK pair (LAST_ACK + FIN_WAIT2).
func planMixed(n int) []holdSpec {
	const perHolder = 16000
	holders := (n + perHolder - 1) / perHolder
	var specs []holdSpec
	for i := range holders {
		socks := n / holders
		if i == 0 {
			socks += n % holders
		}
		conns := (socks - 1) / 2
		k := (socks*2/100 + 2) / 5 // hung/5, rounded
		specs = append(specs, holdSpec{Est: conns - 3*k, CW: k, FW1: k, LA: k})
	}
	return specs
}

// planCloseWait splits n CLOSE_WAIT sockets (n pairs: CLOSE_WAIT +
// FIN_WAIT2) over as few holders as the fd limit allows.
func planCloseWait(n int) []holdSpec {
	const perHolder = (maxHolderFDs - 1) / 2
	holders := (n + perHolder - 1) / perHolder
	var specs []holdSpec
	for i := range holders {
		k := n / holders
		if i == 0 {
			k += n % holders
		}
		specs = append(specs, holdSpec{CW: k})
	}
	return specs
}
