package main

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// churn opens n connections on loopback, one after the other, and closes
// each gracefully, client first: every connection passes SYN_SENT,
// ESTABLISHED, FIN_WAIT1, FIN_WAIT2, TIME_WAIT on the client and
// SYN_RECV, ESTABLISHED, CLOSE_WAIT, LAST_ACK on the server. It returns
// the time taken. Runs in the bench's namespace (this process).
func churn(n, port int) (time.Duration, error) {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(ln)
	_ = unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(ln, loopback(port)); err != nil {
		return 0, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(ln, 4096); err != nil {
		return 0, err
	}
	sa := loopback(port)
	start := time.Now()
	for i := range n {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		if err := unix.Connect(c, sa); err != nil {
			unix.Close(c)
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
		s, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			unix.Close(c)
			return 0, err
		}
		unix.Close(c)
		unix.Close(s)
	}
	return time.Since(start), nil
}
