package bpf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChooseOwners: the owners method follows the kernel's BTF, and the
// probe agrees with the loader: where the bpf_iter_num_new kfunc is absent
// (before Linux 6.4) the primary owners iterator does not load and the
// fallback is chosen (also without bpf_rdonly_cast, 6.2, which kill's
// primary sockfile program calls); the fallback loads either way. The test override is
// read, and a wrong value refused.
func TestChooseOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads BPF programs (run: sudo make test)")
	}
	t.Setenv(OwnersEnv, "")
	if ok, err := HasKfunc("hck_no_such_kfunc"); ok || err != nil {
		t.Fatalf("HasKfunc of a made-up name: %v %v", ok, err)
	}
	iterNum, err := HasKfunc("bpf_iter_num_new")
	if err != nil {
		t.Fatal(err)
	}
	_, primary := ProbeOwners(OwnersIterNum)
	if iterNum != (primary == nil) {
		t.Errorf("kernel BTF has bpf_iter_num_new: %v, but loading the primary owners iterator: %v", iterNum, primary)
	}
	if !iterNum && (primary == nil || !strings.Contains(primary.Error(), "bpf_iter_num_new")) {
		t.Errorf("the primary's load failure does not name the missing kfunc: %v", primary)
	}
	rdonlyCast, err := HasKfunc("bpf_rdonly_cast")
	if err != nil {
		t.Fatal(err)
	}
	want := OwnersLoop
	if iterNum && rdonlyCast {
		want = OwnersIterNum
	}
	if m, err := ChooseOwners(); m != want || err != nil {
		t.Errorf("ChooseOwners = %v, %v; want %v", m, err, want)
	}
	if _, err := ProbeOwners(OwnersLoop); err != nil {
		t.Errorf("the fallback does not load: %v", err)
	}
	t.Setenv(OwnersEnv, "bpf_loop")
	if m, err := ChooseOwners(); m != OwnersLoop || err != nil {
		t.Errorf("ChooseOwners with %s=bpf_loop: %v, %v", OwnersEnv, m, err)
	}
	t.Setenv(OwnersEnv, "task_file")
	if _, err := ChooseOwners(); err == nil || !strings.Contains(err.Error(), OwnersEnv) {
		t.Errorf("ChooseOwners with a wrong %s: %v, want an error naming it", OwnersEnv, err)
	}
}

// TestChooseOwnersInPinDir: a pin dir holding this build's fallback owners
// iterator (or sockfile program) gets the fallback, whatever the kernel
// has: the pin proves it loads here, and no process reads the kernel's BTF
// (about 20 ms) to choose again. An empty one gets the kernel's choice.
func TestChooseOwnersInPinDir(t *testing.T) {
	t.Setenv(OwnersEnv, "")
	for _, sockfile := range []bool{false, true} {
		dir := t.TempDir()
		kernels, err := ChooseOwners()
		if err != nil {
			t.Fatal(err)
		}
		if m, err := ChooseOwnersIn(dir, sockfile); err != nil || m != kernels {
			t.Fatalf("empty pin dir: %v %v, want the kernel's %v", m, err, kernels)
		}
		other, pin := OwnersLoop, OwnersCompatIterPin+OwnersCompatDigest
		if kernels == OwnersLoop {
			other, pin = OwnersIterNum, OwnersIterPin+OwnersDigest
		}
		if sockfile {
			pin = other.SockfilePin()
		}
		if err := os.WriteFile(filepath.Join(dir, pin), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if m, err := ChooseOwnersIn(dir, sockfile); err != nil || m != other {
			t.Errorf("sockfile %v: pin dir holding %s: %v %v, want %v", sockfile, pin, m, err, other)
		}
	}
}
