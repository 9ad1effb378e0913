package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxDuration is the longest threshold accepted: 100 years (876000h). A longer
// value is a typo, and the cap keeps deadline arithmetic (entry time +
// threshold, in nanoseconds) far from overflow.
const MaxDuration = 100 * 365 * 24 * time.Hour

const durationHelp = "want seconds (60, 1.5) or a Go duration (90s, 1m30s)"

// ParseDuration parses a threshold the way the scripts' timeout flags take it,
// plus Go durations: seconds as an integer or a decimal fraction ("60", "1.5",
// ".25", "+60"), or a Go duration ("90s", "1m30s", "250ms"). Surrounding
// whitespace is ignored; precision below a nanosecond is truncated.
//
// Zero is refused (it would make every connection in the state hung at
// once), and so are negative values, values above MaxDuration, NaN, Inf,
// exponents and anything else. Errors are one line and quote the value:
//
//	invalid duration "abc": want seconds (60, 1.5) or a Go duration (90s, 1m30s)
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	d, neg, over, ok := parseSeconds(t)
	if !ok {
		var err error
		d, err = time.ParseDuration(t)
		switch {
		case err == nil:
			neg = d < 0
			if neg {
				d = -d // cannot overflow: ParseDuration refuses -1<<63 too
			}
		case goDurationSyntax(t):
			// Well formed but refused by time.ParseDuration: out of range.
			neg, over = strings.HasPrefix(t, "-"), true
		default:
			return 0, fmt.Errorf("invalid duration %q: %s", s, durationHelp)
		}
	}
	switch {
	case neg && (over || d > 0):
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	case over || d > MaxDuration:
		return 0, fmt.Errorf("invalid duration %q: must be at most 100 years (876000h)", s)
	case d == 0:
		return 0, fmt.Errorf("invalid duration %q: must be more than zero (a zero threshold makes every connection in the state hung at once)", s)
	}
	return d, nil
}

// parseSeconds reads "[+-]digits[.digits]" (at least one digit) exactly, in
// integer arithmetic so that "0.1" is exactly 100ms. ok is false when s is not
// of that form; over reports a magnitude above MaxDuration.
func parseSeconds(s string) (d time.Duration, neg, over, ok bool) {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	ip, fp, _ := strings.Cut(s, ".")
	if ip == "" && fp == "" || !allDigits(ip) || !allDigits(fp) {
		return 0, false, false, false
	}
	ip = strings.TrimLeft(ip, "0")
	if len(ip) > 10 { // ≥ 1e10 s, beyond MaxDuration (≈3.15e9 s)
		return 0, neg, true, true
	}
	var secs uint64
	if ip != "" {
		secs, _ = strconv.ParseUint(ip, 10, 64) // ≤ 10 digits: cannot fail
	}
	if secs > uint64(MaxDuration/time.Second) {
		return 0, neg, true, true
	}
	var ns uint64
	for i := range 9 {
		ns *= 10
		if i < len(fp) {
			ns += uint64(fp[i] - '0')
		}
	}
	d = time.Duration(secs)*time.Second + time.Duration(ns)
	return d, neg, d > MaxDuration, true
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// goDurationSyntax reports whether s has time.ParseDuration's grammar:
// [+-] then one or more number+unit pairs. It is consulted only after
// ParseDuration failed, to tell an out-of-range value from garbage.
func goDurationSyntax(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		num := s[:i]
		if num == "" || num == "." || strings.Count(num, ".") > 1 {
			return false
		}
		s = s[i:]
		j := 0
		for j < len(s) && s[j] != '.' && (s[j] < '0' || s[j] > '9') {
			j++
		}
		switch s[:j] {
		case "ns", "us", "µs", "μs", "ms", "s", "m", "h":
		default:
			return false
		}
		s = s[j:]
	}
	return true
}

// splitList splits one flag value into items on commas and whitespace: the
// Bash form "22 3306", the comma form "22,3306" and mixtures of both.
func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// blank reports whether v holds nothing but whitespace.
func blank(v string) bool { return strings.TrimSpace(v) == "" }

