package main

import (
	"testing"
	"time"
)

// Output of `ss -tanpo` (iproute2 6.1) in a namespace with one socket in
// each interesting shape: owned, timer only, IPv6.
const ssSample = `State      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process
LISTEN     0      128        127.0.0.1:8080       0.0.0.0:*     users:(("python3",pid=31927,fd=3))
ESTAB      0      0          127.0.0.1:37800    127.0.0.1:8080  users:(("python3",pid=31927,fd=4))
FIN-WAIT-2 0      0          127.0.0.1:37814    127.0.0.1:8080  users:(("python3",pid=31927,fd=6))
TIME-WAIT  0      0          127.0.0.1:37822    127.0.0.1:8080  timer:(timewait,59sec,0)
CLOSE-WAIT 1      0          127.0.0.1:8080     127.0.0.1:37814 users:(("python3",pid=31927,fd=7))
CLOSE-WAIT 1      0          127.0.0.1:22       127.0.0.1:37999 users:(("myapp",pid=1,fd=7))
LAST-ACK   0      9          [::1]:443          [::1]:50000     users:(("sshd",pid=2,fd=7)) timer:(on,200ms,3)
`

func TestParseSS(t *testing.T) {
	conns := parseSS([]byte(ssSample))
	if len(conns) != 7 {
		t.Fatalf("parsed %d lines, want 7", len(conns))
	}
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
	// FIN-WAIT-2 and the first CLOSE-WAIT: closing, owned, not port 22,
	// not protected. TIME-WAIT has no process; the others are excluded.
	if n := scriptsHung(conns); n != 2 {
		t.Errorf("scriptsHung = %d, want 2", n)
	}
}

func FuzzParseSS(f *testing.F) {
	f.Add([]byte(ssSample))
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
