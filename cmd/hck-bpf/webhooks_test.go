package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// TestWebhookBadInputExits2: a bad --webhook is one line, exit 2, before
// anything is loaded, and never shows the URL's secret path.
func TestWebhookBadInputExits2(t *testing.T) {
	pin := filepath.Join(t.TempDir(), "pins")
	// The file's webhooks pass the same check, reported at their line.
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("mode: live\nwebhooks:\n  - https://hooks.slack.com/ok\n  - ftp://example.com/SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--webhook", "ftp://example.com/SECRET"}, `--webhook: parse webhook: ftp://example.com/...: scheme "ftp" is not http or https`},
		{[]string{"run", "--live", "--webhook", "https://hooks.slack.com/ok", "--webhook", "teams=https://x/SECRET"}, `unknown format "teams"`},
		{[]string{"run", "--webhook", "hooks.slack.com/services/SECRET"}, "no scheme"},
		{[]string{"run", "--webhook", ""}, "no URL"},
		{[]string{"run", "--webhook-window", "abc"}, "--webhook-window: "},
		{[]string{"scan", "--live", "--webhook", "https://x/y"}, "unknown flag: --webhook"},
		{[]string{"run", "--config", cfg}, cfg + `:4: webhooks: parse webhook: ftp://example.com/...: scheme "ftp" is not http or https`},
	} {
		var out, errb bytes.Buffer
		code := Main(append(c.args, "--pin-dir", pin), &out, &errb)
		msg := errb.String()
		if code != exitUsage || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, c.want) || strings.Contains(msg, "SECRET") {
			t.Errorf("%q: exit %d, %q; want exit %d, one line with %q, no secret", c.args, code, msg, exitUsage, c.want)
		}
		if _, err := os.Stat(pin); err == nil {
			t.Errorf("%q: created the pin dir: something was loaded", c.args)
		}
	}
}

// TestSweptComposes: every hook sees every report, in order; none is nil.
func TestSweptComposes(t *testing.T) {
	if sweptHooks(nil, nil) != nil {
		t.Error("no hooks: want nil (the daemon skips it)")
	}
	var got []string
	h := sweptHooks(func(*sweep.Report) { got = append(got, "a") }, nil, func(r *sweep.Report) { got = append(got, "b") })
	h(&sweep.Report{})
	h(&sweep.Report{})
	if strings.Join(got, "") != "abab" {
		t.Errorf("calls %q", got)
	}
}
