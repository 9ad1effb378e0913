package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	ok := []struct {
		in   string
		want time.Duration
	}{
		{"60", 60 * time.Second},
		{"1.5", 1500 * time.Millisecond},
		{"0.25", 250 * time.Millisecond},
		{"0.1", 100 * time.Millisecond}, // exact, no float rounding
		{".5", 500 * time.Millisecond},
		{"1.", time.Second},
		{"+60", 60 * time.Second},
		{" 60 ", 60 * time.Second},
		{"007", 7 * time.Second},
		{"0.000000001", time.Nanosecond},
		{"0.0005", 500 * time.Microsecond},
		{"1.0000000009", time.Second}, // below a nanosecond: truncated
		{"90s", 90 * time.Second},
		{"1m30s", 90 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"1.5h", 90 * time.Minute},
		{"500us", 500 * time.Microsecond},
		{"500µs", 500 * time.Microsecond},
		{"+2m", 2 * time.Minute},
		{"3153600000", MaxDuration},
		{"876000h", MaxDuration},
	}
	for _, tc := range ok {
		got, err := ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}

	bad := []struct{ in, msg string }{
		{"", `invalid duration "": want seconds (60, 1.5) or a Go duration (90s, 1m30s)`},
		{"   ", `invalid duration "   ": want seconds`},
		{"abc", `invalid duration "abc": want seconds (60, 1.5) or a Go duration (90s, 1m30s)`},
		{".", "want seconds"},
		{"1.2.3", "want seconds"},
		{"1e3", "want seconds"},
		{"0x10", "want seconds"},
		{"1_000", "want seconds"},
		{"NaN", "want seconds"},
		{"nan", "want seconds"},
		{"Inf", "want seconds"},
		{"+Inf", "want seconds"},
		{"-inf", "want seconds"},
		{"1m 30s", "want seconds"},
		{"60 s", "want seconds"},
		{"5d", "want seconds"},
		{"s", "want seconds"},
		{"1\n2", `invalid duration "1\n2"`},
		{"0", "must be more than zero"},
		{"0.0", "must be more than zero"},
		{"000", "must be more than zero"},
		{"0s", "must be more than zero"},
		{"0h0m", "must be more than zero"},
		{"-0", "must be more than zero"},
		{"0.0000000001", "must be more than zero"},
		{"-5", "must not be negative"},
		{"-1.5", "must not be negative"},
		{"-90s", "must not be negative"},
		{"-99999999999999999999", "must not be negative"},
		{"-9999999999999h", "must not be negative"},
		{"3153600000.000000001", "must be at most 100 years"},
		{"876001h", "must be at most 100 years"},
		{"99999999999", "must be at most 100 years"},
		{"99999999999999999999999999", "must be at most 100 years"},
		{"9999999999999h", "must be at most 100 years"}, // overflows int64 ns
		{"2562048h", "must be at most 100 years"},       // just below int64 overflow
		{"3155760000", "must be at most 100 years"},
	}
	for _, tc := range bad {
		got, err := ParseDuration(tc.in)
		if err == nil {
			t.Errorf("ParseDuration(%q) = %v, want error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseDuration(%q) error %q, want it to contain %q", tc.in, err, tc.msg)
		}
		checkErrLine(t, err)
	}
}

