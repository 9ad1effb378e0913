package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hck-bpf/hck-bpf/internal/kernel"
)

// The loader: how hck-bpf's objects are loaded, pinned and found again.
// Maps are pinned by name in a pin dir; the tracker's link as LinkPin; the
// iterators once per build, as prefix + the digest of their compiled
// object, so that a later hck-bpf built from the same object reads them
// without loading anything (and reading a pinned iterator runs it in the
// reader's own namespaces).

// Pin names besides the maps pinned by name (PinnedMaps).
const (
	// LinkPin is the pinned link that keeps the tracker attached.
	LinkPin = "hck_set_state_link"
	// OwnersIterPin and SocketsIterPin are the iterators' prefixes:
	// prefix + digest.
	OwnersIterPin  = "hck_owners_iter_"
	SocketsIterPin = "hck_sockets_iter_"
	// OwnersCompatIterPin is the prefix of the owners iterator's fallback
	// (OwnersLoop).
	OwnersCompatIterPin = "hck_owners_compat_iter_"
	// SockfilePin is the sockfile program's prefix: prefix + digest;
	// SockfileCompatPin its fallback's.
	SockfilePin       = "hck_sockfile_"
	SockfileCompatPin = "hck_sockfilecompat_"
	// KillPinDir is the subdirectory of a pin dir where `kill` pins its
	// owner lookup (the sockfile program, and an owners iterator with maps
	// of its own), apart from the service's: kills take turns on it (a
	// lock on the directory) and clear its maps.
	KillPinDir = "kill"
)

// noPrealloc is BPF_F_NO_PREALLOC.
const noPrealloc = 1

