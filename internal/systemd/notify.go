// Package systemd is hck-bpf as a systemd service: the readiness and
// watchdog protocol (sd_notify(3)), the unit file, and installing it.
package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends state changes to the service manager over the datagram
// socket NOTIFY_SOCKET names (sd_notify(3)). Without NOTIFY_SOCKET (not
// started by systemd, or not Type=notify) every call does nothing.
type Notifier struct {
	addr     *net.UnixAddr // nil: no service manager listening
	watchdog time.Duration // WATCHDOG_USEC, when meant for this process
}

// FromEnv is the Notifier the environment describes: NOTIFY_SOCKET (a
// path, or "@name" for an abstract socket), WATCHDOG_USEC and WATCHDOG_PID.
// The watchdog applies only when WATCHDOG_PID is unset or names this
// process, as sd_watchdog_enabled(3) does: a child started with the
// parent's environment must not ping for it. An unusable value is an error
// (the Notifier still works for what was usable).
func FromEnv() (*Notifier, error) {
	n := &Notifier{}
	var errs []error
	switch addr := os.Getenv("NOTIFY_SOCKET"); {
	case addr == "":
	case addr[0] != '/' && addr[0] != '@':
		errs = append(errs, fmt.Errorf("read NOTIFY_SOCKET %q: want an absolute path or @abstract name", addr))
	default:
		// net turns a leading '@' into the abstract namespace's NUL.
		n.addr = &net.UnixAddr{Name: addr, Net: "unixgram"}
	}
	if w, err := watchdogFromEnv(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid()); err != nil {
		errs = append(errs, err)
	} else {
		n.watchdog = w
	}
	return n, errors.Join(errs...)
}

// watchdogFromEnv parses WATCHDOG_USEC and WATCHDOG_PID for process pid:
// 0 when no watchdog is asked of it.
func watchdogFromEnv(usec, pidEnv string, pid int) (time.Duration, error) {
	if usec == "" {
		return 0, nil
	}
	if pidEnv != "" {
		p, err := strconv.Atoi(pidEnv)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("read WATCHDOG_PID %q: want a pid", pidEnv)
		}
		if p != pid {
			return 0, nil // meant for another process
		}
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 || u > uint64(time.Duration(1<<62)/time.Microsecond) {
		return 0, fmt.Errorf("read WATCHDOG_USEC %q: want a positive number of microseconds", usec)
	}
	return time.Duration(u) * time.Microsecond, nil
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Watchdog is the watchdog interval systemd expects WATCHDOG=1 within; 0
// when there is no watchdog.
func (n *Notifier) Watchdog() time.Duration {
	if !n.Enabled() {
		return 0
	}
	return n.watchdog
}

// PingEvery is how often to send WATCHDOG=1: half the interval, as
// sd_watchdog_enabled(3) advises, so that one late ping is not a restart.
// 0 when there is no watchdog.
func (n *Notifier) PingEvery() time.Duration { return n.Watchdog() / 2 }

// Send sends the newline-separated assignments of state in one datagram.
// It does nothing without a service manager.
func (n *Notifier) Send(state ...string) error {
	if !n.Enabled() {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify the service manager at %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(state, "\n"))); err != nil {
		return fmt.Errorf("notify the service manager at %s: %w", n.addr.Name, err)
	}
	return nil
}

// Ready says the service is up (READY=1), with a status line.
func (n *Notifier) Ready(status string) error { return n.Send("READY=1", statusLine(status)) }

// Reloading says a reload has begun (RELOADING=1), with the CLOCK_MONOTONIC
// time systemd (Type=notify-reload, v253) uses to match it with the signal
// it sent. Ready ends the reload.
func (n *Notifier) Reloading() error {
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatUint(monotonicUsec(), 10))
}

// Stopping says the service is shutting down (STOPPING=1).
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Ping feeds the watchdog (WATCHDOG=1).
func (n *Notifier) Ping() error { return n.Send("WATCHDOG=1") }

// Status sets the line systemctl status shows (STATUS=).
func (n *Notifier) Status(s string) error { return n.Send(statusLine(s)) }

// statusLine is the STATUS= assignment of s, on one line.
func statusLine(s string) string {
	return "STATUS=" + strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds.
func monotonicUsec() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail on Linux
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}
