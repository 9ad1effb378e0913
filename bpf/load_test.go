package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		// A feature the kernel lacks: named with the kernel that has it,
		// no verifier dump.
		{"owners iterator", 0, fmt.Errorf(`program hck_owners: fixing up kfuncs: kfunc "bpf_iter_num_new": %w`, ebpf.ErrNotSupported),
			[]string{"load owners iterator: this kernel lacks the bpf_iter_num kfuncs (open-coded iterators) (Linux 6.4+)"}, nil},
		{"destroy iterator", 0, fmt.Errorf(`program hck_destroy: fixing up kfuncs: kfunc "bpf_sock_destroy": %w`, ebpf.ErrNotSupported),
			[]string{"load destroy iterator: this kernel lacks the bpf_sock_destroy kfunc (Linux 6.5+)"}, nil},
		{"owners iterator", 0, &ebpf.VerifierError{Cause: errors.New("invalid argument"),
			Log: []string{"0: (85) call bpf_loop#181", "unknown func bpf_loop#181", "processed 5 insns"}},
			[]string{"load owners iterator: this kernel lacks the bpf_loop helper (Linux 5.17+)"}, []string{"processed 5 insns"}},
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

// TestOpenSockfile: the sockfile program (the kernel's: primary or
// fallback) is loaded and pinned once, then reused from its pin; a program pinned beside another map than the
// pinned hck_sockfiles (its map's pin replaced) is refused, not run.
func TestOpenSockfile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs and pins them (run: sudo make test)")
	}
	dir, err := os.MkdirTemp("/sys/fs/bpf", "hcktest-sockfile-")
	if err != nil {
		t.Skipf("needs bpffs at /sys/fs/bpf: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	prog, m, err := OpenSockfile(dir)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	prog.Close()
	m.Close()
	method, err := ChooseOwners()
	if err != nil {
		t.Fatal(err)
	}
	pin := method.SockfilePin()
	for _, name := range []string{pin, SockfileMapHckSockfiles} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s not pinned: %v", name, err)
		}
	}
	prog, m, err = OpenSockfile(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, _ = prog.Info()
	if again, _ := info.ID(); again != id {
		t.Errorf("second open loaded program %d, want the pinned %d", again, id)
	}
	prog.Close()
	m.Close()

	// Replace the map's pin: the pinned program no longer uses it.
	if err := os.Remove(filepath.Join(dir, SockfileMapHckSockfiles)); err != nil {
		t.Fatal(err)
	}
	_, _, err = OpenSockfile(dir)
	if err == nil || !strings.Contains(err.Error(), "does not use the pinned map") {
		t.Errorf("program pinned beside another map: %v", err)
	}
}
