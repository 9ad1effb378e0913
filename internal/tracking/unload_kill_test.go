package tracking

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hck-bpf/hck-bpf/bpf"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// TestUnloadKillDir: unload also removes what kill pinned in the pin dir's
// kill subdirectory (alone, or beside a tracker), and the subdirectory;
// anything else in it stays, listed under kill/, and so does the pin dir.
func TestUnloadKillDir(t *testing.T) {
	testnet.RequireRoot(t)
	for _, withTracker := range []bool{false, true} {
		pin := testnet.PinDir(t)
		if withTracker {
			tr, err := Open(Options{PinDir: pin})
			if err != nil {
				t.Fatal(err)
			}
			tr.Close()
		} else if err := EnsurePinDir(pin); err != nil {
			t.Fatal(err)
		}
		kill := filepath.Join(pin, bpf.KillPinDir)
		if err := os.Mkdir(kill, 0o700); err != nil {
			t.Fatal(err)
		}
		prog, m, err := bpf.OpenSockfile(kill)
		if err != nil {
			t.Fatal(err)
		}
		prog.Close()
		m.Close()
		rep, err := UnloadPins(pin, UnloadOptions{})
		if err != nil {
			t.Fatalf("tracker %v: %v", withTracker, err)
		}
		method, err := bpf.ChooseOwners() // the sockfile program OpenSockfile chose
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{method.SockfilePin(), bpf.SockfileMapHckSockfiles} {
			if !slices.Contains(rep.Removed, filepath.Join(bpf.KillPinDir, name)) {
				t.Errorf("tracker %v: removed %q, not kill/%s", withTracker, rep.Removed, name)
			}
		}
		if withTracker && !slices.Contains(rep.Removed, linkPin) {
			t.Errorf("removed %q, not the tracker's link", rep.Removed)
		}
		if !rep.DirRemoved {
			t.Errorf("tracker %v: pin dir kept (left %v)", withTracker, rep.Left)
		}
	}

	// Something else in kill/: left and listed, the rest removed.
	pin := testnet.PinDir(t)
	kill := filepath.Join(pin, bpf.KillPinDir)
	if err := EnsurePinDir(pin); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(kill, 0o700); err != nil {
		t.Fatal(err)
	}
	prog, m, err := bpf.OpenSockfile(kill)
	if err != nil {
		t.Fatal(err)
	}
	prog.Close()
	m.Close()
	if err := os.Symlink("/tmp", filepath.Join(kill, "notes")); err != nil {
		t.Fatal(err)
	}
	rep, err := UnloadPins(pin, UnloadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Left) != 1 || rep.Left[0].Name != filepath.Join(bpf.KillPinDir, "notes") || rep.DirRemoved {
		t.Errorf("left %+v, dir removed %v; want kill/notes left and the pin dir kept", rep.Left, rep.DirRemoved)
	}
	if _, err := os.Lstat(filepath.Join(kill, bpf.SockfileMapHckSockfiles)); !os.IsNotExist(err) {
		t.Errorf("kill/%s still there: %v", bpf.SockfileMapHckSockfiles, err)
	}
}
