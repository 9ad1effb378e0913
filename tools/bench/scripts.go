package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The scripts' method, in Go: dump every socket with `ss -tanpo`, split
// the lines, read state, addresses, the timer field and the owners
// (users:(("name",pid=N,fd=M))), and pick the hung candidates: a socket in
// a closing state, with a process (the scripts skip sockets without one),
// not on an excluded port (22), not owned by a protected process. The
// scripts then guess ages from the timer; with the bench's 1 ms thresholds
// every such socket is hung, as it is for `hck-bpf scan`. Python would be
// slower than this: the figure is a lower bound on the scripts' cost.

var (
	ssUsers = regexp.MustCompile(`\("([^"]+)",pid=(\d+),fd=(\d+)\)`)
	ssTimer = regexp.MustCompile(`timer:\((\w+),([^,]+),(\d+)\)`)
)

var ssClosing = map[string]bool{
	"CLOSE-WAIT": true, "FIN-WAIT-1": true, "FIN-WAIT-2": true, "CLOSING": true, "LAST-ACK": true, "TIME-WAIT": true,
}

var protected = map[string]bool{
	"sshd": true, "systemd": true, "init": true, "kthreadd": true, "containerd": true, "dockerd": true,
	"kubelet": true, "k3s": true,
}

// ssConn is one parsed line of `ss -tanpo`.
type ssConn struct {
	State               string
	LocalIP, PeerIP     string
	LocalPort, PeerPort int
	Timer               string
	TimerLeft           string
	PID                 int
	Process             string
}

func splitHostPort(s string) (string, int) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0
	}
	port, _ := strconv.Atoi(s[i+1:])
	return strings.Trim(s[:i], "[]"), port
}

// parseSS parses `ss -tanpo` output the way the scripts do.
func parseSS(out []byte) []ssConn {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 0 {
		lines = lines[1:] // header
	}
	conns := make([]ssConn, 0, len(lines))
	for _, line := range lines {
		parts := strings.Fields(line)
		if len(parts) < 5 {
			continue
		}
		c := ssConn{State: parts[0]}
		c.LocalIP, c.LocalPort = splitHostPort(parts[3])
		c.PeerIP, c.PeerPort = splitHostPort(parts[4])
		if m := ssUsers.FindStringSubmatch(line); m != nil {
			c.Process = m[1]
			c.PID, _ = strconv.Atoi(m[2])
		}
		if m := ssTimer.FindStringSubmatch(line); m != nil {
			c.Timer, c.TimerLeft = m[1], m[2]
		}
		conns = append(conns, c)
	}
	return conns
}

// scriptsHung applies the scripts' filters to a parsed dump.
func scriptsHung(conns []ssConn) int {
	hung := 0
	for _, c := range conns {
		switch {
		case !ssClosing[c.State]:
		case c.LocalPort == 22 || c.PeerPort == 22:
		case c.PID == 0:
		case protected[c.Process]:
		default:
			hung++
		}
	}
	return hung
}

// scriptsRun is one sweep by the scripts' method.
type scriptsRun struct {
	Took  time.Duration // dump + parse + decide
	Parse time.Duration // parse + decide alone
	Lines int
	Hung  int
}

// scriptsSweep times dump + parse + decide, and returns what it found.
func scriptsSweep(ctx context.Context) (scriptsRun, error) {
	start := time.Now()
	_, out, err := timed(ctx, "ss", "-tanpo")
	if err != nil {
		return scriptsRun{}, err
	}
	parsed := time.Now()
	conns := parseSS(out)
	hung := scriptsHung(conns)
	end := time.Now()
	return scriptsRun{Took: end.Sub(start), Parse: end.Sub(parsed), Lines: len(conns), Hung: hung}, nil
}

// ssStateArgs is the kernel-filtered dump of the closing states.
var ssStateArgs = []string{"-tan", "state", "close-wait", "state", "fin-wait-1", "state", "fin-wait-2",
	"state", "closing", "state", "last-ack", "state", "time-wait"}

// census counts the namespace's sockets by state (`ss -Htan`), untimed.
func census(ctx context.Context) (map[string]int, int, error) {
	_, out, err := timed(ctx, "ss", "-Htan")
	if err != nil {
		return nil, 0, err
	}
	counts := map[string]int{}
	total := 0
	for _, l := range bytes.Split(out, []byte("\n")) {
		f := bytes.Fields(l)
		if len(f) == 0 {
			continue
		}
		counts[string(f[0])]++
		total++
	}
	return counts, total, nil
}
