package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode"
)

// ParseCgroupGlobs parses --exclude-cgroups / --include-cgroups values in
// the forms ParseNames takes (repeated flags, the Python and Bash forms,
// commas, quotes for a glob holding a space or a comma), with the same
// rules for blank and separator-only values. A glob is a path.Match
// pattern for a whole cgroup path, so it starts with '/':
// /system.slice/docker-*.scope, /kubepods.slice. A trailing '/' is
// dropped. The result is sorted and without duplicates.
func ParseCgroupGlobs(values []string) ([]string, error) {
	var globs []string
	for _, v := range values {
		items, err := splitNames(v)
		if err != nil {
			return nil, fmt.Errorf("invalid cgroup list %q: %w", v, err)
		}
		if len(items) == 0 && !blank(v) {
			return nil, fmt.Errorf("invalid cgroup list %q: no globs in it", v)
		}
		for _, it := range items {
			g := trimGlob(it)
			if err := checkGlob(g); err != nil {
				return nil, err
			}
			globs = append(globs, g)
		}
	}
	slices.Sort(globs)
	return slices.Compact(globs), nil
}

// trimGlob drops trailing slashes ("/kubepods.slice/" is the group
// "/kubepods.slice"), keeping "/" itself.
func trimGlob(g string) string {
	for len(g) > 1 && strings.HasSuffix(g, "/") {
		g = g[:len(g)-1]
	}
	return g
}

// checkGlob holds the rules every cgroup glob obeys, however it arrived.
func checkGlob(g string) error {
	switch {
	case g == "":
		return fmt.Errorf("invalid cgroup glob %q: empty", g)
	case !strings.HasPrefix(g, "/"):
		return fmt.Errorf("invalid cgroup glob %q: want a pattern for the whole path, from its leading / (/system.slice/docker-*.scope)", g)
	case strings.ContainsFunc(g, unicode.IsControl):
		return fmt.Errorf("invalid cgroup glob %q: contains a control character", g)
	}
	if _, err := path.Match(g, "/"); err != nil {
		return fmt.Errorf("invalid cgroup glob %q: %w", g, err)
	}
	return nil
}

// CgroupMatches reports whether glob (path.Match, '*' stops at '/')
// matches the cgroup path cg or one of its ancestors: "/kubepods.slice"
// matches every process of every pod, "/system.slice/docker-*.scope" the
// processes of Docker's containers and of the groups below them.
func CgroupMatches(glob, cg string) bool {
	if cg == "" {
		return false
	}
	for p := cg; ; {
		if ok, _ := path.Match(glob, p); ok {
			return true
		}
		i := strings.LastIndexByte(p, '/')
		switch {
		case p == "/" || i < 0:
			return false
		case i == 0:
			p = "/"
		default:
			p = p[:i]
		}
	}
}

// cgroupMatchedBy returns the glob of globs that matches cg, if any.
func cgroupMatchedBy(globs []string, cg string) (string, bool) {
	for _, g := range globs {
		if CgroupMatches(g, cg) {
			return g, true
		}
	}
	return "", false
}