// PinnedMaps are the maps of every object that are pinned by name.
var PinnedMaps = sync.OnceValue(func() []string {
	var names []string
	for _, load := range []func() (*ebpf.CollectionSpec, error){LoadTracker, LoadOwners, LoadOwnersCompat, LoadSockets, LoadDestroy, LoadSockfile, LoadSockfileCompat} {
		spec, err := load()
		if err != nil {
			panic(fmt.Sprintf("load embedded BPF spec: %v", err)) // the objects are compiled in
		}
		for name, m := range spec.Maps {
			if m.Pinning == ebpf.PinByName && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
})

// IsPinName reports whether hck-bpf pins something under name: LinkPin,
// one of PinnedMaps, or an iterator or the sockfile program of any build.
func IsPinName(name string) bool {
	if name == LinkPin || slices.Contains(PinnedMaps(), name) {
		return true
	}
	for _, prefix := range []string{OwnersIterPin, OwnersCompatIterPin, SocketsIterPin, SockfilePin, SockfileCompatPin} {
		if digest, ok := strings.CutPrefix(name, prefix); ok && isDigest(digest) {
			return true
		}
	}
	return false
}

// isDigest matches OwnersDigest's form: lowercase hex, fixed length.
func isDigest(s string) bool {
	if len(s) != len(OwnersDigest) {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// explainLoad turns a failure to load the object what (pinned in pinDir,
// its socket map sized mapSize when not 0) into one line a user can act
// on, naming the object. A verifier error keeps its whole log (%+v).
func explainLoad(what, pinDir string, mapSize uint32, err error) error {
	var verr *ebpf.VerifierError
	if f, ok := missingFeature(err); ok {
		return &loadError{msg: fmt.Sprintf("load %s: this kernel lacks %s (Linux %s+): %v", what, f.name, f.since, firstLine(err)), err: err}
	}
	switch {
	case errors.As(err, &verr):
		return &loadError{msg: fmt.Sprintf("load %s: the kernel's verifier refused it: %+v", what, verr), err: err}
	case errors.Is(err, os.ErrPermission):
		return &loadError{msg: fmt.Sprintf("load %s: %s (%s)", what, WithoutMemlockHint(err), kernel.NeedBPF), err: err}
	case errors.Is(err, ebpf.ErrMapIncompatible) && pinDir != "":
		size := ""
		if mapSize != 0 {
			size = fmt.Sprintf(" (socket map of %d entries)", mapSize)
		}
		return fmt.Errorf("load %s: the maps pinned in %s do not match this build%s (run 'hck-bpf unload --pin-dir %s' first): %w",
			what, pinDir, size, pinDir, err)
	}
	return fmt.Errorf("load %s: %w", what, err)
}

// feature is a kernel feature a program needs, as a failed load names it.
type feature struct {
	sign  string // in the load error (or the verifier's log)
	name  string
	since string // the first kernel that has it
}

// features are the newer kernel features hck-bpf's programs call. Each of
// these has a fallback (ChooseOwners) or a refusal that names it.
var features = []feature{
	{`kfunc "bpf_iter_num_`, "the bpf_iter_num kfuncs (open-coded iterators)", "6.4"},
	{`kfunc "bpf_rdonly_cast"`, "the bpf_rdonly_cast kfunc", "6.2"},
	{`kfunc "bpf_sock_destroy"`, "the bpf_sock_destroy kfunc", "6.5"},
	{"unknown func bpf_loop#", "the bpf_loop helper", "5.17"},
}

// missingFeature is the feature whose absence failed a load, if known.
func missingFeature(err error) (feature, bool) {
	msg := fmt.Sprintf("%+v", err)
	for _, f := range features {
		if strings.Contains(msg, f.sign) {
			return f, true
		}
	}
	return feature{}, false
}

// firstLine is err's message up to its first line break (a verifier
// error's log follows it).
func firstLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}

// ExplainLoad is the one-line error for a failed load of the object what
// (no pins): the kernel feature it lacks and the kernel that has it, when
// known, else the verifier's log or the cause.
func ExplainLoad(what string, err error) error { return explainLoad(what, "", 0, err) }

// loadError is a message of its own over the error it explains.
type loadError struct {
	msg string
	err error
}

func (e *loadError) Error() string { return e.msg }
func (e *loadError) Unwrap() error { return e.err }

// WithoutMemlockHint is err's message without the hint cilium/ebpf adds to
// every EPERM, "(MEMLOCK may be too low, consider rlimit.RemoveMemlock)":
// since Linux 5.11 the rlimit plays no part, and a missing capability is
// the cause.
func WithoutMemlockHint(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " (MEMLOCK may be too low"); i >= 0 {
		if j := strings.Index(msg[i:], ")"); j >= 0 {
			return msg[:i] + msg[i+j+1:]
		}
		return msg[:i]
	}
	return msg
}

// OpenTracker loads the tracker's maps pinned in pinDir into objs,
// creating and pinning the missing ones (hck_conns with size entries); with
// program, also its program (not attached: AttachTracker).
func OpenTracker(objs *TrackerObjects, pinDir string, size uint32, program bool) error {
	spec, err := LoadTracker()
	if err != nil {
		return fmt.Errorf("load tracker spec: %w", err)
	}
	spec.Maps[TrackerMapHckConns].MaxEntries = size
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: pinDir}}
	if program {
		err = spec.LoadAndAssign(objs, opts)
	} else {
		err = spec.LoadAndAssign(&objs.TrackerMaps, opts)
	}
	if err != nil {
		return explainLoad("tracker", pinDir, size, err)
	}
	return nil
}

// AttachTracker attaches the tracker's program to
// tp_btf/inet_sock_set_state.
func AttachTracker(prog *ebpf.Program) (link.Link, error) {
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		return nil, fmt.Errorf("attach tp_btf/inet_sock_set_state: %w", err)
	}
	return l, nil
}

// OpenOwners opens the owners iterator's maps pinned in pinDir (hck_want,
// the files asked about, and hck_owned, what the walks found; made with
// size entries when missing) and the owners iterator pinned for this build,
// loading, attaching and pinning it when there is none.
func OpenOwners(pinDir string, size uint32) (want, owned *ebpf.Map, it *link.Iter, err error) {
	return openOwners(pinDir, size, false)
}

// OpenOwnersPrealloc is OpenOwners with the maps preallocated when it
// makes them, so that inserting and deleting skip the kernel's allocator:
// for small maps filled and emptied on every use (kill's). Maps pinned
// otherwise are refused as incompatible.
func OpenOwnersPrealloc(pinDir string, size uint32) (want, owned *ebpf.Map, it *link.Iter, err error) {
	return openOwners(pinDir, size, true)
}

func openOwners(pinDir string, size uint32, prealloc bool) (want, owned *ebpf.Map, it *link.Iter, err error) {
	method, err := ChooseOwnersIn(pinDir, false)
	if err != nil {
		return nil, nil, nil, err
	}
	return OpenOwnersWith(method, pinDir, size, prealloc)
}

