package tracking

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// The names unload may remove: every name the code pins under, as the
// README's pin table lists them. A new pinned map shows up here first.
func TestPinNames(t *testing.T) {
	want := []string{"hck_set_state_link", "hck_armed", "hck_config", "hck_conns", "hck_counters", "hck_events", "hck_netns", "hck_owned", "hck_recent", "hck_sockfiles", "hck_states", "hck_want"}
	if got := PinNames(); !slices.Equal(got, want) {
		t.Errorf("PinNames() = %q, want %q", got, want)
	}
	for _, n := range append(want, ownersIterPin+bpf.OwnersDigest, socketsIterPin+bpf.SocketsDigest, bpf.SockfilePin+bpf.SockfileDigest,
		"hck_owners_iter_000000000000", "hck_sockets_iter_0123456789ab", "hck_sockfile_0123456789ab") {
		if !IsPinName(n) {
			t.Errorf("IsPinName(%q) = false", n)
		}
	}
	for _, n := range []string{"", "hck_fd_chunk", "hck_kills", "hck_conns.bak", "hck_sockets_iter_",
		"hck_sockets_iter_0123456789", "hck_sockets_iter_0123456789AB", "hck_owners_iter_0123456789abc",
		"hck_owners_iter_x23456789abc", "hck_sockfile_", "hck_find_files", "maps.debug", "notes"} {
		if IsPinName(n) {
			t.Errorf("IsPinName(%q) = true", n)
		}
	}
}

// A pin dir that is not, and would not be, on a bpf filesystem is a
// ConfigError, and checking it creates nothing.
func TestCheckPinDirNotBPFFS(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"":                                "pin dir is empty",
		tmp:                               "is not on a bpf filesystem",
		filepath.Join(tmp, "a", "b", "c"): "would be made in " + tmp,
		file:                              "is not a directory",
		filepath.Join(file, "x"):          "is not a directory",
	}
	for dir, msg := range cases {
		err := CheckPinDir(dir)
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), msg) {
			t.Errorf("CheckPinDir(%q) = %v, want a ConfigError saying %q", dir, err, msg)
			continue
		}
		if strings.Contains(err.Error(), "mount -t bpf") {
			t.Errorf("CheckPinDir(%q): %v: suggests mounting bpffs over a directory", dir, err)
		}
		if dir != "" && !strings.Contains(err.Error(), BPFFSRoot) {
			t.Errorf("CheckPinDir(%q): %v: does not suggest a directory under %s", dir, err, BPFFSRoot)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CheckPinDir created %s/a: %v", tmp, err)
	}
}

// A pin dir on bpffs, made or to be made, is accepted without being made.
func TestCheckPinDirBPFFS(t *testing.T) {
	testnet.RequireRoot(t)
	if ok, _, err := onBPFFS(BPFFSRoot); err != nil || !ok {
		t.Skipf("no bpffs at %s: %v", BPFFSRoot, err)
	}
	pin := testnet.PinDir(t)
	deep := filepath.Join(pin, "a", "b")
	for _, dir := range []string{BPFFSRoot, pin, deep} {
		if err := CheckPinDir(dir); err != nil {
			t.Errorf("CheckPinDir(%s): %v", dir, err)
		}
	}
	if _, err := os.Stat(pin); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CheckPinDir created %s: %v", pin, err)
	}
}

// The pin dir's lock: a second taker is refused and told the holder's pid,
// which /proc/locks shows; released, it can be taken again.
func TestPinDirLock(t *testing.T) {
	dir := t.TempDir() // flock works on any directory
	if pid := ServicePID(dir); pid != 0 {
		t.Fatalf("ServicePID of an unlocked dir = %d", pid)
	}
	l, err := lockPinDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pid := ServicePID(dir); pid != os.Getpid() {
		t.Errorf("ServicePID = %d, want this process, %d", pid, os.Getpid())
	}
	// flock locks belong to open files: a second open is refused even in
	// the same process.
	_, err = lockPinDir(dir)
	var be *BusyError
	if !errors.As(err, &be) || be.PID != os.Getpid() || !strings.Contains(err.Error(), "pid ") {
		t.Errorf("second lock: %v, want a BusyError naming pid %d", err, os.Getpid())
	}
	if err := l.release(); err != nil {
		t.Fatal(err)
	}
	l2, err := lockPinDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.release()
	if pid := ServicePID(dir); pid != 0 {
		t.Errorf("ServicePID after release = %d", pid)
	}
}
