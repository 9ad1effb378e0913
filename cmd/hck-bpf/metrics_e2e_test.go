package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// scraper is an HTTP client whose connections are made inside the test's
// namespace, where the service listens.
func scraper(ns *testnet.NS) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// get fetches url and fails unless it answers code.
func get(t *testing.T, c *http.Client, url string, code int) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != code {
		t.Fatalf("GET %s: %d, want %d: %s", url, resp.StatusCode, code, b)
	}
	return string(b)
}

// sample is the value of the series written exactly as series (name and
// labels in the exposition's order) in a /metrics body; -1 when absent.
func sampleOf(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return -1
}

var metricsLine = regexp.MustCompile(`Metrics on http://([^/]+)/metrics`)

// TestMetricsDuringDestroy: "run --live --metrics-addr" serves /metrics
// and /healthz; a hung CLOSE_WAIT destroyed by the service moves
// hck_destroyed_total{state="CLOSE_WAIT"} and the age histogram, and the
// exposition passes promtool's checks.
func TestMetricsDuringDestroy(t *testing.T) {
	h := newE2E(t)
	// Port 0: any free one, as the service's log says.
	svc := h.startService("run", "--live", "--close-wait-timeout", "1.5", "--metrics-addr", "127.0.0.1:0")
	logs := svc.logs
	m := metricsLine.FindStringSubmatch(logs.waitFor(t, 5*time.Second, "Metrics on http://"))
	base := "http://" + m[1]
	c := scraper(h.ns)

	if body := get(t, c, base+"/healthz", http.StatusOK); body != "ok\n" {
		t.Errorf("/healthz: %q", body)
	}
	const (
		destroyed = `hck_destroyed_total{reason="default",state="CLOSE_WAIT"}`
		ages      = `hck_destroyed_age_seconds_count{state="CLOSE_WAIT"}`
		ageSum    = `hck_destroyed_age_seconds_sum{state="CLOSE_WAIT"}`
		sweeps    = `hck_sweeps_total`
	)
	before := get(t, c, base+"/metrics", http.StatusOK)
	for _, s := range []string{destroyed, ages} {
		if v := sampleOf(t, before, s); v != 0 {
			t.Fatalf("%s = %v before any destroy", s, v)
		}
	}
	if v := sampleOf(t, before, sweeps); v < 1 {
		t.Errorf("%s = %v after the first sweep", sweeps, v)
	}
	if v := sampleOf(t, before, "hck_tracker_map_capacity"); v != 262144 {
		t.Errorf("map capacity %v", v)
	}

	s, _ := h.ns.CloseWait(t, "tcp4")
	logs.waitFor(t, 10*time.Second, "Terminated: ", fmt.Sprintf("(socket cookie %d)", s.Cookie))
	after := get(t, c, base+"/metrics", http.StatusOK)
	if v := sampleOf(t, after, destroyed); v != 1 {
		t.Errorf("%s = %v after the destroy, want 1", destroyed, v)
	}
	if v := sampleOf(t, after, ages); v != 1 {
		t.Errorf("%s = %v after the destroy, want 1", ages, v)
	}
	if v := sampleOf(t, after, ageSum); v < 1.5 || v > 30 {
		t.Errorf("%s = %v, want the socket's age, about 1.5 s", ageSum, v)
	}
	if a, b := sampleOf(t, after, sweeps), sampleOf(t, before, sweeps); a <= b {
		t.Errorf("%s: %v before, %v after", sweeps, b, a)
	}
	if v := sampleOf(t, after, "hck_tracker_map_entries"); v < 0 {
		t.Errorf("no hck_tracker_map_entries after sweeps:\n%s", after)
	}
	get(t, c, base+"/healthz", http.StatusOK)

	svc.stop()

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("counters checked; promtool check metrics needs promtool (apt-get install prometheus)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(after)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestMetricsPortInUse: a --metrics-addr whose port is taken stops the
// start, exit 1 naming the address, before anything is loaded.
func TestMetricsPortInUse(t *testing.T) {
	h := newE2E(t)
	var ln net.Listener
	h.ns.MustDo(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	defer ln.Close()
	addr := ln.Addr().String()
	r := h.runCmd(h.command("run", "--live", "--metrics-addr", addr))
	if r.code != exitFailure || r.stderr != fmt.Sprintf("hck-bpf: listen for metrics on %s: bind: address already in use\n", addr) {
		t.Errorf("exit %d, stderr %q; want exit 1 naming %s", r.code, r.stderr, addr)
	}
	if matches, _ := filepath.Glob(filepath.Join(h.pin, "hck_*")); len(matches) > 0 {
		t.Errorf("pinned %v: loaded before the port was known free", matches)
	}
}
