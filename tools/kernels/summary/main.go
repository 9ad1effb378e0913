// Command summary prints what one kernel of the matrix (make test-kernels)
// made of the test suite: per package and in total, tests passed, failed
// and skipped, then every failure with its first message and every skip
// with its reason, so that a new skip shows. It exits 1 when a test
// failed or a package's binary did not finish cleanly.
//
// It reads the directory boot.sh shared with the guest: the list of test
// binaries (tests: NAME IMPORTPATH DIR per line) and, for each,
// results/NAME.json (the guest's -test.v=test2json output converted by
// go tool test2json) and results/NAME.exit (the binary's exit code).
//
//	go run ./tools/kernels/summary -kernel 6.1.0-57-amd64 -note "tcg, 190s" DIR
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func main() {
	kernel := flag.String("kernel", "", "the kernel's name, for the heading and the closing line")
	note := flag.String("note", "", "added to the heading: accelerator, time")
	flag.Parse()
	if flag.NArg() != 1 || *kernel == "" {
		fmt.Fprintln(os.Stderr, "usage: summary -kernel NAME [-note TEXT] DIR")
		os.Exit(2)
	}
	runs, err := load(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "summary: %v\n", err)
		os.Exit(2)
	}
	if !print(os.Stdout, *kernel, *note, runs) {
		os.Exit(1)
	}
}

// Event is one line of go test -json (cmd/test2json's TestEvent).
type Event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// Test is one test's outcome: "pass", "fail", "skip", or "" when it never
// finished (its binary panicked or timed out).
type Test struct {
	Name    string
	Outcome string
	Output  []string // its lines, without the === / --- framing
}

// Run is one package's test binary.
type Run struct {
	Package string
	Exit    int      // the binary's exit code; -1 unknown
	Tests   []*Test  // leaves only: a test with subtests counts as its subtests
	Tail    []string // the package's own last output lines (a panic, a timeout)
}

// load reads DIR/tests and each binary's results.
func load(dir string) ([]Run, error) {
	f, err := os.Open(filepath.Join(dir, "tests"))
	if err != nil {
		return nil, fmt.Errorf("read the list of tests: %w", err)
	}
	defer f.Close()
	var runs []Run
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		name, pkg := fields[0], fields[1]
		r := Run{Package: pkg, Exit: -1}
		if b, err := os.ReadFile(filepath.Join(dir, "results", name+".exit")); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				r.Exit = n
			}
		}
		jf, err := os.Open(filepath.Join(dir, "results", name+".json"))
		if err == nil {
			r.Tests, r.Tail, err = parse(jf)
			jf.Close()
			if err != nil {
				return nil, fmt.Errorf("read %s's results: %w", pkg, err)
			}
		}
		runs = append(runs, r)
	}
	return runs, sc.Err()
}

// parse reads one binary's go test -json stream.
func parse(r io.Reader) (leaves []*Test, tail []string, err error) {
	byName := map[string]*Test{}
	var order []string
	dec := json.NewDecoder(r)
	for {
		var e Event
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			return nil, nil, err
		}
		if e.Test == "" {
			if e.Action == "output" {
				tail = append(tail, strings.TrimRight(e.Output, "\n"))
				if len(tail) > 10 {
					tail = tail[1:]
				}
			}
			continue
		}
		t := byName[e.Test]
		if t == nil {
			t = &Test{Name: e.Test}
			byName[e.Test] = t
			order = append(order, e.Test)
		}
		switch e.Action {
		case "pass", "fail", "skip":
			t.Outcome = e.Action
		case "output":
			line := strings.TrimRight(e.Output, "\n")
			s := strings.TrimSpace(line)
			if s != "" && !strings.HasPrefix(s, "=== ") && !strings.HasPrefix(s, "--- ") {
				t.Output = append(t.Output, s)
			}
		}
	}
	for _, name := range order {
		parent := false
		for _, other := range order {
			if strings.HasPrefix(other, name+"/") {
				parent = true
				break
			}
		}
		if !parent {
			leaves = append(leaves, byName[name])
		}
	}
	return leaves, tail, nil
}

// location is the "file_test.go:123: " that t.Log and t.Skip put first.
var location = regexp.MustCompile(`^[\w.-]+\.go:\d+: `)

