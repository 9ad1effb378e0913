package tracking

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// The iterator programs are pinned as attached iterator links, one per
// compiled object (the name carries its digest, see ownersIterPin): any
// later hck-bpf built from the same object reads them without loading
// anything, and reading a pinned iterator runs it in the reader's own
// namespaces.

// pinnedIter returns the iterator pinned as prefix+digest in the pin dir,
// loading, attaching and pinning it with load when there is none. Pins of
// other builds of the same iterator are removed (processes using them keep
// their handles).
func (t *Tracker) pinnedIter(prefix, digest string, load func() (*ebpf.Program, io.Closer, error)) (*link.Iter, error) {
	path := filepath.Join(t.pinDir, prefix+digest)
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
	removeOtherBuilds(t.pinDir, prefix, digest)
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

func removeOtherBuilds(dir, prefix, digest string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, prefix) || n == prefix+digest || !IsPinName(n) {
			continue
		}
		if what, err := pinKind(filepath.Join(dir, n)); err == nil && what == "" {
			_ = os.Remove(filepath.Join(dir, n)) // a pinned object, not a directory or a symlink
		}
	}
}

// readIter runs an iterator once and returns everything it wrote.
func readIter(it *link.Iter, what string) ([]byte, error) {
	r, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return raw, nil
}
