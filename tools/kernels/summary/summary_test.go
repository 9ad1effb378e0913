package main

import (
	"bytes"
	"strings"
	"testing"
)

// testdata holds a guest's results as boot.sh leaves them: x is a real
// go test binary's output (a pass, a skip, a test whose subtests fail and
// pass), y timed out, z exited 1 with no failed test, w never ran.
func TestSummary(t *testing.T) {
	runs, err := load("testdata")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if print(&out, "6.1.0-57-amd64", "tcg, 190s", runs) {
		t.Error("print reported success for a run with failures")
	}
	got := out.String()
	t.Log("\n" + got)
	for _, want := range []string{
		"== kernel 6.1.0-57-amd64 (tcg, 190s)\n",
		// x: TestA passes, TestB skips, TestC counts as its two subtests.
		"\nx                                  2       1       1\n",
		"\ny                                  0       1       0\n",
		"\nz                                  0       0       0\n",
		"\ntotal                              2       2       1\n",
		"  x TestC/sub1: x_test.go:5: bad thing: 3\n",
		"  y TestSlow: never finished: panic: test timed out after 10m0s\n",
		"  z: exit 1 with no failed test: PASS\n",
		"  w: no result (the guest stopped before it ran)\n",
		"skipped (1), by reason:\n  needs kfunc bpf_sock_destroy (6.5)\n      x TestB\n",
		"\n6.1.0-57-amd64: 2 passed, 2 failed, 1 skipped\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
}

// A run where everything passed or skipped is a success.
func TestSummaryAllPassed(t *testing.T) {
	runs := []Run{{Package: "github.com/hck-bpf/hck-bpf/internal/a", Exit: 0, Tests: []*Test{
		{Name: "TestA", Outcome: "pass"},
		{Name: "TestB", Outcome: "skip", Output: []string{"a_test.go:9: needs root"}},
	}}}
	var out bytes.Buffer
	if !print(&out, "k", "", runs) {
		t.Errorf("print reported a failure:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "internal/a                         1       0       1\n") {
		t.Errorf("no per-package line:\n%s", out.String())
	}
}

// A failure names the test's last located line (its t.Fatal) and the
// command's error line it quoted, not the t.Log lines before them.
func TestFailureMessage(t *testing.T) {
	tt := &Test{Name: "TestList", Outcome: "fail", Output: []string{
		"e2e_test.go:679: hck-bpf list --map-size 4: exit 0",
		"e2e_test.go:686: exit 1, want 0",
		"stdout:",
		"stderr:",
		`hck-bpf: load owners iterator: kfunc "bpf_iter_num_new": not supported`,
	}}
	want := `e2e_test.go:686: exit 1, want 0 — hck-bpf: load owners iterator: kfunc "bpf_iter_num_new": not supported`
	if got := failure(tt); got != want {
		t.Errorf("failure:\n got %s\nwant %s", got, want)
	}
}
