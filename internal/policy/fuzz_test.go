package policy

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{
		"60", "1.5", "0.25", ".5", "1.", "+60", " 60 ", "0", "-5", "-0", "abc", "", "NaN", "Inf", "1e3",
		"90s", "1m30s", "250ms", "500µs", "1.5h", "-90s", "0s", "876000h", "876001h", "9999999999999h",
		"99999999999999999999", "3153600000", "3153600000.000000001", "0.0000000001", "1m 30s", "1..5s", ".s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			checkErrLine(t, err)
			if !strings.HasPrefix(err.Error(), "invalid duration "+strconv.Quote(s)+": ") {
				t.Fatalf("error does not quote the value: %q", err)
			}
			return
		}
		if d <= 0 || d > MaxDuration {
			t.Fatalf("ParseDuration(%q) = %v: out of (0, MaxDuration]", s, d)
		}
		// Both printed forms read back to the same value.
		for _, out := range []string{FormatThreshold(d), d.String()} {
			if back, err := ParseDuration(out); err != nil || back != d {
				t.Fatalf("ParseDuration(%q) = %v, but ParseDuration(%q) = %v, %v", s, d, out, back, err)
			}
		}
	})
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range [][2]string{
		{"22", ""}, {"22 3306 5432", "80"}, {"22,3306", "443,80"}, {" 80 , 443\t8080\n", ""},
		{",", ""}, {"", ""}, {"0", "65535"}, {"65536", ""}, {"-1", "+2"}, {"22-25", ""}, {"0x16", "ssh"},
		{"99999999999999999999", ""}, {"22,,3306,", "  "},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		in := []string{a, b}
		ports, err := ParsePorts(in)
		if err != nil {
			checkErrLine(t, err)
			if !strings.HasPrefix(err.Error(), "invalid port") {
				t.Fatalf("error %q does not say what is invalid", err)
			}
			return
		}
		for i, p := range ports {
			if p == 0 {
				t.Fatalf("ParsePorts(%q) = %v: port 0", in, ports)
			}
			if i > 0 && ports[i-1] >= p {
				t.Fatalf("ParsePorts(%q) = %v: not sorted or not unique", in, ports)
			}
		}
		// Every port came from the input, and every item of the input is in
		// the result.
		var items []string
		for _, v := range in {
			items = append(items, splitList(v)...)
		}
		for _, it := range items {
			n, err := strconv.ParseUint(it, 10, 16)
			if err != nil || !slices.Contains(ports, uint16(n)) {
				t.Fatalf("ParsePorts(%q) = %v: item %q lost", in, ports, it)
			}
		}
		if len(ports) > len(items) {
			t.Fatalf("ParsePorts(%q) = %v: more ports than items %q", in, ports, items)
		}
		// The comma form of the result reads back the same.
		strs := make([]string, len(ports))
		for i, p := range ports {
			strs[i] = strconv.Itoa(int(p))
		}
		if len(strs) > 0 {
			back, err := ParsePorts([]string{strings.Join(strs, ",")})
			if err != nil || !slices.Equal(back, ports) {
				t.Fatalf("round trip of %v: %v, %v", ports, back, err)
			}
		}
	})
}

