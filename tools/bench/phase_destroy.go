package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
)

// destroyPhase destroys p.destroyN CLOSE_WAIT sockets with `hck-bpf scan
// --live` and, on an identical fresh set, with `ss -K state close-wait`,
// p.destroyReps times each, alternating. Both whole processes are timed;
// the tracker is attached for both (it sees every reset either way). On
// two more sets, the destroyer alone (internal/destroy, in this process)
// destroys them: as it splits a large call over the CPUs, and on one
// netlink socket.
func (b *bench) destroyPhase(ctx context.Context, p plan) error {
	pin := b.pin("destroy")
	if err := b.attach(ctx, pin); err != nil {
		return err
	}
	defer b.unload(pin)
	scanArgs := append([]string{"scan", "--live", "--log-format", "json"}, thresholdArgs("3600", "3600")...)
	scanArgs = append(scanArgs, "--close-wait-timeout", "0.001")

	var hckT, hckTook, ssT, libT, serialT []time.Duration
	var lastSteps string
	var hckN, ssN, hckLeft, ssLeft, hckFailed, libN, libLeft, libFailed, workers int
	for r := range p.destroyReps {
		b.progress("destroy throughput, round %d: %s CLOSE_WAIT sockets, hck-bpf scan --live", r+1, fmtCount(p.destroyN))
		n, d, left, err := b.destroyOnce(ctx, p.destroyN, func() (time.Duration, error) {
			d, out, err := b.hck(ctx, pin, scanArgs...)
			b.keepLog(fmt.Sprintf("destroy-scan-%d", r+1), out)
			sum, serr := scanSummary(out)
			if serr != nil {
				if err == nil {
					err = serr
				}
				return d, err
			}
			// Exit 1 (some failed) is reported, not fatal.
			hckTook = append(hckTook, time.Duration(sum.TookS*float64(time.Second)))
			lastSteps = sum.steps()
			hckFailed += sum.Failed
			return d, nil
		})
		if err != nil {
			return err
		}
		hckT, hckN, hckLeft = append(hckT, d), n, hckLeft+left

		b.progress("destroy throughput, round %d: %s CLOSE_WAIT sockets, ss -K", r+1, fmtCount(p.destroyN))
		n, d, left, err = b.destroyOnce(ctx, p.destroyN, func() (time.Duration, error) {
			d, _, err := timed(ctx, "ss", "-K", "state", "close-wait")
			return d, err
		})
		if err != nil {
			return err
		}
		ssT, ssN, ssLeft = append(ssT, d), n, ssLeft+left

		for _, serial := range []bool{false, true} {
			how := "split over the CPUs"
			if serial {
				how = "one netlink socket"
			}
			b.progress("destroy throughput, round %d: %s CLOSE_WAIT sockets, the destroyer alone (%s)", r+1, fmtCount(p.destroyN), how)
			n, d, left, err = b.destroyOnce(ctx, p.destroyN, func() (time.Duration, error) {
				d, w, failed, err := destroyInProcess(serial)
				libFailed += failed
				if !serial {
					workers = w
				}
				return d, err
			})
			if err != nil {
				return err
			}
			libN, libLeft = n, libLeft+left
			if serial {
				serialT = append(serialT, d)
			} else {
				libT = append(libT, d)
			}
		}
	}
	hck, ss, took := median(hckT), median(ssT), median(hckTook)
	hckRate := float64(hckN) / hck.Seconds()
	ssRate := float64(ssN) / ss.Seconds()
	t := b.single()
	t.add(row{What: fmt.Sprintf("destroy %s CLOSE_WAIT: scan --live vs ss -K (processes)", fmtCount(p.destroyN)),
		Hck: fmt.Sprintf("%s (%s)", fmtRate(hckRate), fmtDur(hck)), Cmp: fmt.Sprintf("%s (%s)", fmtRate(ssRate), fmtDur(ss)),
		Ratio: fmtRatio(hckRate / ssRate), Target: "≥ 1× (aim 2×)", Result: verdict(hckRate >= ssRate && hckLeft == 0 && hckFailed == 0)})
	t.info(fmt.Sprintf("destroy %s CLOSE_WAIT: scan's sweep alone (took)", fmtCount(p.destroyN)),
		fmt.Sprintf("%s (%s)", fmtRate(float64(hckN)/took.Seconds()), fmtDur(took)), "", "")
	lib, serial := median(libT), median(serialT)
	libRate, serialRate := float64(libN)/lib.Seconds(), float64(libN)/serial.Seconds()
	t.info(fmt.Sprintf("destroy %s CLOSE_WAIT: the destroyer alone, %d netlink sockets, vs ss -K", fmtCount(p.destroyN), workers),
		fmt.Sprintf("%s (%s)", fmtRate(libRate), fmtDur(lib)), fmt.Sprintf("%s (%s)", fmtRate(ssRate), fmtDur(ss)), fmtRatio(libRate/ssRate))
	t.info(fmt.Sprintf("destroy %s CLOSE_WAIT: the destroyer alone, one netlink socket, vs ss -K", fmtCount(p.destroyN)),
		fmt.Sprintf("%s (%s)", fmtRate(serialRate), fmtDur(serial)), fmt.Sprintf("%s (%s)", fmtRate(ssRate), fmtDur(ss)), fmtRatio(serialRate/ssRate))
	t.note("destroy: `hck-bpf scan --live --close-wait-timeout 0.001` vs `ss -K state close-wait` on identical fresh sets, tracker attached for both; "+
		"took = reconcile, owners, decide, SOCK_DESTROY, without process start and logging (last run: %s)", lastSteps)
	t.note("destroy: the destroyer alone = destroy.New() and Destroy() of the set (lookup by tuple and cookie, then SOCK_DESTROY), in the bench process, "+
		"the set's cookies from a sock_diag dump (vishvananda/netlink) beforehand; split over %d netlink sockets, each on a thread of its own (GOMAXPROCS %d), "+
		"or one (a Destroyer opened under GOMAXPROCS 1)", workers, runtime.GOMAXPROCS(0))
	t.note("destroy: medians of %d rounds; sockets left in CLOSE_WAIT afterwards: hck-bpf %d, ss -K %d, the destroyer alone %d; failures: hck-bpf %d, the destroyer alone %d",
		len(hckT), hckLeft, ssLeft, libLeft, hckFailed, libFailed)
	return nil
}

