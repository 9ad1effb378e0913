package daemon

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/logging"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// lockedBuffer is what reached the log's destination, safe to read while
// the flush timer writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// seenKiller records, at each Kill, what the log's destination held.
type seenKiller struct {
	out  *lockedBuffer
	seen []string
}

func (k *seenKiller) Kill(cs []*conn.Conn) []error {
	k.seen = append(k.seen, k.out.String())
	return make([]error, len(cs)) // all destroyed
}

// TestAuditedWritesBeforeDestroying: with the buffered writer, each batch's
// "Terminating" lines and the fate lines of the batches before it are
// written out before the batch's destroys are sent.
func TestAuditedWritesBeforeDestroying(t *testing.T) {
	var dst lockedBuffer
	log, out, err := logging.New(&dst, logging.Options{Format: logging.Text, Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	inner := &seenKiller{out: &dst}
	k := Audited(inner, log, out.Flush, false)
	mk := func(cookie uint64) *conn.Conn {
		return &conn.Conn{Cookie: cookie, State: conn.CloseWait,
			Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.1:5000"),
			Owner: &conn.Owner{PID: 7, Comm: "app"}}
	}
	batches := [][]*conn.Conn{{mk(11), mk(12)}, {mk(13)}}
	for _, batch := range batches {
		k.Kill(batch)
		// The service's sweep then logs each fate, buffered.
		for _, c := range batch {
			logSweep(log, &sweep.Report{Items: []sweep.Item{{Conn: *c, Outcome: sweep.Destroyed,
				Verdict: policy.Verdict{Reason: "test"}}}}, true)
		}
	}
	if len(inner.seen) != 2 {
		t.Fatalf("%d batches destroyed, want 2", len(inner.seen))
	}
	for i, want := range []string{
		"INFO - Terminating: tcp CLOSE_WAIT 127.0.0.1:80 -> 127.0.0.1:5000 (PID: 7, Process: app) (socket cookie 11)",
		"INFO - Terminating: tcp CLOSE_WAIT 127.0.0.1:80 -> 127.0.0.1:5000 (PID: 7, Process: app) (socket cookie 12)",
	} {
		if !strings.Contains(inner.seen[0], want) {
			t.Errorf("line %d not written before the first batch's destroys:\n%s\n--- written:\n%s", i, want, inner.seen[0])
		}
	}
	for _, cookie := range []int{11, 12} {
		fate := fmt.Sprintf("(socket cookie %d)", cookie)
		if !strings.Contains(inner.seen[1], "INFO - Terminated: ") || strings.Count(inner.seen[1], fate) != 2 {
			t.Errorf("the first batch's fate line for cookie %d not written before the second batch:\n%s", cookie, inner.seen[1])
		}
	}
	if !strings.Contains(inner.seen[1], "Terminating: tcp CLOSE_WAIT 127.0.0.1:80 -> 127.0.0.1:5000 (PID: 7, Process: app) (socket cookie 13)") {
		t.Errorf("second batch's line not written before its destroys:\n%s", inner.seen[1])
	}
}

type seenProcs struct {
	out  *lockedBuffer
	seen string
}

type heldProc struct{ o conn.Owner }

func (p heldProc) Owner() conn.Owner { return p.o }
func (heldProc) Release()            {}

func (s *seenProcs) Hold(o conn.Owner) (sweep.Process, error) { return heldProc{o}, nil }
func (s *seenProcs) Terminate(ps []sweep.Process) []sweep.ProcessResult {
	s.seen = s.out.String()
	return make([]sweep.ProcessResult, len(ps))
}

// TestAuditedProcessesWritesBeforeSignalling: --kill-process in the
// service writes a "Signalling:" line per process out before any signal.
func TestAuditedProcessesWritesBeforeSignalling(t *testing.T) {
	var dst lockedBuffer
	log, out, err := logging.New(&dst, logging.Options{Format: logging.Text, Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	inner := &seenProcs{out: &dst}
	p := AuditedProcesses(inner, 5*time.Second, log, out.Flush)
	h, _ := p.Hold(conn.Owner{PID: 42, Comm: "app"})
	p.Terminate([]sweep.Process{h})
	if want := "WARN - Signalling: SIGTERM to PID 42 (app), SIGKILL after 5s if it is still running"; !strings.Contains(inner.seen, want) {
		t.Errorf("not written before the signal: %q\n--- written:\n%s", want, inner.seen)
	}
}
