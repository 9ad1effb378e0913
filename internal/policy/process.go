package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// CommLen is the longest process name the kernel keeps (TASK_COMM_LEN - 1):
// comm is truncated to 15 bytes.
const CommLen = 15

// ProtectedProcesses are never touched, whatever the flags say: the scripts'
// safe list. A process is protected when its comm is one of these names or
// starts with one followed by '-': OpenSSH ≥ 9.8 serves each login from
// "sshd-session", k3s runs as "k3s-server"/"k3s-agent", containerd's shims
// show as "containerd-shim", systemd's services as "systemd-resolve" and so
// on. Treat it as read-only.
var ProtectedProcesses = []string{
	"sshd",
	"systemd",
	"init",
	"kthreadd", // kernel threads
	"containerd",
	"dockerd",
	"kubelet",
	"k3s",
}

// CommMatches reports whether the process name name, as a user gave it,
// names a process whose comm is comm. Names compare exactly (bytes, case
// sensitive), except that the kernel truncates comm to CommLen bytes: a name
// longer than that matches a comm equal to its first CommLen bytes, so
// "kube-controller-manager" matches comm "kube-controller". Trailing NUL
// bytes in comm (a raw kernel buffer) are ignored. An empty comm (owner
// unknown) matches nothing.
func CommMatches(name, comm string) bool {
	comm = strings.TrimRight(comm, "\x00")
	if comm == "" || name == "" {
		return false
	}
	if comm == name {
		return true
	}
	return len(name) > CommLen && len(comm) == CommLen && name[:CommLen] == comm
}

// describeComm says which comm a name longer than CommLen matches: its
// first CommLen bytes, which the kernel cuts without regard for UTF-8. The
// words never cut a character: "comm \"kube-controller\"", or, when byte
// CommLen falls inside one, "comm \"abcdefghijklmn\" and 1 of the 2 bytes
// of \"é\"".
func describeComm(name string) string {
	if !utf8.ValidString(name) {
		return fmt.Sprintf("comm %q", name[:CommLen])
	}
	cut := CommLen
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	if cut == CommLen {
		return fmt.Sprintf("comm %q", name[:cut])
	}
	r, size := utf8.DecodeRuneInString(name[cut:])
	return fmt.Sprintf("comm %q and %d of the %d bytes of %q", name[:cut], CommLen-cut, size, r)
}

// ProtectedBy returns the protected name (ProtectedProcesses) that covers
// a process named comm, if any: the rule every command refuses by.
func ProtectedBy(comm string) (string, bool) { return protectedBy(comm) }

// protectedBy returns the protected name that covers comm, if any.
func protectedBy(comm string) (string, bool) {
	comm = strings.TrimRight(comm, "\x00")
	for _, p := range ProtectedProcesses {
		if CommMatches(p, comm) || strings.HasPrefix(comm, p+"-") {
			return p, true
		}
	}
	return "", false
}

// excludedBy returns the name in names that matches comm, if any.
func excludedBy(names []string, comm string) (string, bool) {
	for _, n := range names {
		if CommMatches(n, comm) {
			return n, true
		}
	}
	return "", false
}