// OpenOwnersWith is OpenOwners (OpenOwnersPrealloc with prealloc) with the
// owners iterator of method, whatever the kernel has: for tests, which
// compare the methods on one kernel.
func OpenOwnersWith(method OwnersMethod, pinDir string, size uint32, prealloc bool) (want, owned *ebpf.Map, it *link.Iter, err error) {
	// The maps are the same whichever program uses them.
	const maps = "owners iterator"
	what := maps + " (" + method.String() + ")"
	spec, prefix, digest, prog, err := method.spec()
	if err != nil {
		return nil, nil, nil, err
	}
	spec.Maps[OwnersMapHckWant].MaxEntries = size
	spec.Maps[OwnersMapHckOwned].MaxEntries = size
	if prealloc {
		spec.Maps[OwnersMapHckWant].Flags &^= noPrealloc
		spec.Maps[OwnersMapHckOwned].Flags &^= noPrealloc
	}
	want, err = ebpf.NewMapWithOptions(spec.Maps[OwnersMapHckWant], ebpf.MapOptions{PinPath: pinDir})
	if err != nil {
		return nil, nil, nil, explainLoad(maps+" map "+OwnersMapHckWant, pinDir, size, err)
	}
	owned, err = ebpf.NewMapWithOptions(spec.Maps[OwnersMapHckOwned], ebpf.MapOptions{PinPath: pinDir})
	if err != nil {
		want.Close()
		return nil, nil, nil, explainLoad(maps+" map "+OwnersMapHckOwned, pinDir, size, err)
	}
	it, err = pinnedIter(pinDir, prefix, digest, func() (*ebpf.Program, io.Closer, error) {
		coll, err := ebpf.NewCollectionWithOptions(onlyProgram(spec, prog), ebpf.CollectionOptions{
			MapReplacements: map[string]*ebpf.Map{OwnersMapHckWant: want, OwnersMapHckOwned: owned},
		})
		if err != nil {
			return nil, nil, explainLoad(what, pinDir, size, err)
		}
		return coll.Programs[prog], closer(coll.Close), nil
	})
	if err != nil {
		want.Close()
		owned.Close()
		return nil, nil, nil, err
	}
	return want, owned, it, nil
}

// closer is a Close without an error as an io.Closer.
type closer func()

func (c closer) Close() error { c(); return nil }

// onlyProgram is spec with its program prog alone, and the maps it uses.
func onlyProgram(spec *ebpf.CollectionSpec, prog string) *ebpf.CollectionSpec {
	out := spec.Copy()
	for name := range out.Programs {
		if name != prog {
			delete(out.Programs, name)
		}
	}
	return out
}

// OpenSockfile returns the sockfile program pinned in dir for this build
// and its map hck_sockfiles (pinned by name), loading and pinning them
// when there are none. The program is run, never attached.
//
// Kernels without the bpf_iter_num or bpf_rdonly_cast kfuncs get its
// fallback (sockfile_compat.bpf.c, pinned as SockfileCompatPin), as the
// owners iterator's method (ChooseOwners) says.
func OpenSockfile(dir string) (*ebpf.Program, *ebpf.Map, error) {
	m, err := ChooseOwnersIn(dir, true)
	if err != nil {
		return nil, nil, err
	}
	return OpenSockfileWith(m, dir)
}

