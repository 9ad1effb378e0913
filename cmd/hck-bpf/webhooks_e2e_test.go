package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// hookReceiver is a webhook on the loopback of the test's namespace,
// where the service runs.
type hookReceiver struct {
	port int
	// hold, when set, runs before the answer (a slow receiver).
	hold func(r *http.Request)

	mu     sync.Mutex
	bodies [][]byte
	got    chan struct{}
}

func newHookReceiver(t *testing.T, ns *testnet.NS, hold func(r *http.Request)) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{hold: hold, got: make(chan struct{}, 100)}
	var l net.Listener
	ns.MustDo(func() (err error) {
		l, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, body)
		rc.mu.Unlock()
		rc.got <- struct{}{}
		if rc.hold != nil {
			rc.hold(r)
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	rc.port = l.Addr().(*net.TCPAddr).Port
	return rc
}

func (rc *hookReceiver) messages() [][]byte {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([][]byte(nil), rc.bodies...)
}

// wait waits up to timeout for the first message.
func (rc *hookReceiver) wait(t *testing.T, timeout time.Duration, logs *logWatch) {
	t.Helper()
	select {
	case <-rc.got:
	case <-time.After(timeout):
		t.Fatalf("no webhook message after %v; output:\n%s", timeout, logs.all())
	}
}

// slackBody is a Slack incoming webhook's payload (text and blocks),
// decoded strictly.
type slackBody struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type     string      `json:"type"`
		Text     *slackText  `json:"text"`
		Fields   []slackText `json:"fields"`
		Elements []slackText `json:"elements"`
	} `json:"blocks"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func decodeSlack(t *testing.T, body []byte) (slackBody, string) {
	t.Helper()
	var m slackBody
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode a Slack payload %s: %v", body, err)
	}
	var all strings.Builder
	all.WriteString(m.Text + "\n")
	for _, b := range m.Blocks {
		if b.Text != nil {
			all.WriteString(b.Text.Text + "\n")
		}
		for _, f := range append(b.Fields, b.Elements...) {
			all.WriteString(f.Text + "\n")
		}
	}
	return m, all.String()
}

// TestWebhookBatched: "run --live --webhook slack=..." destroys three
// hung sockets in three sweeps (their deadlines apart) and the receiver
// gets ONE Slack message naming all three, their processes, and the host.
func TestWebhookBatched(t *testing.T) {
	h := newE2E(t)
	rc := newHookReceiver(t, h.ns, nil)
	hook := fmt.Sprintf("slack=http://127.0.0.1:%d/services/T0/B0/SECRET", rc.port)
	svc := h.startService("run", "--live", "--close-wait-timeout", "1.5", "--webhook", hook,
		"--webhook-window", "4", "--exclude-ports", "22,"+strconv.Itoa(rc.port))
	if l, ok := svc.logs.find("webhooks: one message per 4s"); !ok || strings.Contains(l, "SECRET") ||
		!strings.Contains(l, "slack http://127.0.0.1:"+strconv.Itoa(rc.port)+"/...") {
		t.Errorf("start line %q: want the webhook without its path", l)
	}

	var socks []*testnet.Sock
	for i, name := range []string{"web-a", "web-b", "web-c"} {
		if i > 0 {
			time.Sleep(300 * time.Millisecond) // one sweep each
		}
		s, _ := h.ns.CloseWait(t, "tcp4")
		holdIn(t, name, s)
		socks = append(socks, s)
	}
	for _, s := range socks {
		svc.logs.waitFor(t, 10*time.Second, "Terminated: ", fmt.Sprintf("(socket cookie %d)", s.Cookie))
	}
	rc.wait(t, 30*time.Second, svc.logs)
	svc.stop() // flushes whatever a later window held
	msgs := rc.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d webhook messages, want 1:\n%s", len(msgs), bytes.Join(msgs, []byte("\n")))
	}
	m, all := decodeSlack(t, msgs[0])
	if !strings.HasPrefix(m.Text, "3 connections destroyed on host ") {
		t.Errorf("text %q", m.Text)
	}
	for _, s := range socks {
		if want := fmt.Sprintf("CLOSE_WAIT %s -&gt; %s", s.Local, s.Remote); !strings.Contains(all, want) {
			t.Errorf("message does not name %s (%q):\n%s", s, want, all)
		}
	}
	for _, want := range []string{"*By state*\nCLOSE_WAIT: 3", "web-a: 1", "web-b: 1", "web-c: 1", "*Top peers*\n127.0.0.1: 3"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in the message:\n%s", want, all)
		}
	}
	if strings.Contains(svc.logs.all(), "SECRET") {
		t.Errorf("the webhook's path is in the log:\n%s", svc.logs.all())
	}
}

// TestWebhookSlowReceiverDelaysNoKill: a receiver that sleeps 30 s
// before answering holds the notifier, never the service: a socket that
// becomes hung while it sleeps dies on its threshold (checked as
// TestService checks it), and SIGTERM still stops the service promptly.
func TestWebhookSlowReceiverDelaysNoKill(t *testing.T) {
	const threshold = 1500 * time.Millisecond
	h := newE2E(t)
	held := make(chan struct{}, 10)
	rc := newHookReceiver(t, h.ns, func(r *http.Request) {
		held <- struct{}{}
		select {
		case <-time.After(30 * time.Second):
		case <-r.Context().Done():
		}
	})
	hook := fmt.Sprintf("slack=http://127.0.0.1:%d/services/T0/B0/SECRET", rc.port)
	svc := h.startService("run", "--live", "--close-wait-timeout", "1.5", "--webhook", hook,
		"--webhook-window", "0.2", "--exclude-ports", "22,"+strconv.Itoa(rc.port))

	first, _ := h.ns.CloseWait(t, "tcp4")
	svc.logs.waitFor(t, 10*time.Second, "Terminated: ", fmt.Sprintf("(socket cookie %d)", first.Cookie))
	select {
	case <-held: // the receiver sleeps on the first message
	case <-time.After(30 * time.Second):
		t.Fatalf("no webhook message after 30s; output:\n%s", svc.logs.all())
	}

	s, _ := h.ns.CloseWait(t, "tcp4")
	ent := h.entryTime(s)
	deadline := ent + uint64(threshold)
	// The same check, and the same 2 s, as TestService's.
	checkDeadline(t, s, h.sampleUntil(s, deadline+uint64(5*time.Second)), ent, deadline, 2*time.Second)
	svc.logs.waitFor(t, 5*time.Second, "Terminated: ", fmt.Sprintf("(socket cookie %d)", s.Cookie))
	// The receiver still sleeps on the first message: the second is
	// queued, flushed at SIGTERM for at most a few seconds.
	if n := len(rc.messages()); n != 1 {
		t.Errorf("%d messages received while the first sleeps, want 1", n)
	}
	svc.stop()
	if l, ok := svc.logs.find("webhooks: the last messages were not all sent"); !ok || strings.Contains(l, "SECRET") {
		t.Errorf("no (redacted) line on the messages the flush gave up: %q\n%s", l, svc.logs.all())
	}
}
