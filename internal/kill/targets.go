package kill

import (
	"fmt"

	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// SpecError: a --netns value names no namespace that can be opened.
type SpecError struct {
	Spec string
	Err  error
}

func (e *SpecError) Error() string { return fmt.Sprintf("--netns %s: %v", e.Spec, e.Err) }
func (e *SpecError) Unwrap() error { return e.Err }

// Target is a network namespace a kill acts in.
type Target struct {
	NS *netns.NS
	// Name says which namespace it is: the --netns value, the bind
	// mount's name Discover found, or "" for hck-bpf's own namespace.
	Name string
	// Own: hck-bpf runs in it.
	Own bool
	// named: output names the namespace (Run sets it: a kill of more
	// than one namespace, or of another than its own).
	named bool
}

// Label names the target in messages: its inode, and its name in
// parentheses when it has one.
func (t *Target) Label() string {
	if t.Name != "" {
		return fmt.Sprintf("%d (%s)", t.NS.Inode(), t.Name)
	}
	return fmt.Sprint(t.NS.Inode())
}

// Targets opens the namespaces a command acts in: with neither specs nor
// all, the one hck-bpf runs in; specs (--netns NAME|PATH|PID, see
// netns.Resolve); all (--all-netns) adds every namespace netns.Discover
// finds. Each namespace comes once, whatever names it. A spec that names
// no namespace is an error; a discovered namespace that is gone by the
// time it is opened is left out. A spec that names nothing is a
// *SpecError. The caller closes the targets (Close).
func Targets(specs []string, all bool) (_ []Target, err error) {
	own, err := netns.CurrentInode()
	if err != nil {
		return nil, err
	}
	var out []Target
	defer func() {
		if err != nil {
			Close(out)
			out = nil
		}
	}()
	seen := map[uint32]bool{}
	add := func(ns *netns.NS, name string) {
		if seen[ns.Inode()] {
			ns.Close()
			return
		}
		seen[ns.Inode()] = true
		out = append(out, Target{NS: ns, Name: name, Own: ns.Inode() == own})
	}
	if len(specs) == 0 && !all {
		ns, err := netns.Current()
		if err != nil {
			return nil, err
		}
		add(ns, "")
		return out, nil
	}
	for _, s := range specs {
		ns, err := netns.Resolve(s)
		if err != nil {
			return out, &SpecError{s, err}
		}
		add(ns, s)
	}
	if all {
		for _, f := range netns.Discover() {
			if seen[f.Inode] {
				continue
			}
			ns, err := netns.FromPath(f.Path)
			if err != nil || ns.Inode() != f.Inode {
				ns.Close() // gone (or replaced) since Discover
				continue
			}
			name := f.Name
			if f.Inode == own {
				name = ""
			}
			add(ns, name)
		}
	}
	return out, nil
}

// Close closes the targets' namespace handles.
func Close(targets []Target) {
	for _, t := range targets {
		t.NS.Close()
	}
}
