package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// TestExplainLoad: every load failure names the object that failed, an
// incompatible pinned map never speaks of a map size of 0, and a verifier
// error keeps its whole log.
func TestExplainLoad(t *testing.T) {
	incompatible := fmt.Errorf("use pinned map hck_want: %w", ebpf.ErrMapIncompatible)
	for _, tt := range []struct {
		what    string
		size    uint32
		err     error
		want    []string
		wantNot []string
	}{
		{"owners iterator map hck_want", 0, incompatible,
			[]string{"load owners iterator map hck_want: the maps pinned in /sys/fs/bpf/x do not match this build", "hck-bpf unload --pin-dir /sys/fs/bpf/x"},
			[]string{"size", "tracker"}},
		{"tracker", 4096, incompatible, []string{"load tracker: ", "(socket map of 4096 entries)"}, nil},
		{"sockets iterator", 0, fmt.Errorf("load program: %w", os.ErrPermission),
			[]string{"load sockets iterator: ", "CAP_BPF"}, []string{"MEMLOCK"}},
		{"owners iterator", 0, &ebpf.VerifierError{Cause: errors.New("invalid argument"),
			Log: []string{"0: (b7) r0 = 0", "1: first line", "2: middle line", "3: last line"}},
			[]string{"load owners iterator: the kernel's verifier refused it", "0: (b7) r0 = 0", "1: first line", "2: middle line", "3: last line"}, nil},
	} {
		err := explainLoad(tt.what, "/sys/fs/bpf/x", tt.size, tt.err)
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tt.what, err, w)
			}
		}
		for _, w := range tt.wantNot {
			if strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q has %q", tt.what, err, w)
			}
		}
		if !errors.Is(err, tt.err) && !errors.Is(err, os.ErrPermission) {
			t.Errorf("%s: %v does not wrap %v", tt.what, err, tt.err)
		}
	}
}

func TestWithoutMemlockHint(t *testing.T) {
	err := errors.New("load program: operation not permitted (MEMLOCK may be too low, consider rlimit.RemoveMemlock)")
	if got := WithoutMemlockHint(err); got != "load program: operation not permitted" {
		t.Errorf("WithoutMemlockHint = %q", got)
	}
}
