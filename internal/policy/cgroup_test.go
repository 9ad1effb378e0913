package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

func inCgroup(pid int, comm, cg string) connOpt {
	return func(c *conn.Conn) { c.Owner = &conn.Owner{PID: pid, Comm: comm, Cgroup: cg} }
}

func TestCgroupMatches(t *testing.T) {
	for _, tc := range []struct {
		glob, cg string
		want     bool
	}{
		{"/system.slice/docker-*.scope", "/system.slice/docker-abc.scope", true},
		{"/system.slice/docker-*.scope", "/system.slice/docker-abc.scope/init", true}, // a group below
		{"/system.slice/docker-*.scope", "/system.slice/nginx.service", false},
		{"/kubepods.slice", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice/crio-y.scope", true},
		{"/kubepods", "/kubepods.slice/x", false}, // a whole segment, not a prefix
		{"/*", "/user.slice/user-0.slice", true},
		{"/", "/anything/at/all", true},
		{"/", "/", true},
		{"/user.slice/*", "/user.slice", false},
		{"/a/b", "/a", false},
		{"/a", "", false}, // unknown: matches nothing
		{"/x?y", "/xzy/q", true},
		{"/[a-c]", "/b", true},
	} {
		if got := CgroupMatches(tc.glob, tc.cg); got != tc.want {
			t.Errorf("CgroupMatches(%q, %q) = %v, want %v", tc.glob, tc.cg, got, tc.want)
		}
	}
}

func TestParseCgroupGlobs(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"/kubepods.slice"}, []string{"/kubepods.slice"}},
		{[]string{"/b /a", "/a,/c/"}, []string{"/a", "/b", "/c"}},
		{[]string{"'/my group/x' /y"}, []string{"/my group/x", "/y"}},
		{[]string{""}, nil},
		{[]string{"/"}, []string{"/"}},
	} {
		got, err := ParseCgroupGlobs(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCgroupGlobs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"docker-*.scope", `invalid cgroup glob "docker-*.scope": want a pattern for the whole path, from its leading /`},
		{"/a/[", `invalid cgroup glob "/a/[": syntax error in pattern`},
		{",", `invalid cgroup list ",": no globs in it`},
		{"'/a", `invalid cgroup list "'/a": a ' quote is not closed`},
		{"/a\x01", `contains a control character`},
	} {
		_, err := ParseCgroupGlobs([]string{tc.in})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseCgroupGlobs(%q): %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func TestDecideCgroups(t *testing.T) {
	const hung = 10 * time.Minute
	with := func(exclude, include []string, procs ...string) Policy {
		p := Default()
		p.ExcludeCgroups, p.IncludeCgroups, p.ExcludeProcesses = exclude, include, procs
		return p
	}
	docker := "/system.slice/docker-1.scope"
	for _, tc := range []struct {
		name   string
		p      Policy
		c      *conn.Conn
		action Action
		skip   SkipReason
		detail string
	}{
		{"excluded cgroup", with([]string{"/system.slice/docker-*.scope"}, nil), mk(conn.CloseWait, hung, inCgroup(5, "app", docker)),
			Skip, SkipExcludedCgroup, "process app (pid 5) is in cgroup /system.slice/docker-1.scope, excluded by /system.slice/docker-*.scope"},
		{"other cgroup", with([]string{"/system.slice/docker-*.scope"}, nil), mk(conn.CloseWait, hung, inCgroup(5, "app", "/user.slice")),
			Destroy, NotSkipped, ""},
		{"excluded: no owner is not excluded", with([]string{"/*"}, nil), mk(conn.LastAck, hung), Destroy, NotSkipped, ""},
		{"excluded: unknown cgroup is kept", with([]string{"/x"}, nil), mk(conn.CloseWait, hung, inCgroup(5, "app", "")),
			Skip, SkipExcludedCgroup, "process app (pid 5): cgroup unknown, kept: --exclude-cgroups cannot be checked"},
		{"included cgroup", with(nil, []string{"/system.slice"}), mk(conn.CloseWait, hung, inCgroup(5, "app", docker)), Destroy, NotSkipped, ""},
		{"not included", with(nil, []string{"/kubepods.slice"}), mk(conn.CloseWait, hung, inCgroup(5, "app", docker)),
			Skip, SkipNotIncludedCgroup, "process app (pid 5) is in cgroup /system.slice/docker-1.scope, which no --include-cgroups glob matches"},
		{"included: no owner is not included", with(nil, []string{"/*"}), mk(conn.TimeWait, hung),
			Skip, SkipNotIncludedCgroup, "no known process holds it: --include-cgroups destroys only sockets whose owner's cgroup matches"},
		{"included: unknown cgroup is not included", with(nil, []string{"/*"}), mk(conn.CloseWait, hung, inCgroup(5, "app", "")),
			Skip, SkipNotIncludedCgroup, "process app (pid 5): cgroup unknown, so not in --include-cgroups"},
		{"exclude beats include", with([]string{docker}, []string{"/system.slice"}), mk(conn.CloseWait, hung, inCgroup(5, "app", docker)),
			Skip, SkipExcludedCgroup, "process app (pid 5) is in cgroup /system.slice/docker-1.scope, excluded by /system.slice/docker-1.scope"},
		{"protected wins over include", with(nil, []string{"/"}), mk(conn.CloseWait, hung, inCgroup(1, "systemd", "/init.scope")),
			Skip, SkipProtectedProcess, "process systemd (pid 1) is protected"},
		{"excluded process before cgroup", with([]string{"/"}, nil, "app"), mk(conn.CloseWait, hung, inCgroup(5, "app", "/a")),
			Skip, SkipExcludedProcess, "process app (pid 5) is excluded"},
		{"port before cgroup", with(nil, []string{"/"}), mk(conn.CloseWait, hung, ports(22, 1), inCgroup(5, "app", "/a")),
			Skip, SkipExcludedPort, "local port 22 is excluded"},
		{"no cgroup rules, unknown cgroup", with(nil, nil), mk(conn.CloseWait, hung, inCgroup(5, "app", "")), Destroy, NotSkipped, ""},
	} {
		v := tc.p.Decide(tc.c, now)
		if v.Action != tc.action || v.Skip != tc.skip || v.SkipDetail != tc.detail {
			t.Errorf("%s: %v %v %q, want %v %v %q", tc.name, v.Action, v.Skip, v.SkipDetail, tc.action, tc.skip, tc.detail)
		}
	}
}

func TestCgroupWarningsAndValidate(t *testing.T) {
	p := Default()
	p.ExcludeCgroups, p.IncludeCgroups = []string{"/a"}, []string{"/a", "/b"}
	if w := p.Warnings(); len(w) != 1 || !strings.Contains(w[0], "cgroup glob /a is both included and excluded") {
		t.Errorf("warnings %q", w)
	}
	p.IncludeCgroups = []string{"relative"}
	if err := p.Validate(); err == nil {
		t.Error("Validate took a relative cgroup glob")
	}
}

func FuzzParseCgroupGlobs(f *testing.F) {
	for _, s := range [][3]string{
		{"/kubepods.slice", "", "/kubepods.slice/x"}, {"/a /b", "/c,/d/", "/d/e"}, {"'/my group' /x", "", "/my group/y"},
		{"rel", "", "/"}, {"/a/[", "", "/a"}, {",", "", ""}, {"/*", "/[!a]*", "/b/c"}, {"/\\", "", "/"}, {"//", "/a//b", "/a/b"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, a, b, cg string) {
		in := []string{a, b}
		globs, err := ParseCgroupGlobs(in)
		if err != nil {
			checkErrLine(t, err)
			if !strings.HasPrefix(err.Error(), "invalid cgroup ") {
				t.Fatalf("error %q does not say what is invalid", err)
			}
			return
		}
		for i, g := range globs {
			if !strings.HasPrefix(g, "/") || checkGlob(g) != nil || (len(g) > 1 && strings.HasSuffix(g, "/")) {
				t.Fatalf("ParseCgroupGlobs(%q) = %q: bad glob %q", in, globs, g)
			}
			if i > 0 && globs[i-1] >= g {
				t.Fatalf("ParseCgroupGlobs(%q) = %q: not sorted or not unique", in, globs)
			}
			// A group matched is matched with every group below it.
			if strings.HasPrefix(cg, "/") && CgroupMatches(g, cg) && !CgroupMatches(g, strings.TrimSuffix(cg, "/")+"/below") {
				t.Fatalf("%q matches %q but not a group below it", g, cg)
			}
		}
		p := Default()
		p.ExcludeCgroups = globs
		if err := p.Validate(); err != nil {
			t.Fatalf("ParseCgroupGlobs(%q) = %q, but Validate: %v", in, globs, err)
		}
		if len(globs) > 0 {
			back, err := ParseCgroupGlobs([]string{FormatNames(globs)})
			if err != nil || !slices.Equal(back, globs) {
				t.Fatalf("round trip of %q: %q, %v", globs, back, err)
			}
		}
	})
}
