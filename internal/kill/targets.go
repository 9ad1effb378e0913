package kill

import (
	"fmt"

	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/scope"
)

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

// Targets are the namespaces of a scope (its own, --netns's, or every
// one), each with a handle of its own, named as the scope names it; one
// gone since the scope was made is left out. The caller closes them
// (Close).
func Targets(sc *scope.Scope) []Target {
	own, _ := netns.CurrentInode()
	var out []Target
	for _, ino := range sc.Inodes() {
		ns, err := sc.Dup(ino)
		if err != nil {
			continue
		}
		out = append(out, Target{NS: ns, Name: sc.Name(ino), Own: ino == own})
	}
	return out
}

// Close closes the targets' namespace handles.
func Close(targets []Target) {
	for _, t := range targets {
		t.NS.Close()
	}
}
