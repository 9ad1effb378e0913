package procs

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/cgroup"
	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// child starts argv as a child of the test, killed and reaped at the end;
// exited reports (once it is reaped) how it ended.
type child struct {
	cmd    *exec.Cmd
	done   chan struct{}
	status syscall.WaitStatus
}

func start(t *testing.T, argv ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = c.cmd.Wait()
		c.status = c.cmd.ProcessState.Sys().(syscall.WaitStatus)
		close(c.done)
	}()
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); <-c.done })
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// owner is c as a sweep would have read it: pid and comm.
func (c *child) owner(t *testing.T) conn.Owner {
	t.Helper()
	for range 100 { // until the exec is done: comm is the new program's
		b, err := os.ReadFile("/proc/" + itoa(c.pid()) + "/comm")
		if err == nil && strings.TrimSpace(string(b)) == "sleep" {
			return conn.Owner{PID: c.pid(), Comm: "sleep"}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("child %d never became sleep", c.pid())
	return conn.Owner{}
}

// ended waits for c to be reaped and returns the signal that ended it.
func (c *child) ended(t *testing.T) syscall.Signal {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("child %d still running", c.pid())
	}
	if !c.status.Signaled() {
		t.Fatalf("child %d exited with %v, not by a signal", c.pid(), c.status)
	}
	return c.status.Signal()
}

func itoa(n int) string { return strconv.Itoa(n) }

func hold(t *testing.T, o conn.Owner) *Process {
	t.Helper()
	p, err := Hold(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Release)
	return p
}

// TestTerminate: processes that honour SIGTERM exit on it, all signalled
// at once and waited for together (Terminate returns as soon as they
// exit, long before the grace period ends); one that ignores SIGTERM is
// sent SIGKILL after the grace period.
func TestTerminate(t *testing.T) {
	var polite []*child
	var ps []*Process
	for range 3 {
		c := start(t, "sleep", "60")
		polite = append(polite, c)
		ps = append(ps, hold(t, c.owner(t)))
	}
	if got := ps[0].Owner(); got.Cgroup == "" {
		t.Errorf("held process without its cgroup: %+v", got)
	} else if self, _ := cgroup.Read(os.Getpid()); got.Cgroup != self.Path {
		t.Errorf("child's cgroup %q, want the test's %q", got.Cgroup, self.Path)
	}
	for i, r := range Terminate(ps, time.Hour) {
		if r.Outcome != Terminated || r.Err != nil {
			t.Errorf("polite %d: %v %v, want terminated", i, r.Outcome, r.Err)
		}
		if sig := polite[i].ended(t); sig != syscall.SIGTERM {
			t.Errorf("polite %d ended by %v, want SIGTERM", i, sig)
		}
	}

	// The ignored disposition survives exec: a sleep deaf to SIGTERM.
	stubborn := start(t, "sh", "-c", `trap "" TERM; exec sleep 60`)
	res := Terminate([]*Process{hold(t, stubborn.owner(t))}, 200*time.Millisecond)
	if res[0].Outcome != Killed || res[0].Err != nil {
		t.Errorf("stubborn: %v %v, want killed", res[0].Outcome, res[0].Err)
	}
	if sig := stubborn.ended(t); sig != syscall.SIGKILL {
		t.Errorf("stubborn ended by %v, want SIGKILL", sig)
	}
}

// TestHoldRefuses: hck-bpf itself, pid 1, a process whose comm is not the
// one seen, and one that has exited are never held.
func TestHoldRefuses(t *testing.T) {
	c := start(t, "sleep", "60")
	o := c.owner(t)
	for _, tc := range []struct {
		name string
		o    conn.Owner
		want error
	}{
		{"itself", conn.Owner{PID: os.Getpid(), Comm: "procs.test"}, ErrSelf},
		{"pid 1", conn.Owner{PID: 1, Comm: "init"}, ErrInit},
		{"pid 0", conn.Owner{PID: 0}, ErrInit},
		{"no such pid", conn.Owner{PID: 1 << 30, Comm: "x"}, ErrGone},
	} {
		if p, err := Hold(tc.o); !errors.Is(err, tc.want) {
			t.Errorf("%s: Hold = %v, %v; want %v", tc.name, p, err, tc.want)
		}
	}
	var ce *CommError
	if _, err := Hold(conn.Owner{PID: o.PID, Comm: "nginx"}); !errors.As(err, &ce) || ce.Has != "sleep" {
		t.Errorf("another comm: %v, want a CommError naming sleep", err)
	}
	_ = c.cmd.Process.Kill()
	c.ended(t)
	if _, err := Hold(o); !errors.Is(err, ErrGone) {
		t.Errorf("exited and reaped: %v, want %v", err, ErrGone)
	}
}

// TestHeldThenGone: a process held, then exited and reaped before the
// signal, is reported gone: the pidfd names that process only, never
// whatever may take its pid.
func TestHeldThenGone(t *testing.T) {
	c := start(t, "sleep", "60")
	p := hold(t, c.owner(t))
	_ = c.cmd.Process.Kill()
	c.ended(t)
	if res := Terminate([]*Process{p}, time.Second); res[0].Outcome != Gone {
		t.Errorf("%v %v, want gone", res[0].Outcome, res[0].Err)
	}
	p.Release()
	if res := Terminate([]*Process{p}, time.Second); res[0].Outcome != Failed || res[0].Err == nil {
		t.Errorf("released: %v %v, want failed", res[0].Outcome, res[0].Err)
	}
}
