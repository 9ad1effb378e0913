// Package kernel says what the running kernel and this process can do for
// hck-bpf: the kernel version rules (which sockets SOCK_DESTROY can be
// trusted with), the process's capabilities, the kernel's BTF and its
// CONFIG_HZ. The commands apply it at runtime (scan, run), the doctor
// reports it.
package kernel

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Version is a kernel's major.minor.patch, from its release string.
type Version struct {
	Major, Minor, Patch int
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// Capabilities are what SOCK_DESTROY can be trusted with on a kernel. A
// sweep reports, and does not destroy, the sockets its kernel cannot.
type Capabilities struct {
	// DestroyTimewait: SOCK_DESTROY removes timewait sockets (TIME_WAIT,
	// and FIN_WAIT2 kept as a timewait socket after close). Linux 6.0+
	// (af9784d007d8).
	DestroyTimewait bool `json:"destroy_timewait"`
	// DestroyOrphans: SOCK_DESTROY reliably kills orphaned full sockets
	// (no process holds them: FIN_WAIT1, CLOSING, LAST_ACK after close).
	// Before 6.11 tcp_abort() can leave an orphan alive, fixed by
	// "tcp: fix forever orphan socket caused by tcp_abort" (bac76cf89816).
	DestroyOrphans bool `json:"destroy_orphans"`
}

// Destroys reports whether SOCK_DESTROY can be trusted with a socket: a
// timewait one, or else a full socket that a process holds (owned) or not.
func (c Capabilities) Destroys(timewait, owned bool) bool {
	if timewait {
		return c.DestroyTimewait
	}
	return owned || c.DestroyOrphans
}

// Rules are the kernel version rules applied to one kernel.
type Rules struct {
	Release string `json:"release"` // as uname reports it
	Version
	Capabilities
}

// The first kernels with each capability.
var (
	TimewaitSince = Version{Major: 6, Minor: 0}
	OrphansSince  = Version{Major: 6, Minor: 11}
)

// maxRelease bounds the release strings RulesFor looks at; uname's is at
// most 64 bytes.
const maxRelease = 256

// RulesFor parses a kernel release as uname(2) gives it ("6.18.44-fc-v669",
// "5.15.0-91-generic", "6.1.0-13-amd64", "6.11-rc1") and applies the version
// rules to it. Only the leading major.minor[.patch] counts; whatever
// follows it (distribution suffixes, -rc, +) is ignored.
func RulesFor(release string) (Rules, error) {
	v, err := parseRelease(release)
	if err != nil {
		return Rules{}, err
	}
	return Rules{
		Release: release,
		Version: v,
		Capabilities: Capabilities{
			DestroyTimewait: v.AtLeast(TimewaitSince.Major, TimewaitSince.Minor),
			DestroyOrphans:  v.AtLeast(OrphansSince.Major, OrphansSince.Minor),
		},
	}, nil
}

// Running applies the version rules to the running kernel.
func Running() (Rules, error) {
	rel, err := Release()
	if err != nil {
		return Rules{}, err
	}
	return RulesFor(rel)
}

// Release is the running kernel's release string (uname -r).
func Release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

var errNoVersion = errors.New("want major.minor[.patch] at the start")

func parseRelease(release string) (Version, error) {
	if len(release) > maxRelease {
		return Version{}, fmt.Errorf("parse kernel release %q...: longer than %d bytes", release[:32], maxRelease)
	}
	var v Version
	rest := release
	var err error
	if v.Major, rest, err = number(rest); err != nil {
		return Version{}, fmt.Errorf("parse kernel release %q: major: %w", release, err)
	}
	if len(rest) == 0 || rest[0] != '.' {
		return Version{}, fmt.Errorf("parse kernel release %q: %w", release, errNoVersion)
	}
	if v.Minor, rest, err = number(rest[1:]); err != nil {
		return Version{}, fmt.Errorf("parse kernel release %q: minor: %w", release, err)
	}
	// The patch level is optional ("6.11-rc1"); a dot followed by anything
	// but digits is a suffix.
	if len(rest) > 1 && rest[0] == '.' && isDigit(rest[1]) {
		if v.Patch, _, err = number(rest[1:]); err != nil {
			return Version{}, fmt.Errorf("parse kernel release %q: patch: %w", release, err)
		}
	}
	return v, nil
}

// number reads the decimal number at the start of s.
func number(s string) (int, string, error) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return 0, s, errNoVersion
	}
	if i > 6 {
		return 0, s, errors.New("number longer than 6 digits")
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil {
		return 0, s, fmt.Errorf("number %s: %w", s[:i], err)
	}
	return n, s[i:], nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Warning is the one line a sweep prints on a kernel that cannot destroy
// every closing state; empty when it can.
func (r Rules) Warning() string {
	switch {
	case !r.DestroyTimewait:
		return fmt.Sprintf("kernel %s is older than %d.%d: TIME_WAIT and orphaned sockets are reported, not destroyed "+
			"(destroying TIME_WAIT needs %d.%d, orphans %d.%d)", r.Version, TimewaitSince.Major, TimewaitSince.Minor,
			TimewaitSince.Major, TimewaitSince.Minor, OrphansSince.Major, OrphansSince.Minor)
	case !r.DestroyOrphans:
		return fmt.Sprintf("kernel %s is older than %d.%d: orphaned sockets (no process holds them) are reported, not destroyed "+
			"(tcp_abort can leave them alive before %d.%d)", r.Version, OrphansSince.Major, OrphansSince.Minor,
			OrphansSince.Major, OrphansSince.Minor)
	}
	return ""
}

// Summary is one line on what this kernel destroys, state by state: the
// sockets a process holds; timewait sockets (TIME_WAIT, and FIN_WAIT2
// after close) from 6.0; orphans from 6.11 (before, reported only).
func (r Rules) Summary() string {
	tw := fmt.Sprintf("TIME_WAIT destroyed (≥%d.%d)", TimewaitSince.Major, TimewaitSince.Minor)
	if !r.DestroyTimewait {
		tw = fmt.Sprintf("TIME_WAIT and FIN_WAIT2 timewait sockets reported, not destroyed (destroying them needs %d.%d)",
			TimewaitSince.Major, TimewaitSince.Minor)
	}
	orphans := fmt.Sprintf("orphans destroyed (≥%d.%d)", OrphansSince.Major, OrphansSince.Minor)
	if !r.DestroyOrphans {
		orphans = fmt.Sprintf("orphaned sockets (no process holds them) reported, not destroyed (tcp_abort can leave them alive before %d.%d)",
			OrphansSince.Major, OrphansSince.Minor)
	}
	return fmt.Sprintf("kernel %s, per state: sockets a process holds destroyed; %s; %s", r.Version, tw, orphans)
}
