package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/logging"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

func testConns() []conn.Conn {
	return []conn.Conn{
		{Cookie: 7, State: conn.CloseWait, Local: netip.MustParseAddrPort("10.0.0.5:8080"), Remote: netip.MustParseAddrPort("10.0.0.100:52431")},
		{Cookie: 1 << 40, State: conn.TimeWait, Local: netip.MustParseAddrPort("[::1]:443"), Remote: netip.MustParseAddrPort("[::ffff:10.0.0.1]:9"),
			Exact: true, Owner: &conn.Owner{PID: 4242, Comm: "nginx worker"}},
	}
}

func TestTextOf(t *testing.T) {
	for _, c := range testConns() {
		got := textOf(&c, false)
		if got.conn != c.String() || got.local != c.Local.String() || got.remote != c.Remote.String() {
			t.Errorf("textOf %+v = %+v, want %q", c, got, c.String())
		}
	}
}

// TestItemsLines: each outcome's line says what the scripts' format says,
// the socket rendered as conn.Conn.String().
func TestItemsLines(t *testing.T) {
	var rep sweep.Report
	outcomes := []sweep.Outcome{sweep.Planned, sweep.Destroyed, sweep.Gone, sweep.Held, sweep.Failed, sweep.Unsupported, sweep.Skipped}
	for i, o := range outcomes {
		c := testConns()[i%2]
		v := policy.Verdict{Age: 75300 * time.Millisecond, Threshold: time.Minute, Reason: "CLOSE_WAIT for 75.3s", SkipDetail: "local port 22 is excluded"}
		it := sweep.Item{Conn: c, Verdict: v, Outcome: o}
		if o == sweep.Failed {
			it.Err = errors.New("destroy: boom")
		}
		rep.Items = append(rep.Items, it)
	}
	for _, verbose := range []bool{false, true} {
		var b bytes.Buffer
		log, _, err := logging.New(&b, logging.Options{Format: logging.JSON, Verbose: verbose})
		if err != nil {
			t.Fatal(err)
		}
		Items(log, &rep)
		var msgs []string
		for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			var ev struct{ Message, Action string }
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, ev.Message)
		}
		var want []string
		for _, it := range rep.Items {
			c := &it.Conn
			if it.Outcome == sweep.Skipped {
				if verbose {
					want = append(want, fmt.Sprintf("Skipping %s: %s", c, it.Verdict.SkipDetail))
				}
				continue
			}
			want = append(want, fmt.Sprintf("Hung connection detected: %s", c))
			want = append(want, map[sweep.Outcome]string{
				sweep.Planned:     fmt.Sprintf("[DRY RUN] Would terminate: %s", c),
				sweep.Destroyed:   fmt.Sprintf("Terminated: %s after %s (socket cookie %d)", c, policy.FormatAge(it.Verdict.Age, c.Exact), c.Cookie),
				sweep.Gone:        fmt.Sprintf("Already gone: %s", c),
				sweep.Held:        fmt.Sprintf("Held back by --max-kills: %s", c),
				sweep.Failed:      fmt.Sprintf("Failed to terminate: %s", c),
				sweep.Unsupported: fmt.Sprintf("Not destroyed, this kernel cannot destroy it reliably: %s", c),
			}[it.Outcome])
		}
		if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
			t.Errorf("verbose %v: lines\n%s\nwant\n%s", verbose, strings.Join(msgs, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestDurationFieldsHaveUnits: every duration in a JSON line says its unit
// in its name, in seconds like age_s and threshold_s: the summary's took_s.
func TestDurationFieldsHaveUnits(t *testing.T) {
	var b bytes.Buffer
	log, _, err := logging.New(&b, logging.Options{Format: logging.JSON})
	if err != nil {
		t.Fatal(err)
	}
	rep := sweep.Report{Skipped: map[policy.SkipReason]int{}, Took: 1500 * time.Millisecond}
	Summary(log, &rep, false, 0)
	var sum map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["summary"] == "sweep" {
			sum = ev
		}
	}
	if sum == nil {
		t.Fatalf("no summary line in %s", b.String())
	}
	if _, ok := sum["took"]; ok {
		t.Errorf("summary has a took without a unit: %v", sum)
	}
	if sum["took_s"] != 1.5 {
		t.Errorf("summary took_s = %v, want 1.5", sum["took_s"])
	}
}

// TestSummaryLogLost: log lines that could not be written show in the
// summary, as a field and, when there are any, as a warning line.
func TestSummaryLogLost(t *testing.T) {
	for _, lost := range []uint64{0, 12} {
		var j, txt bytes.Buffer
		jlog, _, err := logging.New(&j, logging.Options{Format: logging.JSON})
		if err != nil {
			t.Fatal(err)
		}
		tlog, _, err := logging.New(&txt, logging.Options{Format: logging.Text})
		if err != nil {
			t.Fatal(err)
		}
		rep := sweep.Report{Skipped: map[policy.SkipReason]int{}}
		Summary(jlog, &rep, false, lost)
		Summary(tlog, &rep, false, lost)
		if want := fmt.Sprintf(`"log_lines_lost":%d`, lost); !strings.Contains(j.String(), want) {
			t.Errorf("lost %d: JSON summary lacks %s:\n%s", lost, want, j.String())
		}
		line := fmt.Sprintf("WARN -   Log lines not written: %d (see stderr)", lost)
		if got := strings.Contains(txt.String(), line); got != (lost > 0) {
			t.Errorf("lost %d: text summary has %q: %v\n%s", lost, line, got, txt.String())
		}
	}
}
