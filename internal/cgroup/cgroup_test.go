package cgroup

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

const (
	id1 = "4f1d2c3b4a5968778695a4b3c2d1e0f000112233445566778899aabbccddeeff"
	id2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	uid = "8e4b2f3a-1c5d-4e6f-9a0b-1c2d3e4f5a6b"
)

func TestParse(t *testing.T) {
	uidU := strings.ReplaceAll(uid, "-", "_")
	for _, tc := range []struct {
		name, file string
		want       Info
	}{
		{"v2 docker systemd", "0::/system.slice/docker-" + id1 + ".scope\n",
			Info{Path: "/system.slice/docker-" + id1 + ".scope", ContainerID: id1}},
		{"v2 plain service", "0::/system.slice/nginx.service\n", Info{Path: "/system.slice/nginx.service"}},
		{"v1 docker cgroupfs", "12:pids:/docker/" + id1 + "\n11:memory:/docker/" + id1 + "\n1:name=systemd:/docker/" + id1 + "\n",
			Info{Path: "/docker/" + id1, ContainerID: id1}},
		{"cri-containerd in a burstable pod (systemd)",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + id1 + ".scope\n",
			Info{Path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + id1 + ".scope",
				ContainerID: id1, PodUID: uid}},
		{"crio in a guaranteed pod (systemd)", "0::/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-" + id1 + ".scope\n",
			Info{Path: "/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-" + id1 + ".scope", ContainerID: id1, PodUID: uid}},
		{"crio's monitor is not the container", "0::/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-conmon-" + id1 + ".scope\n",
			Info{Path: "/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-conmon-" + id1 + ".scope", PodUID: uid}},
		{"kubepods cgroupfs besteffort", "0::/kubepods/besteffort/pod" + uid + "/" + id1 + "\n",
			Info{Path: "/kubepods/besteffort/pod" + uid + "/" + id1, ContainerID: id1, PodUID: uid}},
		{"kubepods cgroupfs guaranteed", "0::/kubepods/pod" + uid + "/" + id1 + "\n",
			Info{Path: "/kubepods/pod" + uid + "/" + id1, ContainerID: id1, PodUID: uid}},
		{"static pod uid (config hash)", "0::/kubepods/burstable/pod0123456789abcdef0123456789abcdef/" + id1 + "\n",
			Info{Path: "/kubepods/burstable/pod0123456789abcdef0123456789abcdef/" + id1, ContainerID: id1,
				PodUID: "0123456789abcdef0123456789abcdef"}},
		{"podman systemd, nested cgroupns", "0::/machine.slice/libpod-" + id1 + ".scope/container\n",
			Info{Path: "/machine.slice/libpod-" + id1 + ".scope/container", ContainerID: id1}},
		{"podman's monitor", "0::/machine.slice/libpod-conmon-" + id1 + ".scope\n",
			Info{Path: "/machine.slice/libpod-conmon-" + id1 + ".scope"}},
		{"podman cgroupfs", "0::/libpod_parent/libpod-" + id1 + "\n", Info{Path: "/libpod_parent/libpod-" + id1, ContainerID: id1}},
		{"docker in docker: the deepest", "0::/docker/" + id1 + "/docker/" + id2 + "\n",
			Info{Path: "/docker/" + id1 + "/docker/" + id2, ContainerID: id2}},
		{"hybrid: v2 at the root, name=systemd deeper",
			"9:name=systemd:/system.slice/docker-" + id1 + ".scope\n4:memory:/system.slice/docker-" + id1 + ".scope\n0::/\n",
			Info{Path: "/system.slice/docker-" + id1 + ".scope", ContainerID: id1}},
		{"hybrid: only a v1 controller deeper (this sandbox's shape)",
			"9:name=systemd:/\n8:pids:/\n4:memory:/process_api/dbcbe3ce2a40fcc6cbc53fddaac5e6ac\n0::/\n",
			Info{Path: "/process_api/dbcbe3ce2a40fcc6cbc53fddaac5e6ac"}},
		{"hybrid: the id in v1 only", "4:memory:/docker/" + id1 + "\n0::/user.slice\n",
			Info{Path: "/user.slice", ContainerID: id1}},
		{"everything at the root", "9:name=systemd:/\n0::/\n", Info{Path: "/"}},
		{"removed v2 group", "0::/system.slice/gone.service (deleted)\n", Info{Path: "/system.slice/gone.service"}},
		{"colon in the path", "0::/a:b/c\n", Info{Path: "/a:b/c"}},
		{"uppercase hex is not an id", "0::/docker/" + strings.ToUpper(id1) + "\n", Info{Path: "/docker/" + strings.ToUpper(id1)}},
		{"63 hex digits are not an id", "0::/docker/" + id1[1:] + "\n", Info{Path: "/docker/" + id1[1:]}},
		{"pod without a uid", "0::/kubepods.slice/kubepods-podnotauid.slice\n", Info{Path: "/kubepods.slice/kubepods-podnotauid.slice"}},
		{"session scope", "0::/user.slice/user-0.slice/session-3.scope\n", Info{Path: "/user.slice/user-0.slice/session-3.scope"}},
		{"garbage lines around", "junk\n\n0::relative\n0::/ok\n", Info{Path: "/ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.file))
			if err != nil || got != tc.want {
				t.Errorf("Parse(%q) =\n %+v, %v\nwant\n %+v", tc.file, got, err, tc.want)
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, f := range []string{"", "\n", "garbage", "0::relative\n"} {
		if got, err := Parse([]byte(f)); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", f, got)
		}
	}
}

// TestReadSelf reads this process's real /proc/self/cgroup: the path is
// one the file names, for each line kind this machine has.
func TestReadSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	info, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.Path, "/") || !strings.Contains(string(b), ":"+info.Path+"\n") {
		t.Errorf("Read(self).Path = %q, not a path of:\n%s", info.Path, b)
	}
	t.Logf("this process: %+v (from %q)", info, b)
	if _, err := Read(1 << 30); err == nil {
		t.Error("Read of a pid that cannot exist: no error")
	}
}

// TestReadMoved: a process moved into a cgroup of the test's own reads
// as being there.
func TestReadMoved(t *testing.T) {
	cg := testnet.NewCgroup(t)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	cg.Add(t, cmd.Process.Pid)
	info, err := Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != cg.Path || info.ContainerID != "" || info.PodUID != "" {
		t.Errorf("moved process: %+v, want path %s and no container or pod", info, cg.Path)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"0::/system.slice/docker-" + id1 + ".scope\n",
		"0::/kubepods/besteffort/pod" + uid + "/" + id1 + "\n",
		"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/crio-" + id2 + ".scope",
		"9:name=systemd:/\n4:memory:/docker/" + id1 + "\n0::/\n",
		"0::/a:b (deleted)", "::", "0::", "1:x:/", "\x00:\x00:/\x00", "0::/pod/-pod.slice/.scope",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Parse(b)
		if err != nil {
			if info != (Info{}) {
				t.Fatalf("error %v with a result %+v", err, info)
			}
			return
		}
		if !strings.HasPrefix(info.Path, "/") || !strings.Contains(string(b), info.Path) {
			t.Fatalf("path %q is not an absolute path of the input %q", info.Path, b)
		}
		if info.ContainerID != "" && (!isHex(info.ContainerID, 64) || !strings.Contains(string(b), info.ContainerID)) {
			t.Fatalf("container id %q: not 64 hex digits of the input", info.ContainerID)
		}
		if info.PodUID != "" {
			if !isUID(info.PodUID) {
				t.Fatalf("pod uid %q is not a uid", info.PodUID)
			}
			if !strings.Contains(string(b), info.PodUID) && !strings.Contains(string(b), strings.ReplaceAll(info.PodUID, "-", "_")) {
				t.Fatalf("pod uid %q is not in the input", info.PodUID)
			}
		}
		// What ParsePath finds in the chosen path, Parse found too.
		if c, p := ParsePath(info.Path); c != "" && c != info.ContainerID || p != "" && p != info.PodUID {
			t.Fatalf("ParsePath(%q) = %q, %q; Parse gave %q, %q", info.Path, c, p, info.ContainerID, info.PodUID)
		}
	})
}
