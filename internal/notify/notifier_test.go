package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// receiver is a webhook on loopback recording what it gets.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	// answer, when set, answers request i (0-based) itself.
	answer func(i int, w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	got  []received
	more chan struct{}
}

type received struct {
	at   time.Time
	body []byte
	hdr  http.Header
	path string
}

func newReceiver(t *testing.T, answer func(i int, w http.ResponseWriter, r *http.Request)) *receiver {
	rc := &receiver{t: t, answer: answer, more: make(chan struct{}, 100)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		i := len(rc.got)
		rc.got = append(rc.got, received{at: at, body: body, hdr: r.Header.Clone(), path: r.URL.RequestURI()})
		rc.mu.Unlock()
		rc.more <- struct{}{}
		if rc.answer != nil {
			rc.answer(i, w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// hook is the receiver's URL with a secret path, in format f.
func (rc *receiver) hook(f Format) Webhook {
	w, err := Parse(f.String() + "=" + rc.srv.URL + "/services/SECRET?token=SECRET")
	if err != nil {
		rc.t.Fatal(err)
	}
	return w
}

// wait waits for n requests in all (a generous bound: a hang, not a
// measure).
func (rc *receiver) wait(n int) []received {
	rc.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		rc.mu.Lock()
		if len(rc.got) >= n {
			out := append([]received(nil), rc.got...)
			rc.mu.Unlock()
			return out
		}
		rc.mu.Unlock()
		select {
		case <-rc.more:
		case <-deadline:
			rc.t.Fatalf("%d requests after 30s, want %d", len(rc.requests()), n)
		}
	}
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// destroyed is one destroyed socket in a report.
type destroyed struct {
	state  conn.State
	remote string // IP
	comm   string
	rule   string
}

var port uint16 = 40000

// report is a sweep report that destroyed ds.
func report(ds ...destroyed) *sweep.Report {
	r := &sweep.Report{}
	for _, d := range ds {
		port++
		c := conn.Conn{State: d.state, Local: netip.MustParseAddrPort(fmt.Sprintf("10.1.1.1:%d", port)),
			Remote: netip.AddrPortFrom(netip.MustParseAddr(d.remote), 443), NetNSName: "pod:default/web"}
		if d.comm != "" {
			c.Owner = &conn.Owner{PID: 1000 + int(port), Comm: d.comm}
		}
		r.Items = append(r.Items, sweep.Item{Conn: c, Verdict: policy.Verdict{Rule: d.rule}, Outcome: sweep.Destroyed})
		r.Destroyed++
	}
	// A socket not destroyed is never counted.
	r.Items = append(r.Items, sweep.Item{Conn: conn.Conn{State: conn.CloseWait,
		Remote: netip.MustParseAddrPort("10.9.9.9:1")}, Outcome: sweep.Held})
	r.Held++
	return r
}

func one(remote string) *sweep.Report {
	return report(destroyed{state: conn.CloseWait, remote: remote, comm: "java"})
}

func shutdown(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

var meta = Meta{Host: "node-1", Mode: "live", Version: "1.2.3"}

func decodeJSON(t *testing.T, body []byte) Message {
	t.Helper()
	var m Message
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return m
}

// TestBatching: several reports in a window make one message, with the
// counts by state and rule and the top peers and processes.
func TestBatching(t *testing.T) {
	rc := newReceiver(t, nil)
	n := New([]Webhook{rc.hook(JSON)}, Options{Meta: meta, Window: 5 * time.Second})
	defer shutdown(t, n)
	d := func(st conn.State, ip, comm, rule string) destroyed { return destroyed{st, ip, comm, rule} }
	n.Swept(report(
		d(conn.CloseWait, "10.0.0.1", "java", ""), d(conn.CloseWait, "10.0.0.1", "java", ""),
		d(conn.FinWait2, "10.0.0.2", "nginx", "web")))
	// Apart (not a measure): without the window the first would go alone.
	time.Sleep(200 * time.Millisecond)
	n.Swept(&sweep.Report{}) // nothing destroyed: nothing to say
	n.Swept(report(
		d(conn.CloseWait, "10.0.0.1", "java", ""), d(conn.CloseWait, "10.0.0.1", "", ""),
		d(conn.LastAck, "10.0.0.2", "nginx", "web"), d(conn.TimeWait, "10.0.0.3", "", ""),
		d(conn.CloseWait, "::ffff:10.0.0.3", "curl", ""), d(conn.CloseWait, "10.0.0.4", "envoy", ""),
		d(conn.CloseWait, "2001:db8::5", "redis", ""), d(conn.CloseWait, "10.0.0.6", "sshd", ""),
		d(conn.CloseWait, "10.0.0.2", "java", "web"), d(conn.CloseWait, "10.0.0.2", "java", "")))
	got := rc.wait(1)
	m := decodeJSON(t, got[0].body)
	if m.Destroyed != 13 || m.Host != "node-1" || m.Mode != "live" || m.Version != "1.2.3" || m.Schema != Schema {
		t.Errorf("message %+v", m)
	}
	if want := "13 connections destroyed on host node-1 in the last 5 s"; m.Text != want {
		t.Errorf("text %q, want %q", m.Text, want)
	}
	if fmt.Sprint(m.ByState) != fmt.Sprint(map[string]int{"CLOSE_WAIT": 10, "FIN_WAIT2": 1, "LAST_ACK": 1, "TIME_WAIT": 1}) {
		t.Errorf("by state %v", m.ByState)
	}
	if fmt.Sprint(m.ByRule) != fmt.Sprint(map[string]int{"default": 10, "web": 3}) {
		t.Errorf("by rule %v", m.ByRule)
	}
	wantPeers := []Count{{"10.0.0.1", 4}, {"10.0.0.2", 4}, {"10.0.0.3", 2}, {"10.0.0.4", 1}, {"10.0.0.6", 1}}
	if fmt.Sprint(m.TopPeers) != fmt.Sprint(wantPeers) {
		t.Errorf("top peers %v, want %v", m.TopPeers, wantPeers)
	}
	wantProcs := []Count{{"java", 5}, {"-", 2}, {"nginx", 2}, {"curl", 1}, {"envoy", 1}}
	if fmt.Sprint(m.TopProcesses) != fmt.Sprint(wantProcs) {
		t.Errorf("top processes %v, want %v", m.TopProcesses, wantProcs)
	}
	if len(m.Connections) != Examples || m.MoreConnections != 3 {
		t.Errorf("%d connections listed, %d more", len(m.Connections), m.MoreConnections)
	}
	if c := m.Connections[2]; c.State != "FIN_WAIT2" || c.Remote != "10.0.0.2:443" || c.Process != "nginx" || c.Rule != "web" || c.NetNS != "pod:default/web" {
		t.Errorf("third connection %+v", c)
	}
	if !m.WindowEnd.After(m.WindowStart) {
		t.Errorf("window %v to %v", m.WindowStart, m.WindowEnd)
	}
	shutdown(t, n)
	if got := rc.requests(); len(got) != 1 {
		t.Errorf("%d messages, want 1", len(got))
	}
	hooks, dropped := n.Stats()
	if hooks[0].Sent != 1 || hooks[0].Failed != 0 || dropped != 0 {
		t.Errorf("stats %+v, dropped %d", hooks[0], dropped)
	}
}

// TestProcessesEnded: what --kill-process ended is told too.
func TestProcessesEnded(t *testing.T) {
	rc := newReceiver(t, nil)
	n := New([]Webhook{rc.hook(JSON)}, Options{Meta: meta, Window: time.Hour})
	r := &sweep.Report{Failed: 1, ProcessesTerminated: 1, ProcessesKilled: 1, Items: []sweep.Item{{
		Conn: conn.Conn{State: conn.CloseWait}, Outcome: sweep.Failed,
		Processes: []sweep.ProcessResult{
			{Owner: conn.Owner{PID: 7, Comm: "stuck"}, Outcome: sweep.ProcessTerminated},
			{Owner: conn.Owner{PID: 8, Comm: "stuck"}, Outcome: sweep.ProcessKilled},
			{Owner: conn.Owner{PID: 9, Comm: "sshd"}, Outcome: sweep.ProcessSpared},
		}}}}
	n.Swept(r)
	shutdown(t, n)
	got := rc.wait(1)
	m := decodeJSON(t, got[0].body)
	if m.Destroyed != 0 || m.ProcessesTerminated != 1 || m.ProcessesKilled != 1 ||
		fmt.Sprint(m.EndedProcesses) != fmt.Sprint([]Count{{"stuck", 2}}) {
		t.Errorf("message %+v", m)
	}
	if !strings.Contains(m.Text, "2 processes ended by --kill-process") {
		t.Errorf("text %q", m.Text)
	}
}

// TestRateLimit: with the bucket empty a message waits for a token, and
// windows that end meanwhile join it.
func TestRateLimit(t *testing.T) {
	const refill = 3 * time.Second
	rc := newReceiver(t, nil)
	n := New([]Webhook{rc.hook(JSON)}, Options{Meta: meta, Window: 50 * time.Millisecond, Burst: 1, Refill: refill})
	defer shutdown(t, n)
	n.Swept(one("10.0.0.1"))
	rc.wait(1)
	n.Swept(one("10.0.0.2"))
	// Its window ends and its message waits for the token.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if hooks, _ := n.Stats(); hooks[0].RateLimited > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no wait for a token after 30s")
		}
	}
	n.Swept(one("10.0.0.3"))
	n.Swept(one("10.0.0.3"))
	got := rc.wait(2)
	// Lower bounds only, by the receiver's clock: the token came a refill
	// after the first was taken, before the first request arrived.
	if gap := got[1].at.Sub(got[0].at); gap < refill-time.Second {
		t.Errorf("second message %v after the first, want at least about %v", gap, refill)
	}
	m := decodeJSON(t, got[1].body)
	if m.Destroyed != 3 || fmt.Sprint(m.TopPeers) != fmt.Sprint([]Count{{"10.0.0.3", 2}, {"10.0.0.2", 1}}) {
		t.Errorf("second message: %d destroyed, peers %v; want the three held back", m.Destroyed, m.TopPeers)
	}
}

// TestRetryAfter: a 429 or 503 with Retry-After (seconds or an HTTP date)
// delays the next try at least that long, by the receiver's clock.
func TestRetryAfter(t *testing.T) {
	for _, c := range []struct {
		name   string
		status int
		after  func(now time.Time) (string, time.Time) // header, earliest next try
	}{
		{"429 seconds", http.StatusTooManyRequests, func(now time.Time) (string, time.Time) {
			return "1", now.Add(time.Second)
		}},
		{"503 date", http.StatusServiceUnavailable, func(now time.Time) (string, time.Time) {
			at := now.Add(2 * time.Second).Truncate(time.Second)
			return at.UTC().Format(http.TimeFormat), at
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var earliest time.Time
			rc := newReceiver(t, func(i int, w http.ResponseWriter, r *http.Request) {
				if i == 0 {
					var h string
					h, earliest = c.after(time.Now())
					w.Header().Set("Retry-After", h)
					w.WriteHeader(c.status)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
			// Without Retry-After the next try would come 10ms later.
			n := New([]Webhook{rc.hook(Slack)}, Options{Meta: meta, Window: 10 * time.Millisecond, Backoff: 10 * time.Millisecond})
			n.Swept(one("10.0.0.1"))
			got := rc.wait(2)
			shutdown(t, n)
			if got[1].at.Before(earliest) {
				t.Errorf("retried at %v, before %v", got[1].at, earliest)
			}
			if hooks, _ := n.Stats(); hooks[0].Sent != 1 || hooks[0].Retried != 1 || hooks[0].RateLimited != 1 || hooks[0].Failed != 0 {
				t.Errorf("stats %+v", hooks[0])
			}
		})
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                               0,
		"7":                              7 * time.Second,
		" 2 ":                            2 * time.Second,
		"-1":                             0,
		"soon":                           0,
		"99999":                          time.Minute,
		"Fri, 02 Jan 2026 03:04:35 GMT":  30 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT":  0,
		"Friday, 02-Jan-26 03:04:15 GMT": 10 * time.Second,
	} {
		if got := max(0, RetryAfter(in, now, time.Minute)); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestRetriesBounded: a receiver that keeps failing gets 1+Retries tries;
// one that refuses (4xx) gets one. Neither message is sent again.
func TestRetriesBounded(t *testing.T) {
	for _, c := range []struct {
		status, tries int
	}{{http.StatusInternalServerError, 3}, {http.StatusBadGateway, 3}, {http.StatusNotFound, 1}, {http.StatusMovedPermanently, 1}} {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
				http.Error(w, "no_service", c.status)
			})
			n := New([]Webhook{rc.hook(Discord)}, Options{Meta: meta, Window: 10 * time.Millisecond,
				Retries: 2, Backoff: 10 * time.Millisecond})
			n.Swept(one("10.0.0.1"))
			rc.wait(c.tries)
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if hooks, _ := n.Stats(); hooks[0].Failed > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("not failed after 30s")
				}
			}
			shutdown(t, n)
			hooks, _ := n.Stats()
			if got := len(rc.requests()); got != c.tries {
				t.Errorf("%d tries, want %d", got, c.tries)
			}
			if hooks[0].Failed != 1 || hooks[0].Sent != 0 || hooks[0].Retried != uint64(c.tries-1) {
				t.Errorf("stats %+v", hooks[0])
			}
			le := hooks[0].LastError
			if !strings.Contains(le, fmt.Sprint(c.status)) || strings.Contains(le, "SECRET") {
				t.Errorf("last error %q", le)
			}
		})
	}
}

// TestQueueFull: past the queue's bound connections are dropped and
// counted, and the next message says so.
func TestQueueFull(t *testing.T) {
	rc := newReceiver(t, nil)
	n := New([]Webhook{rc.hook(JSON)}, Options{Meta: meta, Window: time.Hour, Queue: 5})
	var ds []destroyed
	for range 8 {
		ds = append(ds, destroyed{state: conn.CloseWait, remote: "10.0.0.1"})
	}
	n.Swept(report(ds...))
	if _, dropped := n.Stats(); dropped != 3 {
		t.Errorf("dropped %d, want 3", dropped)
	}
	shutdown(t, n)
	m := decodeJSON(t, rc.wait(1)[0].body)
	if m.Destroyed != 5 || m.Dropped != 3 || !strings.Contains(m.Text, "3 more not reported") {
		t.Errorf("message: %d destroyed, %d dropped, %q", m.Destroyed, m.Dropped, m.Text)
	}
}

// TestSweptNeverWaits: while the receiver holds a request, Swept still
// returns, every time.
func TestSweptNeverWaits(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	n := New([]Webhook{rc.hook(Slack)}, Options{Meta: meta, Window: time.Millisecond, Burst: 1000, Queue: 100})
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Swept(one("10.0.0.1"))
		rc.wait(1) // the receiver holds it
		for range 1000 {
			n.Swept(one("10.0.0.2"))
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Swept blocked while the receiver held a request")
	}
	close(release)
	shutdown(t, n)
	if _, dropped := n.Stats(); dropped == 0 {
		t.Error("nothing dropped from a queue of 100 after 1000 reports")
	}
}

// TestShutdownFlush: Shutdown sends the window under way, with no token
// left and a window of an hour.
func TestShutdownFlush(t *testing.T) {
	rc := newReceiver(t, nil)
	n := New([]Webhook{rc.hook(JSON)}, Options{Meta: meta, Window: time.Hour, Burst: 1, Refill: time.Hour})
	n.Swept(one("10.0.0.1"))
	shutdown(t, n)
	if got := rc.requests(); len(got) != 1 || decodeJSON(t, got[0].body).Destroyed != 1 {
		t.Fatalf("%d messages after shutdown, want 1 (the window under way)", len(got))
	}
	n.Swept(one("10.0.0.2")) // after: ignored
	if err := n.Shutdown(context.Background()); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
	if got := rc.requests(); len(got) != 1 {
		t.Errorf("%d messages, want 1", len(got))
	}

	// A message held by the bucket is sent at shutdown too.
	rc = newReceiver(t, nil)
	n = New([]Webhook{rc.hook(JSON)}, Options{Meta: meta, Window: 10 * time.Millisecond, Burst: 1, Refill: time.Hour})
	n.Swept(one("10.0.0.1"))
	rc.wait(1)
	n.Swept(one("10.0.0.2"))
	n.Swept(one("10.0.0.2"))
	shutdown(t, n)
	got := rc.requests()
	if len(got) != 2 || decodeJSON(t, got[1].body).Destroyed != 2 {
		t.Fatalf("%d messages after shutdown, want 2", len(got))
	}
}

// TestShutdownGivesUp: a receiver that never answers does not hold the
// shutdown past its context.
func TestShutdownGivesUp(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	n := New([]Webhook{rc.hook(JSON)}, Options{Meta: meta, Window: time.Millisecond})
	n.Swept(one("10.0.0.1"))
	rc.wait(1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := n.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown: %v, want the deadline", err)
	}
	if hooks, _ := n.Stats(); hooks[0].Failed != 1 || strings.Contains(hooks[0].LastError, "SECRET") {
		t.Errorf("stats %+v", hooks[0])
	}
}

// TestNetworkErrorRedacted: a receiver that is not there: retried, then
// failed, and the error shows no path or query.
func TestNetworkErrorRedacted(t *testing.T) {
	rc := newReceiver(t, nil)
	w := rc.hook(JSON)
	rc.srv.Close()
	n := New([]Webhook{w}, Options{Meta: meta, Window: time.Millisecond, Retries: 1, Backoff: time.Millisecond})
	n.Swept(one("10.0.0.1"))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if hooks, _ := n.Stats(); hooks[0].Failed > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not failed after 30s")
		}
	}
	shutdown(t, n)
	hooks, _ := n.Stats()
	le := hooks[0].LastError
	if hooks[0].Retried != 1 || !strings.Contains(le, "post to webhook 0 (json http://127.0.0.1:") ||
		!strings.Contains(le, "/...)") || strings.Contains(le, "SECRET") {
		t.Errorf("stats %+v", hooks[0])
	}
}
