package systemd

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWatchdogFromEnv(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		bad       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, false},
		{"30000000", "42", 30 * time.Second, false},
		{"30000000", "43", 0, false}, // another process's
		{"0", "", 0, true},
		{"-1", "", 0, true},
		{"x", "", 0, true},
		{"1000", "x", 0, true},
	} {
		got, err := watchdogFromEnv(c.usec, c.pid, 42)
		if got != c.want || (err != nil) != c.bad {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v, error %v", c.usec, c.pid, got, err, c.want, c.bad)
		}
	}
}

// listen is a NOTIFY_SOCKET of the test's own; recv reads one datagram.
func listen(t *testing.T, name string) (recv func() string) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func() string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, _, err := c.ReadFromUnix(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
}

// TestNotifier: each message as sd_notify(3) spells it, to a path and to
// an abstract socket; the watchdog only when asked of this process.
func TestNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	abstract := "@hck-notify-test-" + strconv.Itoa(os.Getpid())
	for _, addr := range []string{path, abstract} {
		recv := listen(t, addr)
		t.Setenv("NOTIFY_SOCKET", addr)
		t.Setenv("WATCHDOG_USEC", "200000")
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
		n, err := FromEnv()
		if err != nil || !n.Enabled() {
			t.Fatalf("FromEnv: %v, enabled %v", err, n.Enabled())
		}
		if n.Watchdog() != 200*time.Millisecond || n.PingEvery() != 100*time.Millisecond {
			t.Errorf("watchdog %v, ping every %v; want 200ms, 100ms", n.Watchdog(), n.PingEvery())
		}
		if err := n.Ready("up\nnow"); err != nil {
			t.Fatal(err)
		}
		if got := recv(); got != "READY=1\nSTATUS=up now" {
			t.Errorf("ready sent %q", got)
		}
		before := monotonicUsec()
		if err := n.Reloading(); err != nil {
			t.Fatal(err)
		}
		got := recv()
		after := monotonicUsec()
		rest, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
		us, err := strconv.ParseUint(rest, 10, 64)
		if !ok || err != nil || us < before || us > after {
			t.Errorf("reloading sent %q, want MONOTONIC_USEC in [%d, %d]", got, before, after)
		}
		for _, c := range []struct {
			send func() error
			want string
		}{
			{n.Ping, "WATCHDOG=1"},
			{n.Stopping, "STOPPING=1"},
			{func() error { return n.Status("3 destroyed") }, "STATUS=3 destroyed"},
		} {
			if err := c.send(); err != nil {
				t.Fatal(err)
			}
			if got := recv(); got != c.want {
				t.Errorf("sent %q, want %q", got, c.want)
			}
		}
	}
}

// TestNotifierWithoutSystemd: no NOTIFY_SOCKET, nothing sent, no
// watchdog; a watchdog meant for another process is not ours.
func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "")
	n, err := FromEnv()
	if err != nil || n.Enabled() || n.PingEvery() != 0 {
		t.Errorf("FromEnv without NOTIFY_SOCKET: %v, enabled %v, ping every %v", err, n.Enabled(), n.PingEvery())
	}
	if err := n.Ready("x"); err != nil {
		t.Errorf("ready without systemd: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", "relative")
	if _, err := FromEnv(); err == nil {
		t.Error("a relative NOTIFY_SOCKET accepted")
	}
	t.Setenv("NOTIFY_SOCKET", "/run/x")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if n, err := FromEnv(); err != nil || n.PingEvery() != 0 {
		t.Errorf("another process's watchdog: %v, ping every %v", err, n.PingEvery())
	}
}
