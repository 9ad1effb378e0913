package main

import (
	"encoding/json"
	"maps"
	"path"
	"strconv"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/cgroup"
	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/kernel"
	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

// lineOf is the JSON line about cookie whose action is action.
func lineOf(t *testing.T, lines []map[string]any, action string, cookie uint64) map[string]any {
	t.Helper()
	for _, m := range lines {
		if m["action"] == action && m["cookie"] == json.Number(strconv.FormatUint(cookie, 10)) {
			return m
		}
	}
	t.Fatalf("no %q line for socket %d in:\n%v", action, cookie, lines)
	return nil
}

// TestOwnerCgroups: a socket's owner carries its cgroup (list --json, the
// scan's JSON lines); --exclude-cgroups keeps the sockets of processes in a
// matching cgroup, --include-cgroups destroys only those, never a socket
// without a known owner, and never a protected process's.
func TestOwnerCgroups(t *testing.T) {
	h := newE2E(t)
	h.attach()
	inside, _ := h.ns.CloseWait(t, "tcp4")
	outside, _ := h.ns.CloseWait(t, "tcp6")
	guard, _ := h.ns.CloseWait(t, "tcp4")
	orphan, _ := h.ns.LastAckOrphan(t, "tcp4")
	cg := testnet.NewCgroup(t)
	cg.Add(t, holdIn(t, "cgholder", inside))
	cg.Add(t, holdIn(t, "sshd", guard)) // protected, wherever it runs
	outPID := holdIn(t, "outsider", outside)
	outCg, err := cgroup.Read(outPID)
	if err != nil || outCg.Path == "" || outCg.Path == cg.Path {
		t.Fatalf("outsider's cgroup %+v, %v: want one, not %s", outCg, err, cg.Path)
	}
	time.Sleep(1200 * time.Millisecond)

	// list --json names each owner's cgroup.
	var entries []map[string]any
	r := h.mustRun(0, "list", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range entries {
		switch e["cookie"] {
		case float64(inside.Cookie):
			found++
			if e["process"] != "cgholder" || e["cgroup"] != cg.Path {
				t.Errorf("list: inside socket %v, want process cgholder in cgroup %s", e, cg.Path)
			}
		case float64(outside.Cookie):
			found++
			if e["process"] != "outsider" || e["cgroup"] != outCg.Path {
				t.Errorf("list: outside socket %v, want process outsider in cgroup %s", e, outCg.Path)
			}
		}
	}
	if found != 2 {
		t.Errorf("list --json lists %d of the two held sockets:\n%s", found, r.stdout)
	}

	base := []string{"--close-wait-timeout", "1", "--last-ack-timeout", "1", "--fin-wait-timeout", "1h", "--log-format", "json", "-v"}
	run := func(code int, args ...string) []map[string]any {
		t.Helper()
		return jsonLines(t, h.mustRun(code, append(args, base...)...).stdout)
	}
	// The scan's lines carry it too; a glob on the parent's level matches.
	glob := path.Join(path.Dir(cg.Path), "hcktest-*")
	dry := run(0, "--dry-run", "--exclude-cgroups", glob)
	if m := lineOf(t, dry, "would_destroy", outside.Cookie); m["cgroup"] != outCg.Path {
		t.Errorf("would_destroy line of the outsider: cgroup %v, want %s", m["cgroup"], outCg.Path)
	}
	if m := lineOf(t, dry, "skip", inside.Cookie); m["skip"] != "excluded cgroup" || m["cgroup"] != cg.Path {
		t.Errorf("inside socket with --exclude-cgroups %s: %v, want skipped as excluded cgroup", glob, m)
	}
	// The orphan: no owner, never excluded by cgroup; destroyed where the
	// kernel destroys orphans reliably (6.11+), reported before.
	rules, err := kernel.Running()
	if err != nil {
		t.Fatal(err)
	}
	orphanAction := "would_destroy"
	if !rules.DestroyOrphans {
		orphanAction = "unsupported"
	}
	lineOf(t, dry, orphanAction, orphan.Cookie)
	if m := lineOf(t, dry, "skip", guard.Cookie); m["skip"] != "protected process" {
		t.Errorf("sshd's socket: %v, want protected", m)
	}

	// --include-cgroups: only the socket of the process inside dies.
	live := run(0, "--live", "--include-cgroups", cg.Path)
	if got := cookiesWith(t, live, "destroyed"); !maps.Equal(got, map[uint64]bool{inside.Cookie: true}) {
		t.Errorf("--include-cgroups %s destroyed %v, want only %d", cg.Path, sorted(got), inside.Cookie)
	}
	for _, c := range []uint64{outside.Cookie, orphan.Cookie} {
		if m := lineOf(t, live, "skip", c); m["skip"] != "not in included cgroups" {
			t.Errorf("socket %d: %v, want skipped as not in included cgroups", c, m)
		}
	}
	if m := lineOf(t, live, "skip", guard.Cookie); m["skip"] != "protected process" {
		t.Errorf("sshd in an included cgroup: %v, want protected all the same", m)
	}
	h.ns.Await(t, inside.Gone(), outside.In(conn.CloseWait), guard.In(conn.CloseWait), orphan.In(conn.LastAck))

	// --exclude-cgroups, the Bash form with another glob: the rest dies,
	// but the protected process's socket.
	live = run(0, "--live", "--exclude-cgroups", "/nothing/here "+cg.Path)
	want := map[uint64]bool{outside.Cookie: true, orphan.Cookie: true}
	orphanAfter := orphan.Gone()
	if !rules.DestroyOrphans {
		delete(want, orphan.Cookie)
		lineOf(t, live, "unsupported", orphan.Cookie)
		orphanAfter = orphan.In(conn.LastAck)
	}
	if got := cookiesWith(t, live, "destroyed"); !maps.Equal(got, want) {
		t.Errorf("--exclude-cgroups destroyed %v, want %v", sorted(got), sorted(want))
	}
	if m := lineOf(t, live, "skip", guard.Cookie); m["skip"] != "protected process" {
		t.Errorf("sshd in an excluded cgroup: %v, want protected (the first reason)", m)
	}
	h.ns.Await(t, outside.Gone(), orphanAfter, guard.In(conn.CloseWait))
}
