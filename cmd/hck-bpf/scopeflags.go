package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/netns"
	"github.com/hck-bpf/hck-bpf/internal/report"
	"github.com/hck-bpf/hck-bpf/internal/scope"
)

// scopeFlags choose the network namespaces a command works on: the one it
// runs in (the default), the ones --netns names, or every one
// (--all-netns).
type scopeFlags struct {
	all   bool
	netns []string
	// netnsFrom, allFrom: where the value came from when a config file
	// set it ("file:line: netns"), for its errors; "" for the flags.
	netnsFrom, allFrom string
}

func (f *scopeFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.all, "all-netns", false, "every network namespace of the host (containers, pods), found again while the service runs")
	fs.StringArrayVar(&f.netns, "netns", nil, "this network namespace instead of the one hck-bpf runs in: an ip netns (or Docker, CNI) name, a path such as /proc/PID/ns/net, or a pid; repeatable")
}

// open checks the flags and opens the namespaces they name: bad input
// (both flags, a namespace that cannot be opened) is a usage error, found
// before anything is loaded.
func (f *scopeFlags) open() (*scope.Scope, error) {
	switch {
	case f.all && len(f.netns) > 0:
		return nil, usagef("--all-netns and --netns: choose one")
	case f.all:
		s, err := scope.All()
		if err != nil {
			return nil, usagef("%s: %v", or(f.allFrom, "--all-netns"), err)
		}
		return s, nil
	case len(f.netns) > 0:
		s, err := scope.Resolve(f.netns)
		if err != nil {
			return nil, usagef("%s: %v", or(f.netnsFrom, "--netns"), err)
		}
		return s, nil
	}
	return scope.Own()
}

// several reports whether a scope may hold more than one namespace: then
// the scripts' lines name each socket's.
func several(s *scope.Scope) bool { return s.All() || s.Len() > 1 }

// scopeText says which namespaces a scope holds, for the start line.
func scopeText(s *scope.Scope) string {
	ns := s.Inodes()
	switch {
	case s.All():
		return fmt.Sprintf("every network namespace: %d now", len(ns))
	case len(ns) == 1:
		return "network namespace " + report.NetNS(ns[0], s.Name(ns[0]))
	}
	return fmt.Sprintf("%d network namespaces", len(ns))
}

// openScope checks --pin-dir, opens the namespaces the scope flags name
// and checks this process can enter them: what list, kill and top do
// before anything is loaded. The caller closes the scope.
func (g *globals) openScope(f *scopeFlags) (*scope.Scope, error) {
	if err := g.checkPinDir(); err != nil {
		return nil, err
	}
	sc, err := f.open()
	if err != nil {
		return nil, err
	}
	if err := canEnter(sc); err != nil {
		sc.Close()
		return nil, err
	}
	return sc, nil
}

// canEnter fails when the scope holds a namespace other than the calling
// thread's and this process cannot enter it (kernel.CanEnter).
func canEnter(s *scope.Scope) error {
	here, err := netns.CurrentInode()
	if err != nil {
		return err
	}
	for _, ns := range s.Inodes() {
		if ns != here {
			if err := kernel.CanEnter(); err != nil {
				return fmt.Errorf("refuse to work on network namespace %s: %w", report.NetNS(ns, s.Name(ns)), err)
			}
			return nil
		}
	}
	return nil
}

// or is a unless it is empty, else b.
func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