// ParsePorts parses port lists in every form the scripts accept, together:
// repeated flags (["22", "3306"]), the Python form (each port its own
// argument, which arrives the same way), the Bash form (["22 3306 5432"]),
// commas (["22,3306"]) and mixtures with any extra whitespace. Ports are
// 1..65535 in decimal. The result is sorted and without duplicates.
//
// A blank value ("" or spaces) contributes nothing, so an explicit
// --exclude-ports "" yields an empty list: the way to drop the default
// exclusion of port 22. A value made only of separators (",", " , ") is an
// error instead: it almost always comes from variables that expanded to
// nothing, and an empty list widens what gets destroyed.
func ParsePorts(values []string) ([]uint16, error) {
	var ports []uint16
	for _, v := range values {
		items := splitList(v)
		if len(items) == 0 && !blank(v) {
			return nil, fmt.Errorf("invalid port list %q: no ports in it", v)
		}
		for _, it := range items {
			p, err := strconv.ParseUint(it, 10, 16)
			if err != nil || p == 0 {
				if it != strings.TrimSpace(v) {
					return nil, fmt.Errorf("invalid port %q in %q: want a number from 1 to 65535", it, v)
				}
				return nil, fmt.Errorf("invalid port %q: want a number from 1 to 65535", it)
			}
			ports = append(ports, uint16(p))
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

// ParseNames parses process-name lists in the same forms as ParsePorts, with
// the same rules for blank and separator-only values. A name is what ps shows
// as COMM (/proc/PID/comm), not a path: names with '/' or control characters
// (NUL included) are refused. Names may be longer than the kernel's 15-byte
// comm; they then match by their first 15 bytes (see CommMatches). The result
// is sorted and without duplicates; names are kept as given.
//
// Spaces and commas separate names (the Bash form "nginx postgres" is two
// names), so a name holding a space or a comma is written in quotes, as a
// shell would: "'my proc' nginx" is "my proc" and "nginx". Single or double
// quotes, anywhere in a name ('my proc', my' 'proc); a quote character in a
// name is written inside the other kind ("it's"). FormatNames writes a list
// back in this form.
func ParseNames(values []string) ([]string, error) {
	var names []string
	for _, v := range values {
		items, err := splitNames(v)
		if err != nil {
			return nil, fmt.Errorf("invalid process list %q: %w", v, err)
		}
		if len(items) == 0 && !blank(v) {
			return nil, fmt.Errorf("invalid process list %q: no names in it", v)
		}
		for _, it := range items {
			if err := checkName(it); err != nil {
				return nil, err
			}
			names = append(names, it)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// splitNames splits one --exclude-processes value like splitList, except
// that what is between single or double quotes is kept whole, separators
// included, and the quotes removed.
func splitNames(v string) ([]string, error) {
	var items []string
	var cur []byte
	inName := false
	var quote byte // the open quote; 0 outside quotes
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		c := v[i : i+size] // the bytes as given, even if not UTF-8
		i += size
		switch {
		case quote != 0:
			if c[0] == quote {
				quote = 0
			} else {
				cur = append(cur, c...)
			}
		case c == "'" || c == `"`:
			quote, inName = c[0], true
		case r == ',' || unicode.IsSpace(r):
			if inName {
				items = append(items, string(cur))
				cur, inName = cur[:0], false
			}
		default:
			cur, inName = append(cur, c...), true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("a %c quote is not closed (a name with a space is quoted whole: 'my proc')", quote)
	}
	if inName {
		items = append(items, string(cur))
	}
	return items, nil
}

// FormatNames writes names as one --exclude-processes value that
// ParseNames reads back to the same names: space-separated, a name quoted
// when it holds a space, a comma or a quote.
func FormatNames(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = quoteName(n)
	}
	return strings.Join(out, " ")
}

func quoteName(n string) string {
	if n != "" && !strings.ContainsFunc(n, func(r rune) bool {
		return r == ',' || r == '\'' || r == '"' || unicode.IsSpace(r)
	}) {
		return n
	}
	// Single quotes around everything but single quotes, which go in
	// double quotes: it's -> 'it'"'"'s'.
	var b strings.Builder
	for i, part := range strings.Split(n, "'") {
		if i > 0 {
			b.WriteString(`"'"`)
		}
		if part != "" || n == "" {
			b.WriteString("'" + part + "'")
		}
	}
	return b.String()
}

// checkName holds the rules every process name obeys, however it arrived.
func checkName(n string) error {
	switch {
	case n == "":
		return fmt.Errorf("invalid process name %q: empty", n)
	case strings.ContainsRune(n, '/'):
		return fmt.Errorf("invalid process name %q: want the name ps shows (comm), not a path", n)
	case strings.ContainsFunc(n, unicode.IsControl):
		return fmt.Errorf("invalid process name %q: contains a control character", n)
	}
	return nil
}