func TestParsePorts(t *testing.T) {
	ok := []struct {
		in   []string
		want []uint16
	}{
		{nil, nil},
		{[]string{}, nil},
		{[]string{"22"}, []uint16{22}},
		{[]string{"22", "3306", "5432", "6379"}, []uint16{22, 3306, 5432, 6379}}, // repeated flags / Python form
		{[]string{"22 3306 5432 6379"}, []uint16{22, 3306, 5432, 6379}},          // Bash form
		{[]string{"22,3306,5432"}, []uint16{22, 3306, 5432}},                     // commas
		{[]string{" 80 , 443\t8080\n", "22,3306 5432"}, []uint16{22, 80, 443, 3306, 5432, 8080}},
		{[]string{"443", "80", "443", "80 80"}, []uint16{80, 443}}, // deduped, sorted
		{[]string{"22,"}, []uint16{22}},
		{[]string{"22,,3306"}, []uint16{22, 3306}},
		{[]string{"1", "65535"}, []uint16{1, 65535}},
		{[]string{"0022"}, []uint16{22}},
		{[]string{""}, nil},   // explicit "none": drops the default 22
		{[]string{"  "}, nil}, // same
		{[]string{"", "22"}, []uint16{22}},
	}
	for _, tc := range ok {
		got, err := ParsePorts(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}

	bad := []struct {
		in  []string
		msg string
	}{
		{[]string{"0"}, `invalid port "0": want a number from 1 to 65535`},
		{[]string{"65536"}, `invalid port "65536": want a number from 1 to 65535`},
		{[]string{"99999999999999999999"}, `invalid port "99999999999999999999"`},
		{[]string{"-1"}, `invalid port "-1"`},
		{[]string{"+22"}, `invalid port "+22"`},
		{[]string{"ssh"}, `invalid port "ssh"`},
		{[]string{"22.0"}, `invalid port "22.0"`},
		{[]string{"0x16"}, `invalid port "0x16"`},
		{[]string{"22-25"}, `invalid port "22-25"`},
		{[]string{"22;3306"}, `invalid port "22;3306"`},
		{[]string{"22 abc"}, `invalid port "abc" in "22 abc": want a number from 1 to 65535`},
		{[]string{"22", "0 80"}, `invalid port "0" in "0 80"`},
		{[]string{","}, `invalid port list ",": no ports in it`},
		{[]string{" , ,"}, `invalid port list " , ,": no ports in it`},
		{[]string{"22", ","}, `invalid port list ","`},
	}
	for _, tc := range bad {
		got, err := ParsePorts(tc.in)
		if err == nil {
			t.Errorf("ParsePorts(%q) = %v, want error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParsePorts(%q) error %q, want it to contain %q", tc.in, err, tc.msg)
		}
		checkErrLine(t, err)
	}
}

func TestParseNames(t *testing.T) {
	ok := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"nginx"}, []string{"nginx"}},
		{[]string{"nginx", "postgres"}, []string{"nginx", "postgres"}},
		{[]string{"nginx postgres"}, []string{"nginx", "postgres"}},
		{[]string{"nginx,postgres", " redis-server\t"}, []string{"nginx", "postgres", "redis-server"}},
		{[]string{"postgres", "nginx", "postgres"}, []string{"nginx", "postgres"}},
		{[]string{"kube-controller-manager"}, []string{"kube-controller-manager"}}, // kept as given
		{[]string{"Nginx", "nginx"}, []string{"Nginx", "nginx"}},                   // case sensitive
		{[]string{"kworker:1", "java.exe", "naïve"}, []string{"java.exe", "kworker:1", "naïve"}},
		{[]string{""}, nil},
		// A name with a space or a comma, in quotes; the Bash form still splits.
		{[]string{"my proc"}, []string{"my", "proc"}},
		{[]string{"'my proc'"}, []string{"my proc"}},
		{[]string{`"my proc"`}, []string{"my proc"}},
		{[]string{"'my proc' nginx,'a,b'"}, []string{"a,b", "my proc", "nginx"}},
		{[]string{"my' 'proc", "proc"}, []string{"my proc", "proc"}},
		{[]string{`"it's"`, `'say "hi"'`}, []string{"it's", `say "hi"`}},
		{[]string{"'Web Content'", "'Web Content'"}, []string{"Web Content"}},
	}
	for _, tc := range ok {
		got, err := ParseNames(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseNames(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	bad := []struct {
		in  []string
		msg string
	}{
		{[]string{"/usr/sbin/nginx"}, `invalid process name "/usr/sbin/nginx": want the name ps shows (comm), not a path`},
		{[]string{"nginx", "kworker/0:1"}, `invalid process name "kworker/0:1"`},
		{[]string{"ngi\x00nx"}, `invalid process name "ngi\x00nx": contains a control character`},
		{[]string{"a\x1bb"}, `contains a control character`},
		{[]string{","}, `invalid process list ",": no names in it`},
		{[]string{" ,, "}, `no names in it`},
		{[]string{"'my proc"}, `invalid process list "'my proc": a ' quote is not closed`},
		{[]string{`it's`}, `a ' quote is not closed`},
		{[]string{"''"}, `invalid process name "": empty`},
		{[]string{"'a/b c'"}, `invalid process name "a/b c": want the name ps shows (comm), not a path`},
	}
	for _, tc := range bad {
		got, err := ParseNames(tc.in)
		if err == nil {
			t.Errorf("ParseNames(%q) = %q, want error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseNames(%q) error %q, want it to contain %q", tc.in, err, tc.msg)
		}
		checkErrLine(t, err)
	}
}

// TestFormatNames: FormatNames writes a list ParseNames reads back whole.
func TestFormatNames(t *testing.T) {
	for _, tt := range []struct {
		names []string
		want  string
	}{
		{[]string{"nginx", "postgres"}, "nginx postgres"},
		{[]string{"my proc", "nginx"}, "'my proc' nginx"},
		{[]string{"a,b"}, "'a,b'"},
		{[]string{"it's"}, `'it'"'"'s'`},
		{[]string{"'x'"}, `"'"'x'"'"`},
		{[]string{`say "hi"`}, `'say "hi"'`},
	} {
		got := FormatNames(tt.names)
		if got != tt.want {
			t.Errorf("FormatNames(%q) = %q, want %q", tt.names, got, tt.want)
		}
		back, err := ParseNames([]string{got})
		if err != nil || !slices.Equal(back, slices.Sorted(slices.Values(tt.names))) {
			t.Errorf("ParseNames(%q) = %q, %v; want %q", got, back, err, tt.names)
		}
	}
}

func TestCommMatches(t *testing.T) {
	tests := []struct {
		name, comm string
		want       bool
	}{
		{"nginx", "nginx", true},
		{"nginx", "nginx2", false},
		{"nginx", "ngin", false},
		{"nginx", "Nginx", false},
		{"nginx", "nginx\x00\x00", true},                     // raw kernel buffer
		{"kube-controller-manager", "kube-controller", true}, // kernel truncated comm to 15 bytes
		{"kube-controller-manager", "kube-controlle", false}, // 14 bytes: not a truncation
		{"kube-controller-manager", "kube-controller-manager", true},
		{"kube-controller-manager", "kube-controller-x", false},
		{"kube-controller", "kube-controller", true},          // exactly 15
		{"kube-controller", "kube-controller-manager", false}, // a longer comm is not ours
		{"0123456789abcdef", "0123456789abcde", true},         // 16 → 15
		{"0123456789abcdeX", "0123456789abcde", true},         // indistinguishable after truncation
		{"ééééééééx", "ééééééé\xc3", true},                    // truncation splits a rune: bytes still compare
		{"nginx", "", false},                                  // unknown owner
		{"", "", false},
	}
	for _, tc := range tests {
		if got := CommMatches(tc.name, tc.comm); got != tc.want {
			t.Errorf("CommMatches(%q, %q) = %v, want %v", tc.name, tc.comm, got, tc.want)
		}
	}
}

func checkErrLine(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error spans lines: %q", msg)
	}
	if msg == "" || msg[0] < 'a' || msg[0] > 'z' {
		t.Errorf("error does not start lowercase: %q", msg)
	}
}
