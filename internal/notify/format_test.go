package notify

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// strict decodes body into v, refusing unknown fields and trailing data.
func strict(t *testing.T, body []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if d.More() {
		t.Fatalf("trailing data after %s", body)
	}
}

// slackIn is Slack's incoming webhook payload as its documentation
// describes it (text, blocks of section and context), written here apart
// from the package's types.
type slackIn struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string `json:"type"`
		Text *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"elements"`
	} `json:"blocks"`
}

// discordIn is Discord's execute-webhook payload (content, embeds,
// allowed_mentions).
type discordIn struct {
	Content string `json:"content"`
	Embeds  []struct {
		Title       string `json:"title"`
		Description string `json:"description"`
		Fields      []struct {
			Name   string `json:"name"`
			Value  string `json:"value"`
			Inline bool   `json:"inline"`
		} `json:"fields"`
		Timestamp string `json:"timestamp"`
		Footer    struct {
			Text string `json:"text"`
		} `json:"footer"`
	} `json:"embeds"`
	AllowedMentions struct {
		Parse []string `json:"parse"`
	} `json:"allowed_mentions"`
}

// sent runs one report through a notifier in format f and returns the
// body the receiver got.
func sent(t *testing.T, f Format) received {
	t.Helper()
	rc := newReceiver(t, nil)
	n := New([]Webhook{rc.hook(f)}, Options{Meta: meta, Window: time.Hour})
	n.Swept(report(
		destroyed{conn.CloseWait, "10.0.0.1", "<!channel>", ""},
		destroyed{conn.CloseWait, "10.0.0.1", "java", "db"},
		destroyed{conn.FinWait2, "10.0.0.2", "@everyone", ""}))
	shutdown(t, n)
	got := rc.wait(1)
	if len(got) != 1 {
		t.Fatalf("%d messages", len(got))
	}
	r := got[0]
	if ct := r.hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	if ua := r.hdr.Get("User-Agent"); ua != "hck-bpf/1.2.3" {
		t.Errorf("user agent %q", ua)
	}
	if r.path != "/services/SECRET?token=SECRET" {
		t.Errorf("posted to %q", r.path)
	}
	return r
}

func TestSlackFormat(t *testing.T) {
	var m slackIn
	strict(t, sent(t, Slack).body, &m)
	head := "3 connections destroyed on host node-1 in the last "
	if !strings.HasPrefix(m.Text, head) {
		t.Errorf("text %q", m.Text)
	}
	if len(m.Blocks) != 4 {
		t.Fatalf("%d blocks, want 4: %+v", len(m.Blocks), m.Blocks)
	}
	types := ""
	var all strings.Builder
	for _, b := range m.Blocks {
		types += b.Type + " "
		if b.Text != nil {
			if b.Text.Type != "mrkdwn" {
				t.Errorf("text type %q", b.Text.Type)
			}
			all.WriteString(b.Text.Text + "\n")
		}
		for _, f := range append(b.Fields, b.Elements...) {
			if f.Type != "mrkdwn" {
				t.Errorf("field type %q", f.Type)
			}
			all.WriteString(f.Text + "\n")
		}
	}
	if types != "section section section context " {
		t.Errorf("blocks %q", types)
	}
	s := all.String()
	for _, want := range []string{"*" + head, "*By state*\nCLOSE_WAIT: 2\nFIN_WAIT2: 1", "*Top peers*\n10.0.0.1: 2\n10.0.0.2: 1",
		"*Rules*\ndefault: 2\ndb: 1", "&lt;!channel&gt;: 1", "CLOSE_WAIT 10.1.1.1:", " -&gt; 10.0.0.1:443 (java) netns pod:default/web rule db",
		"hck-bpf 1.2.3, live, "} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}
	if strings.Contains(s, "<!channel>") {
		t.Errorf("unescaped <!channel> in\n%s", s)
	}
}

func TestDiscordFormat(t *testing.T) {
	var m discordIn
	strict(t, sent(t, Discord).body, &m)
	if !strings.HasPrefix(m.Content, "3 connections destroyed on host node-1 in the last ") {
		t.Errorf("content %q", m.Content)
	}
	if m.AllowedMentions.Parse == nil || len(m.AllowedMentions.Parse) != 0 {
		t.Errorf("allowed_mentions.parse %v, want []", m.AllowedMentions.Parse)
	}
	if len(m.Embeds) != 1 {
		t.Fatalf("%d embeds", len(m.Embeds))
	}
	e := m.Embeds[0]
	if e.Title != "hck-bpf on node-1" || !strings.Contains(e.Description, "FIN_WAIT2 10.1.1.") || !strings.HasPrefix(e.Description, "```\n") {
		t.Errorf("embed %+v", e)
	}
	if _, err := time.Parse(time.RFC3339, e.Timestamp); err != nil {
		t.Errorf("timestamp: %v", err)
	}
	fields := map[string]string{}
	for _, f := range e.Fields {
		if f.Value == "" || len(f.Value) > 1024 {
			t.Errorf("field %q value of %d bytes", f.Name, len(f.Value))
		}
		fields[f.Name] = f.Value
	}
	if fields["By state"] != "CLOSE_WAIT: 2\nFIN_WAIT2: 1" || fields["Top processes"] != "<!channel>: 1\n@everyone: 1\njava: 1" {
		t.Errorf("fields %v", fields)
	}
}

