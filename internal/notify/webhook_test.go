package notify

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in     string
		format Format
		url    string
	}{
		{"https://hooks.slack.com/services/T0/B0/XXX", Slack, "https://hooks.slack.com/services/T0/B0/XXX"},
		{"https://discord.com/api/webhooks/1/abc", Discord, "https://discord.com/api/webhooks/1/abc"},
		{"https://discordapp.com/api/webhooks/1/abc", Discord, "https://discordapp.com/api/webhooks/1/abc"},
		{"https://canary.discord.com/api/webhooks/1/abc", Discord, "https://canary.discord.com/api/webhooks/1/abc"},
		{"https://example.com/hook?token=a=b", JSON, "https://example.com/hook?token=a=b"},
		{"http://127.0.0.1:8080/x", JSON, "http://127.0.0.1:8080/x"},
		{"slack=http://127.0.0.1:8080/x", Slack, "http://127.0.0.1:8080/x"},
		{"Discord=https://relay.internal/d", Discord, "https://relay.internal/d"},
		{"json=https://hooks.slack.com/services/x", JSON, "https://hooks.slack.com/services/x"},
		{" https://[::1]:9/x ", JSON, "https://[::1]:9/x"},
	} {
		w, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if w.Format != c.format || w.URL.String() != c.url {
			t.Errorf("Parse(%q) = %s %s, want %s %s", c.in, w.Format, w.URL, c.format, c.url)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "no URL"},
		{"slack=", "no URL"},
		{"teams=https://example.com/x", `unknown format "teams"`},
		{"ftp://example.com/secret", `scheme "ftp" is not http or https`},
		{"example.com/secret", "no scheme"},
		{"https:///secret", "no host"},
		{"https://exa mple.com/secret", "invalid URL"},
		{"file:///etc/secret", `scheme "file"`},
	} {
		_, err := Parse(c.in)
		if err == nil {
			t.Errorf("Parse(%q) accepted", c.in)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || strings.Contains(msg, "secret") || strings.Contains(msg, "\n") {
			t.Errorf("Parse(%q): %q, want one line with %q and no path", c.in, msg, c.want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/XXX": "slack https://hooks.slack.com/...",
		"https://example.com/?token=secret":          "json https://example.com/...",
		"https://user:secret@example.com":            "json https://example.com/...",
		"http://127.0.0.1:80":                        "json http://127.0.0.1:80",
	} {
		w, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.String(); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"slack=https://hooks.slack.com/a", "https://x/y?z=1", "json=", "=", "a=b=c://d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := Parse(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		if w.URL.Scheme != "http" && w.URL.Scheme != "https" || w.URL.Hostname() == "" {
			t.Errorf("Parse(%q) accepted %s", s, w.URL)
		}
		if r := w.String(); strings.Contains(r, "?") || w.URL.Path != "" && w.URL.Path != "/" && !strings.HasSuffix(r, "/...") {
			t.Errorf("Parse(%q): %q shows too much", s, r)
		}
	})
}
