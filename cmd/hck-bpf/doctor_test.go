package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/doctor"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

func TestDoctorUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"doctor", "extra"}, &out, &errb); code != exitUsage {
		t.Errorf("doctor extra: exit %d, want %d (stderr %q)", code, exitUsage, errb.String())
	}
}

func TestDoctorJSON(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: doctor loads BPF programs and probes SOCK_DESTROY in a private network namespace")
	}
	var out, errb bytes.Buffer
	code := Main([]string{"doctor", "--json", "--pin-dir", testnet.PinDir(t)}, &out, &errb)
	var checks []doctor.Check
	if err := json.Unmarshal(out.Bytes(), &checks); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out.String())
	}
	if len(checks) != 9 {
		t.Errorf("doctor --json: %d checks, want 9", len(checks))
	}
	if want := map[bool]int{true: exitFailure, false: exitOK}[doctor.Failed(checks) > 0]; code != want {
		t.Errorf("doctor --json: exit %d, want %d (stderr %q)", code, want, errb.String())
	}

	out.Reset()
	errb.Reset()
	code = Main([]string{"doctor"}, &out, &errb)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 9 || !strings.Contains(lines[0], "kernel") {
		t.Errorf("doctor: table\n%s", out.String())
	}
	if failed := strings.Contains(out.String(), "[FAIL]"); failed != (code == exitFailure) || code == exitUsage {
		t.Errorf("doctor: exit %d (stderr %q)\n%s", code, errb.String(), out.String())
	}
}
