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

// readTcpExt reads the TcpExt counters of /proc/net/netstat from f (read
// again from its start: the file was opened in its namespace).
func readTcpExt(f *os.File) (map[string]uint64, error) {
	var buf [16 << 10]byte
	n, err := f.ReadAt(buf[:], 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read netstat: %w", err)
	}
	return parseTcpExt(buf[:n])
}

// parseTcpExt parses /proc/net/netstat: pairs of lines, names then values,
// each starting with its group ("TcpExt:").
func parseTcpExt(b []byte) (map[string]uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 8<<10), 64<<10)
	var names []string
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "TcpExt:")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		vals := strings.Fields(rest)
		if len(vals) != len(names) {
			return nil, fmt.Errorf("parse netstat: %d TcpExt names, %d values", len(names), len(vals))
		}
		out := make(map[string]uint64, len(names))
		for i, v := range vals {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse netstat: TcpExt %s: %w", names[i], err)
			}
			out[names[i]] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("parse netstat: no TcpExt values")
}
