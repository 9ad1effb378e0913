package top

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// procBuf is the buffer of one read of a /proc/net file: netstat, the
// largest, is about 4 KiB.
const procBuf = 16 << 10

// readProc reads f from its start (it was opened in its namespace: see
// nsSource) into buf.
func readProc(f *os.File, buf []byte) ([]byte, error) {
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return buf[:n], nil
}

// readTcpExt reads the TcpExt counters of /proc/net/netstat from f.
func readTcpExt(f *os.File, buf []byte) (map[string]uint64, error) {
	b, err := readProc(f, buf)
	if err != nil {
		return nil, err
	}
	return parseGroup(b, "TcpExt", "netstat")
}

// readCurrEstab reads Tcp CurrEstab of /proc/net/snmp from f: the
// namespace's sockets in ESTABLISHED or CLOSE_WAIT (RFC 1213's
// tcpCurrEstab; tcp_set_state() counts a socket in when it enters
// ESTABLISHED, or CLOSE_WAIT straight from SYN_RECV, and out when it
// leaves either for another state). Before commit a46d0ea5c942 ("tcp:
// count CLOSE-WAIT sockets for TCP_MIB_CURRESTAB", Linux 6.10, taken by
// the stable kernels down to 4.19 in July 2024) it counted ESTABLISHED
// only: entering CLOSE_WAIT counted a socket out (see Source.estabCW).
func readCurrEstab(f *os.File, buf []byte) (int, error) {
	b, err := readProc(f, buf)
	if err != nil {
		return 0, err
	}
	tcp, err := parseGroup(b, "Tcp", "snmp")
	if err != nil {
		return 0, err
	}
	n, ok := tcp["CurrEstab"]
	if !ok {
		return 0, fmt.Errorf("parse snmp: no Tcp CurrEstab")
	}
	return int(n), nil
}

// parseGroup parses a /proc/net/netstat or snmp file (named file, for
// errors): pairs of lines, names then values, each starting with its
// group ("TcpExt:"), and returns the values of group.
func parseGroup(b []byte, group, file string) (map[string]uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 8<<10), 64<<10)
	prefix := group + ":"
	var names []string
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		vals := strings.Fields(rest)
		if len(vals) != len(names) {
			return nil, fmt.Errorf("parse %s: %d %s names, %d values", file, len(names), group, len(vals))
		}
		out := make(map[string]uint64, len(names))
		for i, v := range vals {
			// Tcp MaxConn is signed (-1); no counter read here is.
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				if _, serr := strconv.ParseInt(v, 10, 64); serr == nil {
					continue
				}
				return nil, fmt.Errorf("parse %s: %s %s: %w", file, group, names[i], err)
			}
			out[names[i]] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("parse %s: no %s values", file, group)
}

// readTimewait reads the TCP line's tw of /proc/net/sockstat from f: the
// namespace's timewait sockets (IPv4 and IPv6: one death row), whatever
// their substate: TIME_WAIT, and FIN_WAIT2 of an orphan the kernel turned
// into a timewait socket (tcp_time_wait(sk, TCP_FIN_WAIT2, ...)).
func readTimewait(f *os.File, buf []byte) (int, error) {
	b, err := readProc(f, buf)
	if err != nil {
		return 0, err
	}
	return parseTimewait(b)
}

// parseTimewait parses /proc/net/sockstat's "TCP: inuse N orphan N tw N
// alloc N mem N".
func parseTimewait(b []byte) (int, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if f[i] == "tw" {
				n, err := strconv.Atoi(f[i+1])
				if err != nil || n < 0 {
					return 0, fmt.Errorf("parse sockstat: tw %q", f[i+1])
				}
				return n, nil
			}
		}
		return 0, fmt.Errorf("parse sockstat: no tw in %q", strings.TrimSpace(line))
	}
	return 0, fmt.Errorf("parse sockstat: no TCP line")
}
