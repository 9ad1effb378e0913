package cgroup

import (
	"os"
	"strings"
	"testing"
)

const (
	id  = "4b6c1b1b2b5e3f0e1f7c3d2a9e8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
	uid = "0f3c7b2e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
)

func TestParse(t *testing.T) {
	us := strings.ReplaceAll(uid, "-", "_")
	for _, tt := range []struct {
		path    string
		id, pod string
	}{
		{"/kubepods/burstable/pod" + uid + "/" + id, id, uid},
		{"/kubepods/pod" + uid + "/" + id, id, uid},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us + ".slice/cri-containerd-" + id + ".scope", id, uid},
		{"/kubepods.slice/kubepods-pod" + us + ".slice/crio-" + id + ".scope", id, uid},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us + ".slice/docker-" + id + ".scope", id, uid},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us + ".slice", "", uid},
		{"/system.slice/docker-" + id + ".scope", id, ""},
		{"/docker/" + id, id, ""},
		{"/machine.slice/libpod-" + id + ".scope", id, ""},
		{"/machine.slice/libpod-conmon-" + id + ".scope", id, ""},
		{"/", "", ""},
		{"/user.slice/user-0.slice/session-3.scope", "", ""},
		{"/init.scope", "", ""},
		{"/process_api/ebf9822de26025f750095e23ad73b625", "", ""}, // 32 hex: not a container id
		{"/docker/" + id[:63], "", ""},
		{"/docker/" + strings.ToUpper(id), "", ""},
		{"/kubepods/podnot-a-uid/" + id, id, ""},
		{"/podcast/" + uid, "", ""},
	} {
		in := Parse(tt.path)
		if in.ContainerID != tt.id || in.PodUID != tt.pod || in.Path != tt.path {
			t.Errorf("Parse(%q) = %+v, want id %q pod %q", tt.path, in, tt.id, tt.pod)
		}
	}
}

func TestParseFile(t *testing.T) {
	pod := "/kubepods/burstable/pod" + uid + "/" + id
	for _, tt := range []struct {
		name, file string
		want       Info
	}{
		{"v2", "0::" + pod + "\n", Info{Path: pod, ContainerID: id, PodUID: uid}},
		{"v1", "12:memory:" + pod + "\n11:cpu,cpuacct:" + pod + "\n", Info{Path: pod, ContainerID: id, PodUID: uid}},
		{"hybrid, the container only in v1", "9:name=systemd:/\n4:memory:" + pod + "\n0::/\n", Info{Path: pod, ContainerID: id, PodUID: uid}},
		{"hybrid, nothing", "9:name=systemd:/\n4:memory:/process_api/x\n0::/\n", Info{Path: "/"}},
		{"v1, nothing", "4:memory:/user.slice\n3:cpu:/\n", Info{Path: "/user.slice"}},
		{"empty", "", Info{}},
		{"garbage", "no colons here\n::\n", Info{}},
	} {
		if got := ParseFile([]byte(tt.file)); got != tt.want {
			t.Errorf("%s: ParseFile = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestOfPID(t *testing.T) {
	in, err := OfPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if in.Path == "" {
		t.Errorf("own cgroup: %+v, want a path", in)
	}
	if _, err := OfPID(-1); err == nil {
		t.Error("OfPID(-1): no error")
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add([]byte("0::/kubepods/burstable/pod" + uid + "/" + id + "\n"))
	f.Add([]byte("4:memory:/docker/" + id + "\n0::/\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := ParseFile(b)
		if in.ContainerID != "" && (len(in.ContainerID) != 64 || !isHex(in.ContainerID)) {
			t.Fatalf("container id %q", in.ContainerID)
		}
		if in.PodUID != "" && !isUID(in.PodUID) {
			t.Fatalf("pod uid %q", in.PodUID)
		}
	})
}
