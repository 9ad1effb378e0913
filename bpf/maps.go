package bpf

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// BatchEach calls fn for every entry of m, len(keys) entries per system
// call, with one call per entry on kernels without batch map operations
// (< 5.6). keys and vals are the batch; k and v are only valid during fn.
func BatchEach[K, V any](m *ebpf.Map, keys []K, vals []V, fn func(k *K, v *V)) error {
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil // the walk is complete
		case errors.Is(err, ebpf.ErrNotSupported):
			var k K
			var v V
			it := m.Iterate()
			for it.Next(&k, &v) {
				fn(&k, &v)
			}
			return it.Err()
		case err != nil:
			return err
		}
	}
}

// ReadIter runs an iterator once and returns everything it wrote; what
// names it in errors.
func ReadIter(it *link.Iter, what string) ([]byte, error) {
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