// reason is a skip's message: its output lines, without their locations.
func reason(t *Test) string {
	var parts []string
	for _, l := range t.Output {
		parts = append(parts, location.ReplaceAllString(l, ""))
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return clip(strings.Join(parts, " | "), 200)
}

// failure is a failure's message: the test's last located line (t.Fatal's,
// or the last t.Error's; t.Log's lines come before them as a rule) and, when
// another line names an error (a command's stderr quoted by the test: a
// line with "error", or hck-bpf's own "hck-bpf: ..." error line), the first
// such line too.
func failure(t *Test) string {
	if len(t.Output) == 0 {
		return "(no message)"
	}
	last := t.Output[len(t.Output)-1]
	for i := len(t.Output) - 1; i >= 0; i-- {
		if location.MatchString(t.Output[i]) {
			last = t.Output[i]
			break
		}
	}
	msg := clip(last, 240)
	for _, l := range t.Output {
		if l != last && (strings.Contains(strings.ToLower(l), "error") || strings.HasPrefix(l, "hck-bpf: ")) {
			msg += " — " + clip(l, 240)
			break
		}
	}
	return msg
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// short is a package's path without the module's.
func short(pkg string) string {
	return strings.TrimPrefix(pkg, "github.com/hck-bpf/hck-bpf/")
}

// print writes the summary and reports whether everything passed (or was
// skipped).
func print(w io.Writer, kernel, note string, runs []Run) bool {
	head := "kernel " + kernel
	if note != "" {
		head += " (" + note + ")"
	}
	fmt.Fprintf(w, "== %s\n", head)
	fmt.Fprintf(w, "%-28s %7s %7s %7s\n", "package", "passed", "failed", "skipped")
	var pass, fail, skip int
	var failures, broken []string
	skips := map[string][]string{} // reason -> tests
	ok := true
	for _, r := range runs {
		var p, f, s int
		for _, t := range r.Tests {
			id := short(r.Package) + " " + t.Name
			switch t.Outcome {
			case "pass":
				p++
			case "skip":
				s++
				rs := reason(t)
				skips[rs] = append(skips[rs], id)
			case "fail":
				f++
				failures = append(failures, id+": "+failure(t))
			default:
				f++
				why := "the binary panicked or timed out"
				if len(r.Tail) > 0 {
					why = strings.Join(r.Tail, " | ")
				}
				failures = append(failures, id+": never finished: "+clip(why, 240))
			}
		}
		switch {
		case r.Exit == -1:
			broken = append(broken, short(r.Package)+": no result (the guest stopped before it ran)")
		case r.Exit != 0 && f == 0:
			broken = append(broken, fmt.Sprintf("%s: exit %d with no failed test: %s", short(r.Package), r.Exit, strings.Join(r.Tail, " | ")))
		}
		fmt.Fprintf(w, "%-28s %7d %7d %7d\n", short(r.Package), p, f, s)
		pass, fail, skip = pass+p, fail+f, skip+s
	}
	fmt.Fprintf(w, "%-28s %7d %7d %7d\n", "total", pass, fail, skip)
	if len(failures) > 0 {
		ok = false
		fmt.Fprintf(w, "failed (%d):\n", len(failures))
		for _, l := range failures {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if len(broken) > 0 {
		ok = false
		fmt.Fprintf(w, "packages that did not finish cleanly (%d):\n", len(broken))
		for _, l := range broken {
			fmt.Fprintf(w, "  %s\n", clip(l, 400))
		}
	}
	if len(skips) > 0 {
		fmt.Fprintf(w, "skipped (%d), by reason:\n", skip)
		reasons := make([]string, 0, len(skips))
		for rs := range skips {
			reasons = append(reasons, rs)
		}
		sort.Strings(reasons)
		for _, rs := range reasons {
			fmt.Fprintf(w, "  %s\n", rs)
			for _, id := range skips[rs] {
				fmt.Fprintf(w, "      %s\n", id)
			}
		}
	}
	fmt.Fprintf(w, "%s: %d passed, %d failed, %d skipped\n", kernel, pass, fail, skip)
	return ok
}
