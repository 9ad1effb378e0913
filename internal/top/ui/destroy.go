package ui

import (
	"fmt"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/destroy"
	"github.com/hck-bpf/hck-bpf/internal/scope"
)

// Destroyer is top's K: it destroys exactly c, as `kill` does — an exact
// sock_diag lookup by tuple and cookie in c's namespace, then SOCK_DESTROY
// only if the kernel has the socket in c.State — and says what became of
// it in one line. A socket in another state now, or gone, is left alone.
func Destroyer(sc *scope.Scope) func(c conn.Conn) string {
	return func(c conn.Conn) string {
		what := fmt.Sprintf("%s %s -> %s (cookie %d)", c.State, c.Local, c.Remote, c.Cookie)
		ns, err := sc.Dup(c.NetNS)
		if err != nil {
			return fmt.Sprintf("not destroyed %s: %v", what, err)
		}
		defer ns.Close()
		d, err := destroy.NewAt(ns)
		if err != nil {
			return fmt.Sprintf("not destroyed %s: %v", what, err)
		}
		defer d.Close()
		r := d.DestroyOne(&c)
		switch r.Outcome {
		case destroy.Destroyed:
			return "destroyed " + what
		case destroy.Gone:
			return "gone already, nothing done: " + what
		case destroy.Changed:
			return fmt.Sprintf("left alone: %s is in %s now", what, r.State)
		}
		return fmt.Sprintf("destroy %s failed: %v", what, r.Err)
	}
}
