// Package cgroup says which control group a process is in, from
// /proc/PID/cgroup, and what the group's path tells of it: the id of the
// container it runs in and the uid of its Kubernetes pod, where the
// container runtime put them in the path.
//
// The path forms it knows (systemd and cgroupfs drivers):
//
//	/system.slice/docker-<id>.scope                      Docker (systemd)
//	/docker/<id>                                         Docker (cgroupfs)
//	/system.slice/containerd.service/... cri-containerd-<id>.scope   containerd (CRI)
//	.../crio-<id>.scope, .../crio-<id>                   CRI-O
//	/machine.slice/libpod-<id>.scope[/container]         podman (systemd)
//	/libpod_parent/libpod-<id>                           podman (cgroupfs)
//	/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
//	/kubepods/besteffort/pod<uid>/<id>, /kubepods/pod<uid>/<id>
//
// A container id is 64 lowercase hex digits; the monitors the runtimes
// start beside a container (crio-conmon-<id>.scope, libpod-conmon-<id>.scope)
// are not the container and carry no id. A pod uid is a UUID (systemd
// slices write its dashes as underscores; it is given back with dashes) or
// the 32 hex digits of a static pod's config hash.
//
// The package is self-contained: it reads one file and parses text.
package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Info is what a process's cgroup says of it.
type Info struct {
	// Path is the process's cgroup: the unified (v2) hierarchy's path, or
	// where that is the root while a v1 hierarchy shows a deeper one
	// (hybrid hosts), the v1 name=systemd hierarchy's, else the first
	// v1 hierarchy's in the file's order. Paths are relative to the
	// reader's cgroup namespace. Empty when unknown.
	Path string
	// ContainerID is the 64-hex-digit id of the container the process
	// runs in, when a path shows one (the deepest, for nested ones).
	ContainerID string
	// PodUID is the uid of the Kubernetes pod, when a path shows one.
	PodUID string
}

// maxFile bounds what Read takes of /proc/PID/cgroup: a few hundred bytes
// in practice (one line per hierarchy).
const maxFile = 64 << 10

// Read reads the cgroup of process pid from /proc/PID/cgroup.
func Read(pid int) (Info, error) {
	return ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
}

// ReadFile reads a /proc/PID/cgroup file at path.
func ReadFile(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, fmt.Errorf("read cgroup: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile))
	if err != nil {
		return Info{}, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	info, err := Parse(b)
	if err != nil {
		return Info{}, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	return info, nil
}

// ErrEmpty: the file names no hierarchy.
var ErrEmpty = errors.New("no cgroup line")

// line is one line of /proc/PID/cgroup: "ID:controllers:path".
type line struct {
	v2          bool // "0::path", the unified hierarchy
	controllers string
	path        string
}

// Parse reads the text of a /proc/PID/cgroup file. Lines it cannot read
// are skipped; a file with no readable line is an error.
func Parse(b []byte) (Info, error) {
	var lines []line
	for raw := range bytes.SplitSeq(b, []byte{'\n'}) {
		// The path may hold ':' itself: split at the first two only.
		parts := strings.SplitN(string(raw), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		p := strings.TrimSuffix(parts[2], " (deleted)") // a removed v2 cgroup
		lines = append(lines, line{v2: parts[0] == "0" && parts[1] == "", controllers: parts[1], path: p})
	}
	if len(lines) == 0 {
		return Info{}, ErrEmpty
	}
	info := Info{Path: pick(lines)}
	// The chosen path first, then the others: on a hybrid host the
	// runtime may have put the container in the v1 hierarchies only.
	paths := append([]string{info.Path}, pathsOf(lines)...)
	for _, p := range paths {
		if info.ContainerID == "" {
			info.ContainerID = containerID(p)
		}
		if info.PodUID == "" {
			info.PodUID = podUID(p)
		}
	}
	return info, nil
}

func pathsOf(lines []line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.path
	}
	return out
}

// pick chooses the path Info.Path documents.
func pick(lines []line) string {
	var v2, systemd, first string
	for _, l := range lines {
		switch {
		case l.v2:
			if v2 == "" {
				v2 = l.path
			}
		case l.controllers == "name=systemd":
			if systemd == "" {
				systemd = l.path
			}
		case first == "" && l.path != "/":
			first = l.path
		}
	}
	for _, p := range []string{v2, systemd, first} {
		if p != "" && p != "/" {
			return p
		}
	}
	for _, p := range []string{v2, systemd} {
		if p != "" {
			return p
		}
	}
	return lines[0].path
}

// ParsePath says what one cgroup path shows: a container id and a pod uid,
// each empty when the path shows none.
func ParsePath(p string) (container, pod string) {
	return containerID(p), podUID(p)
}

// containerID is the id of the deepest container p shows.
func containerID(p string) string {
	segs := strings.Split(p, "/")
	for i := len(segs) - 1; i >= 0; i-- {
		if id := idOf(segs[i]); id != "" {
			return id
		}
	}
	return ""
}

// idOf reads one path segment as a container's: "<id>", "<id>.scope", or
// "<runtime>-<id>[.scope]" (docker-, cri-containerd-, crio-, libpod-, ...),
// but not a runtime's monitor ("crio-conmon-<id>.scope").
func idOf(seg string) string {
	s := strings.TrimSuffix(seg, ".scope")
	prefix := ""
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		prefix, s = s[:i], s[i+1:]
	}
	if !isHex(s, 64) || strings.HasSuffix(prefix, "conmon") {
		return ""
	}
	return s
}

// podUID is the uid of the pod p shows: a segment "pod<uid>" (cgroupfs) or
// "...-pod<uid>.slice" (systemd, "_" for "-").
func podUID(p string) string {
	for seg := range strings.SplitSeq(p, "/") {
		var uid string
		switch {
		case strings.HasSuffix(seg, ".slice"):
			s := strings.TrimSuffix(seg, ".slice")
			i := strings.LastIndex(s, "-pod")
			if i < 0 {
				continue
			}
			uid = strings.ReplaceAll(s[i+len("-pod"):], "_", "-")
		case strings.HasPrefix(seg, "pod"):
			uid = seg[len("pod"):]
		default:
			continue
		}
		if isUID(uid) {
			return uid
		}
	}
	return ""
}

// isUID: a UUID in its 8-4-4-4-12 form, or 32 hex digits (a static pod's
// uid is the hash of its manifest), lowercase.
func isUID(s string) bool {
	if isHex(s, 32) {
		return true
	}
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
