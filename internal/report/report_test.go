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

// TestOwnerCgroupFields: an owner's cgroup, container id and pod uid are
// fields of every JSON line about its socket (those unknown are left
// out); the text lines keep the scripts' format.
func TestOwnerCgroupFields(t *testing.T) {
	c := testConns()[0]
	c.Owner = &conn.Owner{PID: 4242, Comm: "nginx", Cgroup: "/kubepods/besteffort/podx/abc", ContainerID: "abc", PodUID: "0f"}
	bare := testConns()[1] // an owner whose cgroup is unknown
	rep := sweep.Report{Items: []sweep.Item{
		{Conn: c, Outcome: sweep.Destroyed, Verdict: policy.Verdict{Reason: "r"}},
		{Conn: bare, Outcome: sweep.Destroyed, Verdict: policy.Verdict{Reason: "r"}},
	}}
	var b bytes.Buffer
	log, _, err := logging.New(&b, logging.Options{Format: logging.JSON})
	if err != nil {
		t.Fatal(err)
	}
	Items(log, &rep)
	Intent(log, &c, false)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	seen := 0
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		if ev["cookie"] == nil {
			continue // the human Reason line
		}
		seen++
		if ev["cookie"] == float64(bare.Cookie) {
			for _, k := range []string{"cgroup", "container_id", "pod_uid"} {
				if _, ok := ev[k]; ok {
					t.Errorf("owner without a known cgroup: line has %s: %s", k, l)
				}
			}
			continue
		}
		if ev["cgroup"] != c.Owner.Cgroup || ev["container_id"] != "abc" || ev["pod_uid"] != "0f" || ev["pid"] != float64(4242) {
			t.Errorf("line without the owner's cgroup fields: %s", l)
		}
		if msg := ev["message"].(string); !strings.HasSuffix(msg, c.String()) && !strings.Contains(msg, c.String()+" ") {
			t.Errorf("text %q does not keep the scripts' rendering %q", msg, c.String())
		}
	}
	if seen != 5 { // detect + terminated, twice, and the intent
		t.Errorf("%d lines about sockets, want 5:\n%s", seen, b.String())
	}
}

// TestProcessLines: after a failed destroy's line, one line per owner
// --kill-process dealt with; the summary counts them.
func TestProcessLines(t *testing.T) {
	c := testConns()[0]
	o := conn.Owner{PID: 7, Comm: "app", Cgroup: "/a"}
	it := sweep.Item{Conn: c, Outcome: sweep.Failed, Err: errors.New("eperm"), Verdict: policy.Verdict{Reason: "r"},
		Processes: []sweep.ProcessResult{
			{Owner: o, Outcome: sweep.ProcessTerminated, Grace: 5 * time.Second},
			{Owner: conn.Owner{PID: 8, Comm: "deaf"}, Outcome: sweep.ProcessKilled, Grace: 5 * time.Second},
			{Owner: conn.Owner{PID: 9, Comm: "sshd"}, Outcome: sweep.ProcessSpared, Err: errors.New("process sshd (pid 9) is protected")},
			{Owner: conn.Owner{PID: 10, Comm: "x"}, Outcome: sweep.ProcessGone},
			{Owner: conn.Owner{PID: 11, Comm: "y"}, Outcome: sweep.ProcessFailed, Err: errors.New("eperm")},
		}}
	rep := sweep.Report{Items: []sweep.Item{it}, Failed: 1, ProcessesTerminated: 1, ProcessesKilled: 1}
	var b bytes.Buffer
	log, _, err := logging.New(&b, logging.Options{Format: logging.Text})
	if err != nil {
		t.Fatal(err)
	}
	Items(log, &rep)
	Summary(log, &rep, false, 0)
	for _, want := range []string{
		"WARN - Terminated process PID 7 (app) with SIGTERM: its socket could not be destroyed",
		"WARN - Killed process PID 8 (deaf) with SIGKILL: still running 5s after SIGTERM",
		"WARN - Not signalling process PID 9 (sshd): process sshd (pid 9) is protected",
		"INFO - Process PID 10 (x) had already exited",
		"ERROR - Failed to signal process PID 11 (y): eperm",
		"WARN -   Processes terminated (--kill-process): 1 with SIGTERM, 1 with SIGKILL",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no line %q in:\n%s", want, b.String())
		}
	}
}
