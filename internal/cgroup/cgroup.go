// Package cgroup reads what a process's cgroup path says about where it
// runs: the container id a runtime put in it, and the Kubernetes pod uid
// the kubelet put in it. Nothing else: no runtime or API server is asked.
package cgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Info is what one process's cgroup tells.
type Info struct {
	// Path is the process's cgroup: the unified (v2) hierarchy's path,
	// else the first v1 path that names a container or a pod, else the
	// first v1 path.
	Path string
	// ContainerID is the 64-hex id a container runtime (Docker,
	// containerd, CRI-O, podman) put in the path; "" when none.
	ContainerID string
	// PodUID is the Kubernetes pod uid the kubelet put in the path, with
	// dashes (the systemd driver writes underscores); "" when none.
	PodUID string
}

// OfPID reads /proc/PID/cgroup.
func OfPID(pid int) (Info, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return Info{}, fmt.Errorf("read cgroup of pid %d: %w", pid, err)
	}
	return ParseFile(b), nil
}

// ParseFile reads the contents of a /proc/PID/cgroup file: lines of
// "hierarchy-id:controllers:path".
func ParseFile(b []byte) Info {
	var unified, first, named Info
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		in := Parse(parts[2])
		switch {
		case parts[0] == "0" && parts[1] == "":
			unified = in
		case first.Path == "":
			first = in
		}
		if named.Path == "" && (in.ContainerID != "" || in.PodUID != "") {
			named = in
		}
	}
	switch {
	case unified.ContainerID != "" || unified.PodUID != "":
		return unified
	case named.Path != "":
		return named
	case unified.Path != "":
		return unified
	}
	return first
}

// Parse reads one cgroup path. The runtimes and drivers it knows:
//
//	/kubepods/burstable/pod<uid>/<id>                              kubelet, cgroupfs driver
//	/kubepods.slice/kubepods-burstable.slice/
//	    kubepods-burstable-pod<uid_with_underscores>.slice/
//	    cri-containerd-<id>.scope (crio-<id>.scope, docker-<id>.scope) kubelet, systemd driver
//	/system.slice/docker-<id>.scope, /docker/<id>                  Docker
//	/machine.slice/libpod-<id>.scope                               podman
//
// The container id is the last 64-hex run found in a path element; the
// pod uid is the element after "pod" in a kubepods element.
func Parse(path string) Info {
	in := Info{Path: path}
	for _, el := range strings.Split(path, "/") {
		if id := containerID(el); id != "" {
			in.ContainerID = id
		}
		if uid := podUID(el); uid != "" {
			in.PodUID = uid
		}
	}
	return in
}

// containerID is the 64-hex run in el that is delimited by its start or a
// '-', and its end or a '.' ("docker-<id>.scope", "<id>"); "" when none.
func containerID(el string) string {
	el = strings.TrimSuffix(el, ".scope")
	if i := strings.LastIndexByte(el, '-'); i >= 0 {
		el = el[i+1:]
	}
	if len(el) != 64 || !isHex(el) {
		return ""
	}
	return el
}

// podUID is the pod uid in a kubepods element: "pod<uid>" (cgroupfs) or
// "kubepods-<qos>-pod<uid>.slice" / "kubepods-pod<uid>.slice" (systemd,
// underscores for dashes); "" when el is not one.
func podUID(el string) string {
	var rest string
	switch {
	case strings.HasPrefix(el, "kubepods") && strings.HasSuffix(el, ".slice"):
		i := strings.LastIndex(el, "-pod")
		if i < 0 {
			return ""
		}
		rest = strings.ReplaceAll(strings.TrimSuffix(el[i+len("-pod"):], ".slice"), "_", "-")
	case strings.HasPrefix(el, "pod"):
		rest = el[len("pod"):]
	default:
		return ""
	}
	if !isUID(rest) {
		return ""
	}
	return rest
}

// isUID matches a UUID's text form, 8-4-4-4-12 hex digits.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexByte(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isHexByte(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
