package kernel

import (
	"strings"
	"testing"
)

func TestRulesFor(t *testing.T) {
	tests := []struct {
		release           string
		want              Version
		timewait, orphans bool
	}{
		{"6.18.44-fc-v669", Version{6, 18, 44}, true, true},
		{"5.15.0-91-generic", Version{5, 15, 0}, false, false},
		{"6.1.0-13-amd64", Version{6, 1, 0}, true, false},
		{"6.0.0", Version{6, 0, 0}, true, false},
		{"6.0", Version{6, 0, 0}, true, false},
		{"5.19.17", Version{5, 19, 17}, false, false},
		{"6.10.14-linuxkit", Version{6, 10, 14}, true, false},
		{"6.11.0", Version{6, 11, 0}, true, true},
		{"6.11-rc1", Version{6, 11, 0}, true, true},
		{"6.11.0-rc7+", Version{6, 11, 0}, true, true},
		{"6.8.0-1015-aws", Version{6, 8, 0}, true, false},
		{"6.12.9+bpo-amd64", Version{6, 12, 9}, true, true},
		{"6.6.30_1", Version{6, 6, 30}, true, false},
		{"4.19.0+", Version{4, 19, 0}, false, false},
		{"3.10.0-1160.el7.x86_64", Version{3, 10, 0}, false, false},
		{"5.14.0-427.13.1.el9_4.x86_64", Version{5, 14, 0}, false, false},
		{"6.5.0-1025-azure", Version{6, 5, 0}, true, false},
		{"7.0.0", Version{7, 0, 0}, true, true},
		{"10.2", Version{10, 2, 0}, true, true},
		{"6.18.x", Version{6, 18, 0}, true, true},
		{"6.9.", Version{6, 9, 0}, true, false},
	}
	for _, tt := range tests {
		r, err := RulesFor(tt.release)
		if err != nil {
			t.Errorf("RulesFor(%q): %v", tt.release, err)
			continue
		}
		if r.Version != tt.want || r.DestroyTimewait != tt.timewait || r.DestroyOrphans != tt.orphans || r.Release != tt.release {
			t.Errorf("RulesFor(%q) = %+v, want %v timewait=%v orphans=%v", tt.release, r, tt.want, tt.timewait, tt.orphans)
		}
		if warn := r.Warning(); (warn == "") != (tt.timewait && tt.orphans) {
			t.Errorf("RulesFor(%q).Warning() = %q", tt.release, warn)
		}
	}
}

func TestKernelRulesErrors(t *testing.T) {
	for _, rel := range []string{"", "6", "6.", "6-rc1", ".6.1", "v6.1.0", "linux-6.1", "6.x", " 6.1", "6..1",
		"1234567.1", "6.1234567", "\n", strings.Repeat("6", 300)} {
		r, err := RulesFor(rel)
		if err == nil {
			t.Errorf("RulesFor(%q) = %+v, want an error", rel, r)
			continue
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "parse kernel release") {
			t.Errorf("RulesFor(%q): error %q: want one line starting with the action", rel, msg)
		}
	}
}

func TestWarning(t *testing.T) {
	for rel, want := range map[string]string{
		"5.15.0-91-generic": "TIME_WAIT and orphaned sockets are reported, not destroyed",
		"6.1.0-13-amd64":    "orphaned sockets (no process holds them) are reported, not destroyed",
	} {
		r, err := RulesFor(rel)
		if err != nil {
			t.Fatal(err)
		}
		if w := r.Warning(); !strings.Contains(w, want) || strings.Contains(w, "\n") {
			t.Errorf("%s: Warning() = %q, want it to say %q", rel, w, want)
		}
	}
	for rel, want := range map[string]string{
		"6.18.44-fc-v669": "kernel 6.18.44, per state: sockets a process holds destroyed; TIME_WAIT destroyed (≥6.0); orphans destroyed (≥6.11)",
		"6.1.0-13-amd64": "kernel 6.1.0, per state: sockets a process holds destroyed; TIME_WAIT destroyed (≥6.0); " +
			"orphaned sockets (no process holds them) reported, not destroyed (tcp_abort can leave them alive before 6.11)",
		"5.15.0-91-generic": "kernel 5.15.0, per state: sockets a process holds destroyed; " +
			"TIME_WAIT and FIN_WAIT2 timewait sockets reported, not destroyed (destroying them needs 6.0); " +
			"orphaned sockets (no process holds them) reported, not destroyed (tcp_abort can leave them alive before 6.11)",
	} {
		r, _ := RulesFor(rel)
		if got := r.Summary(); got != want {
			t.Errorf("%s: Summary() = %q, want %q", rel, got, want)
		}
	}
}

func FuzzRulesFor(f *testing.F) {
	for _, s := range []string{"6.18.44-fc-v669", "5.15.0-91-generic", "6.1.0-13-amd64", "6.11-rc1", "", "6.", "9999999.1", "6.0.9999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		r, err := RulesFor(rel)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("RulesFor(%q): error spans lines: %q", rel, err)
			}
			return
		}
		if r.Major < 0 || r.Minor < 0 || r.Patch < 0 {
			t.Fatalf("RulesFor(%q) = %+v: negative version", rel, r)
		}
		if r.DestroyOrphans && !r.DestroyTimewait {
			t.Fatalf("RulesFor(%q) = %+v: orphans without timewait", rel, r)
		}
		if strings.ContainsAny(r.Warning(), "\n\r") {
			t.Fatalf("RulesFor(%q): warning spans lines", rel)
		}
	})
}

func TestMissingCaps(t *testing.T) {
	set := func(caps ...int) CapSet {
		var c CapSet
		for _, n := range caps {
			c[n/32] |= 1 << (n % 32)
		}
		return c
	}
	tests := []struct {
		have CapSet
		want string
	}{
		{set(CapBPF, CapPerfmon, CapNetAdmin), ""},
		{set(CapSysAdmin, CapNetAdmin), ""},
		{set(CapSysAdmin), "CAP_NET_ADMIN"},
		{set(CapBPF, CapNetAdmin), "CAP_PERFMON"},
		{set(), "CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN"},
	}
	for _, tt := range tests {
		if got := strings.Join(tt.have.Missing(), ","); got != tt.want {
			t.Errorf("Missing(%x) = %q, want %q", tt.have, got, tt.want)
		}
	}
}

func TestDestroys(t *testing.T) {
	for _, tt := range []struct {
		release                 string
		timewait, orphan, owned bool
	}{
		{"6.18.44-fc-v669", true, true, true},
		{"6.1.0-13-amd64", true, false, true},
		{"5.15.0-91-generic", false, false, true},
	} {
		r, err := RulesFor(tt.release)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Destroys(true, false); got != tt.timewait {
			t.Errorf("%s: Destroys(timewait) = %v", tt.release, got)
		}
		if got := r.Destroys(false, false); got != tt.orphan {
			t.Errorf("%s: Destroys(orphan) = %v", tt.release, got)
		}
		if got := r.Destroys(false, true); got != tt.owned {
			t.Errorf("%s: Destroys(owned) = %v", tt.release, got)
		}
	}
}