// destroyInProcess destroys every CLOSE_WAIT socket of the bench's
// namespace with a Destroyer of this process: the sockets are listed
// first (untimed), then New and Destroy are timed. serial: the Destroyer
// is opened under GOMAXPROCS 1, so it uses one netlink socket. It returns
// the time, the sockets the call used, and the count that failed.
func destroyInProcess(serial bool) (time.Duration, int, int, error) {
	socks, err := netlink.SocketDiagTCP(unix.AF_INET)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("list sockets: %w", err)
	}
	var conns []*conn.Conn
	for _, s := range socks {
		if conn.State(s.State) != conn.CloseWait {
			continue
		}
		conns = append(conns, &conn.Conn{
			Cookie: uint64(s.ID.Cookie[0]) | uint64(s.ID.Cookie[1])<<32,
			State:  conn.CloseWait,
			Local:  netip.AddrPortFrom(ip4(s.ID.Source), s.ID.SourcePort),
			Remote: netip.AddrPortFrom(ip4(s.ID.Destination), s.ID.DestinationPort),
		})
	}
	workers := min(8, runtime.GOMAXPROCS(0)) // destroy.maxWorkers
	start := time.Now()
	var d *destroy.Destroyer
	if serial {
		// A Destroyer counts the CPUs Go may use when it opens.
		prev := runtime.GOMAXPROCS(1)
		d, err = destroy.New()
		runtime.GOMAXPROCS(prev)
		workers = 1
	} else {
		d, err = destroy.New()
	}
	if err != nil {
		return 0, 0, 0, err
	}
	defer d.Close()
	failed := 0
	for _, r := range d.Destroy(conns) {
		if r.Outcome != destroy.Destroyed {
			failed++
		}
	}
	return time.Since(start), workers, failed, nil
}

// ip4 is a dumped IPv4 address.
func ip4(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

// destroyOnce builds n CLOSE_WAIT sockets, runs kill, and counts what it
// destroyed. It returns the count found before, kill's time and the count
// left after.
func (b *bench) destroyOnce(ctx context.Context, n int, kill func() (time.Duration, error)) (int, time.Duration, int, error) {
	hs, _, err := b.buildSet(ctx, planCloseWait(n))
	if err != nil {
		return 0, 0, 0, err
	}
	defer hs.stop()
	// A holder is ready once its clients shut down; on a busy machine the
	// last FINs may still be on their way. Kill only a settled set, or a
	// late one is counted as left.
	var before int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if before, err = countState(ctx, "close-wait"); err != nil {
			return 0, 0, 0, err
		}
		if before >= n || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(10 * time.Millisecond) // older than the 1 ms threshold
	d, err := kill()
	if err != nil {
		return 0, 0, 0, err
	}
	after, err := countState(ctx, "close-wait")
	if err != nil {
		return 0, 0, 0, err
	}
	return before, d, after, nil
}

// countState counts the namespace's sockets in one state (ss names).
func countState(ctx context.Context, state string) (int, error) {
	_, out, err := timed(ctx, "ss", "-Htan", "state", state)
	if err != nil {
		return 0, err
	}
	return bytes.Count(out, []byte("\n")), nil
}
