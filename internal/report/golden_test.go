package report

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/logging"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/report")

// goldenReports are the sweeps whose lines testdata/report keeps.
func goldenReports() map[string]struct {
	rep     sweep.Report
	dry, v  bool
	logLost uint64
} {
	cw := conn.Conn{Cookie: 822408, State: conn.CloseWait, Exact: true,
		Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:39724"),
		Owner: &conn.Owner{PID: 18128, Comm: "python3"}}
	tw := conn.Conn{Cookie: 822410, State: conn.TimeWait, Timewait: true,
		Local: netip.MustParseAddrPort("[::1]:443"), Remote: netip.MustParseAddrPort("[::1]:50000")}
	ssh := conn.Conn{Cookie: 822412, State: conn.CloseWait, Exact: true,
		Local: netip.MustParseAddrPort("10.0.0.5:22"), Remote: netip.MustParseAddrPort("10.0.0.100:52431"),
		Owner: &conn.Owner{PID: 911, Comm: "sshd"}}
	la := conn.Conn{Cookie: 822414, State: conn.LastAck, Exact: true, Orphan: true,
		Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:39800")}
	fw := conn.Conn{Cookie: 822416, State: conn.FinWait1, Exact: true,
		Local: netip.MustParseAddrPort("127.0.0.1:39802"), Remote: netip.MustParseAddrPort("127.0.0.1:8080"),
		Owner: &conn.Owner{PID: 18128, Comm: "python3"}}
	verdict := func(c conn.Conn, age, threshold time.Duration, reason string) policy.Verdict {
		return policy.Verdict{Action: policy.Destroy, Age: age, Threshold: threshold,
			Reason: c.State.String() + " for " + policy.FormatAge(age, c.Exact) + " ≥ " + threshold.String() + " threshold (" + reason + ")"}
	}
	cwV := verdict(cw, 2900*time.Millisecond, 2*time.Second, "peer closed; the application never closed its socket")
	twV := verdict(tw, 125*time.Second, 120*time.Second, "waiting out the timewait timer")
	laV := verdict(la, 61*time.Second, time.Minute, "final ACK from peer missing")
	fwV := verdict(fw, 130*time.Second, 120*time.Second, "our FIN not acknowledged")
	sshV := policy.Verdict{Action: policy.Skip, Age: 90 * time.Second, Threshold: time.Minute, Skip: policy.SkipExcludedPort,
		SkipDetail: "local port 22 is excluded"}
	skipped := map[policy.SkipReason]int{policy.SkipExcludedPort: 1}
	// The host's namespace, and a pod's.
	for _, c := range []*conn.Conn{&cw, &tw, &ssh, &la, &fw} {
		c.NetNS = 4026531840
	}
	podCW, podTW := cw, tw
	podCW.NetNS, podCW.NetNSName = 4026532177, "pod:0f3c7b2e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
	podTW.NetNS, podTW.NetNSName = 4026532177, "pod:0f3c7b2e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
	return map[string]struct {
		rep     sweep.Report
		dry, v  bool
		logLost uint64
	}{
		"dry-run.txt": {dry: true, rep: sweep.Report{Scanned: 6, Hung: 3, Planned: 2, Skipped: skipped, Items: []sweep.Item{
			{Conn: cw, Verdict: cwV, Outcome: sweep.Planned},
			{Conn: ssh, Verdict: sshV, Outcome: sweep.Skipped},
			{Conn: tw, Verdict: twV, Outcome: sweep.Planned},
		}}},
		"all-netns.txt": {dry: true, v: true, rep: sweep.Report{Namespaces: 2, Scanned: 6, Hung: 4, Planned: 3, Skipped: skipped, Items: []sweep.Item{
			{Conn: cw, Verdict: cwV, Outcome: sweep.Planned},
			{Conn: podCW, Verdict: cwV, Outcome: sweep.Planned},
			{Conn: ssh, Verdict: sshV, Outcome: sweep.Skipped},
			{Conn: podTW, Verdict: twV, Outcome: sweep.Planned},
		}}},
		"live-verbose.txt": {v: true, logLost: 3, rep: sweep.Report{Scanned: 9, Hung: 7, Destroyed: 1, Gone: 1, Held: 1, Failed: 1,
			Unsupported: 1, Changed: 1, Skipped: skipped, Items: []sweep.Item{
				{Conn: cw, Verdict: cwV, Outcome: sweep.Destroyed},
				{Conn: ssh, Verdict: sshV, Outcome: sweep.Skipped},
				{Conn: tw, Verdict: twV, Outcome: sweep.Gone},
				{Conn: la, Verdict: laV, Outcome: sweep.Unsupported},
				{Conn: fw, Verdict: fwV, Outcome: sweep.Failed, Err: errors.New("destroy: operation not permitted")},
				{Conn: fw, Verdict: fwV, Outcome: sweep.Held},
				{Conn: cw, Verdict: cwV, Outcome: sweep.Changed, KernelState: conn.Established},
			}}},
	}
}

// TestGolden: a scan's lines, as the scripts print them (timestamps cut),
// are the ones kept in testdata/report.
func TestGolden(t *testing.T) {
	for name, g := range goldenReports() {
		var b bytes.Buffer
		log, _, err := logging.New(&b, logging.Options{Format: logging.Text, Verbose: g.v})
		if err != nil {
			t.Fatal(err)
		}
		Header(log, g.dry)
		Items(log, &g.rep)
		Summary(log, &g.rep, g.dry, g.logLost)
		got := stripTimes(b.String())
		path := filepath.Join("..", "..", "testdata", "report", name)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s: the lines differ from the golden file (go test ./internal/report -update rewrites it):\n--- got\n%s--- want\n%s", name, got, want)
		}
	}
}

// stripTimes cuts the "2006-01-02 15:04:05 - " at the head of each line.
func stripTimes(s string) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if _, rest, ok := strings.Cut(l, " - "); ok {
			l = rest
		}
		out.WriteString(l)
	}
	return out.String()
}
