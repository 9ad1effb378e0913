package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestTopUsage: a bad value exits 2 with one line naming it, before
// anything is opened: the pin dir given is not on bpffs (and does not
// exist), which would be the error were the flags checked later.
func TestTopUsage(t *testing.T) {
	pin := t.TempDir() + "/pins"
	bad := writeConfig(t, "", "close_wait_timeout: 30\nrules:\n  - name: a\n    ports: [80, 99999]\n")
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--interval", "100ms"}, "--interval: 100ms is outside 250ms..1m0s"},
		{[]string{"--interval", "2m"}, "--interval: 2m0s is outside"},
		{[]string{"--interval", "soon"}, "--interval:"},
		{[]string{"--max-rows", "-1"}, "--max-rows: -1 is negative"},
		{[]string{"--sort", "pid"}, `--sort: unknown column "pid"`},
		{[]string{"--sort", "age,up"}, `--sort: unknown order "up"`},
		{[]string{"--syn-alarm", "-5"}, "--syn-alarm: -5 is negative"},
		{[]string{"--allow-kill", "--json"}, "--allow-kill: only for the full-screen view"},
		{[]string{"--close-wait-timeout", "0"}, "--close-wait-timeout:"},
		{[]string{"--exclude-ports", "70000"}, "--exclude-ports:"},
		{[]string{"--netns", "x", "--all-netns"}, "choose one"},
		{[]string{"stray"}, "unknown command"},
		{[]string{"--config", bad}, bad + `:4: rules[0].ports: invalid port "99999"`},
		{[]string{"--config", "/nonexistent/hck.yaml"}, "read config: open /nonexistent/hck.yaml"},
		{[]string{"--include-ports", "x"}, "--include-ports:"},
	} {
		var out, errb bytes.Buffer
		code := Main(append([]string{"top", "--pin-dir", pin}, tt.args...), &out, &errb)
		if code != exitUsage || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 ||
			!strings.Contains(errb.String(), tt.msg) || out.Len() != 0 {
			t.Errorf("top %q: exit %d, stderr %q, stdout %q; want 2 and one line with %q", tt.args, code, errb.String(), out.String(), tt.msg)
		}
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("a refused top made the pin dir: %v", err)
	}
}
