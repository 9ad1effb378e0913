package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ssSamples are `ss -tanpo` outputs kept in the repository's testdata/ss
// (see its README), with what the scripts' parse must find in each.
var ssSamples = []struct {
	file        string
	lines, hung int
}{
	// One line of each shape: owned, timer only, IPv6, port 22, a
	// protected process. FIN-WAIT-2 and the first CLOSE-WAIT are closing,
	// owned, not on port 22, not protected; TIME-WAIT has no process.
	{"tanpo-shapes.txt", 7, 2},
	// Captured in a namespace: two CLOSE-WAIT / FIN-WAIT-2 pairs (IPv4,
	// IPv6), one TIME-WAIT (no process), ESTABLISHED and LISTEN.
	{"tanpo-netns.txt", 9, 4},
}

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ss", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSS(t *testing.T) {
	for _, sample := range ssSamples {
		conns := parseSS(readSample(t, sample.file))
		if len(conns) != sample.lines {
			t.Errorf("%s: parsed %d lines, want %d", sample.file, len(conns), sample.lines)
		}
		if n := scriptsHung(conns); n != sample.hung {
			t.Errorf("%s: scriptsHung = %d, want %d", sample.file, n, sample.hung)
		}
	}
	conns := parseSS(readSample(t, "tanpo-shapes.txt"))
	cw := conns[4]
	if cw.State != "CLOSE-WAIT" || cw.LocalIP != "127.0.0.1" || cw.LocalPort != 8080 || cw.PeerPort != 37814 ||
		cw.PID != 31927 || cw.Process != "python3" || cw.Timer != "" {
		t.Errorf("CLOSE-WAIT line: %+v", cw)
	}
	tw := conns[3]
	if tw.PID != 0 || tw.Timer != "timewait" || tw.TimerLeft != "59sec" {
		t.Errorf("TIME-WAIT line: %+v", tw)
	}
	la := conns[6]
	if la.LocalIP != "::1" || la.LocalPort != 443 || la.Process != "sshd" || la.Timer != "on" || la.TimerLeft != "200ms" {
		t.Errorf("LAST-ACK line: %+v", la)
	}
	real := parseSS(readSample(t, "tanpo-netns.txt"))
	if c := real[8]; c.State != "CLOSE-WAIT" || c.LocalIP != "::1" || c.PeerPort != 35910 || c.PID != 9775 || c.Process != "python3" {
		t.Errorf("IPv6 CLOSE-WAIT line: %+v", c)
	}
}

func FuzzParseSS(f *testing.F) {
	for _, sample := range ssSamples {
		f.Add(readSample(f, sample.file))
	}
	f.Add([]byte("State\nESTAB 0 0 :1 [\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		scriptsHung(parseSS(b))
	})
}

func TestPlanMixed(t *testing.T) {
	for _, n := range []int{1000, 9000, 50000, 100000} {
		specs := planMixed(n)
		socks, hung := 0, 0
		for _, s := range specs {
			if s.sockets() > maxHolderFDs {
				t.Errorf("n=%d: a holder needs %d fds, more than %d", n, s.sockets(), maxHolderFDs)
			}
			socks += s.sockets()
			hung += s.hung()
		}
		if socks > n || socks < n-2*len(specs) {
			t.Errorf("n=%d: %d sockets planned", n, socks)
		}
		if pct := 100 * float64(hung) / float64(n); pct < 1.5 || pct > 2.5 {
			t.Errorf("n=%d: %d hung (%.1f%%), want about 2%%", n, hung, pct)
		}
	}
}

func TestPlanCloseWait(t *testing.T) {
	for _, n := range []int{2000, 10000, 50000} {
		total := 0
		for _, s := range planCloseWait(n) {
			if s.sockets() > maxHolderFDs {
				t.Errorf("n=%d: a holder needs %d fds", n, s.sockets())
			}
			total += s.CW
		}
		if total != n {
			t.Errorf("n=%d: %d CLOSE_WAIT planned", n, total)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(101-i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := percentile(ds, p); got != want {
			t.Errorf("p%v = %s, want %s", p, got, want)
		}
	}
	if got := median([]time.Duration{3, 1, 2, 4}); got != 2 {
		t.Errorf("median = %d, want 2", got)
	}
}

func TestFmtCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 60006: "60,006", 1500006: "1,500,006"} {
		if got := fmtCount(n); got != want {
			t.Errorf("fmtCount(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestStatTicks: utime+stime from a /proc/PID/stat line whose command
// name holds spaces and a parenthesis.
func TestStatTicks(t *testing.T) {
	line := "4242 (hck (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 17 25 0 0 20 0 9 0 100 1000 300 0\n"
	n, err := statTicks(line)
	if err != nil || n != 42 {
		t.Errorf("statTicks = %d, %v; want 42", n, err)
	}
	if _, err := statTicks("4242 (x) S 1 2"); err == nil {
		t.Error("a short line parsed")
	}
	if _, err := procCPUTicks(os.Getpid()); err != nil {
		t.Error(err)
	}
}