func FuzzParseNames(f *testing.F) {
	for _, s := range [][2]string{
		{"nginx", ""}, {"nginx postgres", "redis"}, {"nginx,postgres", " a\tb "}, {",", ""}, {"", ""},
		{"/usr/sbin/nginx", ""}, {"a\x00b", ""}, {"kube-controller-manager", "kube-controller"},
		{"ééééééééx", "\xff\xfe"}, {"Web Content", "a\x1bb"},
		{"'my proc' nginx", `"it's",x`}, {"'unclosed", `a'b' "c d"`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		in := []string{a, b}
		names, err := ParseNames(in)
		if err != nil {
			checkErrLine(t, err)
			if !strings.HasPrefix(err.Error(), "invalid process ") {
				t.Fatalf("error %q does not say what is invalid", err)
			}
			return
		}
		quoted := strings.ContainsAny(a+b, `'"`)
		for i, n := range names {
			if n == "" || strings.ContainsAny(n, "/\x00") || strings.ContainsFunc(n, unicode.IsControl) {
				t.Fatalf("ParseNames(%q) = %q: bad name %q", in, names, n)
			}
			// Separators and quotes only come from quoted input.
			if !quoted && (strings.ContainsAny(n, ",'\"") || strings.ContainsFunc(n, unicode.IsSpace)) {
				t.Fatalf("ParseNames(%q) = %q: separator in unquoted name %q", in, names, n)
			}
			if !quoted && !strings.Contains(a, n) && !strings.Contains(b, n) {
				t.Fatalf("ParseNames(%q) = %q: %q is not from the input", in, names, n)
			}
			if i > 0 && names[i-1] >= n {
				t.Fatalf("ParseNames(%q) = %q: not sorted or not unique", in, names)
			}
			if !CommMatches(n, n) {
				t.Fatalf("name %q does not match itself", n)
			}
			if len(n) > CommLen && !CommMatches(n, n[:CommLen]) {
				t.Fatalf("name %q does not match its truncated comm", n)
			}
		}
		// Valid for a Policy, and the result written back (FormatNames)
		// reads back the same.
		p := Default()
		p.ExcludeProcesses = names
		if err := p.Validate(); err != nil {
			t.Fatalf("ParseNames(%q) = %q, but Validate: %v", in, names, err)
		}
		if len(names) > 0 {
			back, err := ParseNames([]string{FormatNames(names)})
			if err != nil || !slices.Equal(back, names) {
				t.Fatalf("round trip of %q: %q, %v", names, back, err)
			}
		}
	})
}

func FuzzDecide(f *testing.F) {
	f.Add(uint8(8), uint64(1e12), uint64(1e12-61e9), true, uint16(8080), uint16(52431), "myapp", "nginx", "443")
	f.Add(uint8(6), uint64(5e11), uint64(0), false, uint16(22), uint16(1), "sshd-session", "", "")
	f.Add(uint8(5), uint64(math.MaxUint64), uint64(0), true, uint16(1), uint16(2), "", "", "")
	f.Add(uint8(1), uint64(1), uint64(2), true, uint16(0), uint16(0), "", "kube-controller-manager", "80 443")
	f.Fuzz(func(t *testing.T, state uint8, now, entered uint64, exact bool, lport, rport uint16, comm, exclude, include string) {
		p := Default()
		if names, err := ParseNames([]string{exclude}); err == nil {
			p.ExcludeProcesses = names
		}
		if ports, err := ParsePorts([]string{include}); err == nil {
			p.IncludePorts = ports
		}
		c := mk(conn.State(state), 0, ports(lport, rport))
		c.Entered, c.Exact = entered, exact
		if comm != "" {
			c.Owner = &conn.Owner{PID: 1234, Comm: comm}
		}
		v := p.Decide(c, now)
		if hung, deadline := p.Due(c, now); hung != v.Hung || deadline != v.Deadline {
			t.Fatalf("Due says hung %v deadline %d; Decide %+v", hung, deadline, v)
		}

		if strings.ContainsAny(v.Reason+v.SkipDetail, "\n\r") || v.Reason == "" {
			t.Fatalf("reason %q / detail %q: not one line", v.Reason, v.SkipDetail)
		}
		if v.Hung != (v.Action != Ignore) || (v.Action == Skip) != (v.Skip != NotSkipped) || (v.Skip != NotSkipped) != (v.SkipDetail != "") {
			t.Fatalf("inconsistent verdict %+v", v)
		}
		th, ok := p.Thresholds.For(c.State)
		if !ok {
			if v.Action != Ignore || v.Deadline != NoDeadline {
				t.Fatalf("state %s without threshold: %+v", c.State, v)
			}
			return
		}
		if v.Threshold != th || v.Hung != (v.Age >= th) || v.Age < 0 || (c.Age(now) >= 0 && v.Age != c.Age(now)) {
			t.Fatalf("threshold/age: %+v for %+v at %d", v, c, now)
		}
		if v.Deadline != math.MaxUint64 && v.Hung != (now >= v.Deadline) {
			t.Fatalf("hung %v but deadline %d, now %d", v.Hung, v.Deadline, now)
		}
		if !exact && !strings.Contains(v.Reason, "≥") {
			t.Fatalf("inexact age without ≥: %q", v.Reason)
		}
		if v.Action == Destroy {
			if slices.Contains(p.ExcludePorts, lport) || slices.Contains(p.ExcludePorts, rport) {
				t.Fatalf("destroys on an excluded port: %+v", c)
			}
			if _, prot := protectedBy(comm); prot {
				t.Fatalf("destroys a protected process %q", comm)
			}
		}
	})
}
