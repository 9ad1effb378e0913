package tracking

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hck-bpf/hck-bpf/bpf"
)

// tracepoint is where the tracker is attached.
const tracepoint = "inet_sock_set_state"

// verifyLink makes sure that the link pinned in pinDir as linkPin is the
// tracker of this pin dir: a raw_tracepoint link on inet_sock_set_state
// whose program is hck_set_state, a tracing program writing this pin dir's
// hck_conns. A foreign link under that name (an iterator's, another tool's
// program on the same tracepoint, a tracker of another pin dir) would leave
// hck-bpf running while tracking nothing; it is a *ConfigError.
//
// The program can only be opened by id with CAP_SYS_ADMIN: without it,
// only the link's type and attach point (what the link itself tells) and
// the presence of hck_conns are checked.
func verifyLink(l link.Link, pinDir string) error {
	path := filepath.Join(pinDir, linkPin)
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("read link %s: %w", path, err)
	}
	if info.Type != link.RawTracepointType {
		return foreignLink(path, "its link type is %s, not raw_tracepoint", linkTypeName(info.Type))
	}
	if rt := info.RawTracepoint(); rt == nil || rt.Name != tracepoint {
		name := "?"
		if rt != nil {
			name = rt.Name
		}
		return foreignLink(path, "it is attached to %s, not %s", name, tracepoint)
	}
	var pi *ebpf.ProgramInfo
	prog, err := ebpf.NewProgramFromID(info.Program)
	switch {
	case errors.Is(err, os.ErrPermission):
		// See above: the link's type and attach point are all we know.
	case err != nil:
		return fmt.Errorf("open the program of link %s: %w", path, err)
	default:
		pi, err = prog.Info()
		prog.Close()
		if err != nil {
			return fmt.Errorf("read the program of link %s: %w", path, err)
		}
		if pi.Name != bpf.TrackerProgHckSetState || pi.Type != ebpf.Tracing {
			return foreignLink(path, "its program is %s %q, not the tracing program %q", pi.Type, pi.Name, bpf.TrackerProgHckSetState)
		}
	}
	conns, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, bpf.TrackerMapHckConns), nil)
	if errors.Is(err, fs.ErrNotExist) {
		return foreignLink(path, "it is pinned without %s (a tracker of another pin dir?)", bpf.TrackerMapHckConns)
	}
	if err != nil {
		return fmt.Errorf("load pinned map %s: %w", bpf.TrackerMapHckConns, err)
	}
	defer conns.Close()
	if pi == nil {
		return nil
	}
	ci, err := conns.Info()
	if err != nil {
		return fmt.Errorf("read map %s: %w", bpf.TrackerMapHckConns, err)
	}
	connsID, _ := ci.ID()
	if ids, _ := pi.MapIDs(); !slices.Contains(ids, connsID) {
		return foreignLink(path, "its program %s does not write this pin dir's %s (a tracker of another pin dir)",
			bpf.TrackerProgHckSetState, bpf.TrackerMapHckConns)
	}
	return nil
}

func foreignLink(path, format string, a ...any) error {
	return configErrorf("%s is not hck-bpf's tracker: %s; 'hck-bpf unload' removes it, or choose another --pin-dir",
		path, fmt.Sprintf(format, a...))
}

func linkTypeName(t link.Type) string {
	switch t {
	case link.RawTracepointType:
		return "raw_tracepoint"
	case link.TracingType:
		return "tracing"
	case link.IterType:
		return "iter"
	case link.PerfEventType:
		return "perf_event"
	case link.CgroupType:
		return "cgroup"
	case link.NetNsType:
		return "netns"
	case link.XDPType:
		return "xdp"
	case link.KprobeMultiType:
		return "kprobe_multi"
	}
	return fmt.Sprintf("type %d", t)
}

// VerifyPinned says whether a tracker is pinned in pinDir, and whether it
// is hck-bpf's: pinned is false when nothing is pinned as
// hck_set_state_link; err, when something is and it is not hck-bpf's
// tracker of this pin dir (or cannot be read). It changes nothing.
func VerifyPinned(pinDir string) (pinned bool, err error) {
	path := filepath.Join(pinDir, linkPin)
	what, err := pinKind(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("check pin %s: %w", path, err)
	}
	if what != "" {
		return true, configErrorf("%s is %s, not hck-bpf's pinned link", path, what)
	}
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		if kind, kerr := pinnedKind(path); kerr == nil && kind != "link" {
			return true, configErrorf("%s is a pinned %s, not hck-bpf's pinned link", path, kind)
		}
		return true, fmt.Errorf("load pinned link %s: %w", path, err)
	}
	defer l.Close()
	return true, verifyLink(l, pinDir)
}