func TestJSONFormat(t *testing.T) {
	r := sent(t, JSON)
	m := decodeJSON(t, r.body)
	if m.Destroyed != 3 || m.ByState["CLOSE_WAIT"] != 2 || m.ByRule["db"] != 1 || len(m.Connections) != 3 ||
		m.Connections[0].Process != "<!channel>" || m.WindowEnd.Before(m.WindowStart) {
		t.Errorf("message %+v", m)
	}
	// Every key of the documented schema is there, even when empty.
	var raw map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "text", "host", "mode", "version", "window_start", "window_end", "destroyed",
		"by_state", "by_rule", "top_peers", "top_processes", "connections", "more_connections",
		"processes_terminated", "processes_killed", "ended_processes", "dropped"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no %q in %s", k, r.body)
		}
	}
	if len(raw) != 18 {
		t.Errorf("%d keys, want 18: the README's schema lists them", len(raw))
	}
}

// TestCollector: the counters by webhook index and format, never a URL.
func TestCollector(t *testing.T) {
	rc := newReceiver(t, nil)
	n := New([]Webhook{rc.hook(Slack), rc.hook(JSON)}, Options{Meta: meta, Window: time.Hour, Queue: 1})
	n.Swept(report(destroyed{conn.CloseWait, "10.0.0.1", "", ""}, destroyed{conn.CloseWait, "10.0.0.1", "", ""}))
	shutdown(t, n)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(n); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP hck_notify_dropped_total Destroyed connections and ended processes left out of notifications: the notifier's queue was full.
# TYPE hck_notify_dropped_total counter
hck_notify_dropped_total 1
# HELP hck_notify_messages_total Notification messages by webhook and result: sent, or failed (refused, or still failing after the retries).
# TYPE hck_notify_messages_total counter
hck_notify_messages_total{format="json",result="failed",webhook="1"} 0
hck_notify_messages_total{format="json",result="sent",webhook="1"} 1
hck_notify_messages_total{format="slack",result="failed",webhook="0"} 0
hck_notify_messages_total{format="slack",result="sent",webhook="0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "hck_notify_messages_total", "hck_notify_dropped_total"); err != nil {
		t.Error(err)
	}
	if c := testutil.CollectAndCount(n); c != 4*2+1 {
		t.Errorf("%d metrics, want 9", c)
	}
	if problems, err := testutil.CollectAndLint(n); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