// OpenSockfileWith is OpenSockfile with the sockfile program that goes
// with the owners method m, whatever the kernel has: for tests.
func OpenSockfileWith(method OwnersMethod, dir string) (*ebpf.Program, *ebpf.Map, error) {
	what := "sockfile program"
	load, prefix, digest, name := LoadSockfile, SockfilePin, SockfileDigest, SockfileProgHckFindFiles
	if method == OwnersLoop {
		what += " (bpf_loop)"
		load, prefix, digest, name = LoadSockfileCompat, SockfileCompatPin, SockfileCompatDigest, SockfileCompatProgHckFindFilesCompat
	}
	spec, err := load()
	if err != nil {
		return nil, nil, fmt.Errorf("load sockfile spec: %w", err)
	}
	m, err := ebpf.NewMapWithOptions(spec.Maps[SockfileMapHckSockfiles], ebpf.MapOptions{PinPath: dir})
	if err != nil {
		return nil, nil, explainLoad(what+" map "+SockfileMapHckSockfiles, dir, 0, err)
	}
	path := filepath.Join(dir, prefix+digest)
	prog, err := ebpf.LoadPinnedProgram(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		var coll *ebpf.Collection
		coll, err = ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
			MapReplacements: map[string]*ebpf.Map{SockfileMapHckSockfiles: m},
		})
		if err != nil {
			m.Close()
			return nil, nil, explainLoad(what, dir, 0, err)
		}
		prog = coll.DetachProgram(name)
		coll.Close()
		if err := prog.Pin(path); err != nil {
			prog.Close()
			if !errors.Is(err, os.ErrExist) { // or another hck-bpf pinned it first
				m.Close()
				return nil, nil, fmt.Errorf("pin %s: %w", path, err)
			}
			prog, err = ebpf.LoadPinnedProgram(path, nil)
		} else {
			removeOtherBuilds(dir, prefix, digest)
		}
	}
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open %s %s: %w", what, path, err)
	}
	// A program pinned with another map (its map's pin replaced since)
	// would fill a map nobody reads.
	if err := usesMap(prog, m); err != nil {
		prog.Close()
		m.Close()
		return nil, nil, fmt.Errorf("open %s %s: %w (run 'hck-bpf unload --pin-dir' on its pin dir)", what, path, err)
	}
	return prog, m, nil
}

// usesMap checks that prog uses m.
func usesMap(prog *ebpf.Program, m *ebpf.Map) error {
	pi, err := prog.Info()
	if err != nil {
		return fmt.Errorf("read program info: %w", err)
	}
	mi, err := m.Info()
	if err != nil {
		return fmt.Errorf("read map info: %w", err)
	}
	ids, _ := pi.MapIDs()
	want, _ := mi.ID()
	if !slices.Contains(ids, want) {
		return fmt.Errorf("the pinned program does not use the pinned map %s", SockfileMapHckSockfiles)
	}
	return nil
}

// OpenSockets returns the sockets iterator (iter/tcp) pinned in pinDir for
// this build, loading (with the kernel's CONFIG_HZ, 0 if unknown),
// attaching and pinning it when there is none.
func OpenSockets(pinDir string, hz uint32) (*link.Iter, error) {
	return pinnedIter(pinDir, SocketsIterPin, SocketsDigest, func() (*ebpf.Program, io.Closer, error) {
		spec, err := LoadSockets()
		if err != nil {
			return nil, nil, fmt.Errorf("load sockets spec: %w", err)
		}
		if err := spec.Variables["hck_hz"].Set(hz); err != nil {
			return nil, nil, fmt.Errorf("set hck_hz: %w", err)
		}
		var objs SocketsObjects
		if err := spec.LoadAndAssign(&objs, nil); err != nil {
			return nil, nil, explainLoad("sockets iterator", pinDir, 0, err)
		}
		return objs.HckSockets, &objs, nil
	})
}

// pinnedIter returns the iterator pinned as prefix+digest in pinDir,
// loading, attaching and pinning it with load when there is none. Pins of
// other builds of the same iterator are removed (processes using them keep
// their handles).
func pinnedIter(pinDir, prefix, digest string, load func() (*ebpf.Program, io.Closer, error)) (*link.Iter, error) {
	path := filepath.Join(pinDir, prefix+digest)
	if it, err := loadPinnedIter(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return it, err
	}
	prog, objs, err := load()
	if err != nil {
		return nil, err
	}
	defer objs.Close() // the link holds the program
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return nil, fmt.Errorf("attach iterator %s: %w", prefix+digest, err)
	}
	if err := it.Pin(path); err != nil {
		it.Close()
		if errors.Is(err, os.ErrExist) { // another hck-bpf pinned it first
			return loadPinnedIter(path)
		}
		return nil, fmt.Errorf("pin iterator %s: %w", path, err)
	}
	removeOtherBuilds(pinDir, prefix, digest)
	return it, nil
}

func loadPinnedIter(path string) (*link.Iter, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return nil, err
	}
	it, ok := l.(*link.Iter)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("%s is pinned but is not an iterator link (%T)", path, l)
	}
	return it, nil
}

// removeOtherBuilds removes the pins of other builds of an iterator: only
// pinned objects (regular files on bpffs), never a directory or a symlink.
func removeOtherBuilds(dir, prefix, digest string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, prefix) || n == prefix+digest || !IsPinName(n) {
			continue
		}
		if st, err := os.Lstat(filepath.Join(dir, n)); err == nil && st.Mode().IsRegular() {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}
