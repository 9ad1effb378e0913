package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/testnet"
)

func TestNormalizeArgs(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		// The scripts' cron lines: no subcommand means scan.
		{"--dry-run", "scan --dry-run"},
		{"-l --close-wait-timeout 30", "scan -l --close-wait-timeout 30"},
		// Python nargs form: one flag, several values.
		{"--live --exclude-ports 22 3306 5432 6379", "scan --live --exclude-ports 22 --exclude-ports 3306 --exclude-ports 5432 --exclude-ports 6379"},
		{"scan -n --include-ports 80 443 8080 -v", "scan -n --include-ports 80 --include-ports 443 --include-ports 8080 -v"},
		{"--live --exclude-processes nginx postgres", "scan --live --exclude-processes nginx --exclude-processes postgres"},
		{"run --exclude-cgroups /a /b/* -v", "run --exclude-cgroups /a --exclude-cgroups /b/* -v"},
		{"-n --include-cgroups /kubepods.slice /c", "scan -n --include-cgroups /kubepods.slice --include-cgroups /c"},
		// Bash form and repeated flags pass through untouched.
		{"--live --exclude-ports 22_3306", "scan --live --exclude-ports 22_3306"},
		{"run --exclude-ports 22 --exclude-ports 80", "run --exclude-ports 22 --exclude-ports 80"},
		// The = form takes exactly one value.
		{"run --exclude-ports=22 -v", "run --exclude-ports=22 -v"},
		// Other commands are left alone.
		{"list --json", "list --json"},
		{"--help", "--help"},
		{"", ""},
		// Global flags before a subcommand: that subcommand runs.
		{"--pin-dir X list", "--pin-dir X list"},
		{"-v list --state close-wait", "-v list --state close-wait"},
		{"--log-format json doctor", "--log-format json doctor"},
		{"--pin-dir X unload", "--pin-dir X unload"},
		{"--pin-dir=X -v --log-file /tmp/l unload", "--pin-dir=X -v --log-file /tmp/l unload"},
		{"--verbose --log-format=json help", "--verbose --log-format=json help"},
		// A global flag's value is never taken for the subcommand.
		{"--pin-dir list --dry-run", "scan --pin-dir list --dry-run"},
		{"--log-file run -n", "scan --log-file run -n"},
		// ... and list flags are expanded after the subcommand it names.
		{"-v run --exclude-ports 22 80 --live", "-v run --exclude-ports 22 --exclude-ports 80 --live"},
		{"--pin-dir X scan -n --include-ports 80 443", "--pin-dir X scan -n --include-ports 80 --include-ports 443"},
		// Global flags, then the scripts' flags: still the scripts' form.
		{"-v --live --exclude-ports 22 3306", "scan -v --live --exclude-ports 22 --exclude-ports 3306"},
		{"--pin-dir X --dry-run", "scan --pin-dir X --dry-run"},
		{"--log-format json -n --exclude-processes a b", "scan --log-format json -n --exclude-processes a --exclude-processes b"},
		{"-v", "scan -v"},
		{"--live stray", "scan --live stray"},
		{"-v --help", "-v --help"},
		{"--live --help", "scan --live --help"},
	}
	shape := shapeOf(newRoot(io.Discard, io.Discard))
	for _, tt := range tests {
		in := strings.Fields(tt.in)
		for i := range in {
			in[i] = strings.ReplaceAll(in[i], "_", " ")
		}
		got := strings.Join(normalizeArgs(in, shape), " ")
		want := strings.ReplaceAll(tt.want, "_", " ")
		if got != want {
			t.Errorf("normalizeArgs(%q)\n got %q\nwant %q", tt.in, got, want)
		}
	}
}

// Bad input exits 2 with one line on stderr, before anything is loaded:
// these run as any user, and a load would need root and a kernel.
func TestBadInputExits2(t *testing.T) {
	pin := filepath.Join(t.TempDir(), "pins")
	cases := [][]string{
		{"scan"},             // no mode
		{"scan", "-n", "-l"}, // both modes
		{"run", "-n", "-l"},  // both modes
		{"--live", "--close-wait-timeout", "abc"},
		{"--live", "--close-wait-timeout", "0"},
		{"--live", "--fin-wait-timeout", "-5"},
		{"--live", "--time-wait-timeout", "1e9"},
		{"--live", "--exclude-ports", "70000"},
		{"--live", "--exclude-ports", "22", "abc"},
		{"--live", "--include-ports", ","},
		{"--live", "--exclude-processes", "/usr/sbin/nginx"},
		{"--live", "--exclude-cgroups", "docker-*.scope"},
		{"--live", "--include-cgroups", "/a/["},
		{"run", "--include-cgroups", ","},
		{"--live", "--kill-grace", "2s"}, // without --kill-process
		{"--live", "--kill-process", "--kill-grace", "0"},
		{"--live", "--kill-process", "--kill-grace", "1h"},
		{"--live", "--max-kills", "-1"},
		{"--live", "--map-size", "0"},
		{"--live", "--bogus"},
		{"--live", "stray"},
		{"--dry-run", "--log-format", "xml"},
		{"list", "--state", "ESTABLISHED-ish"},
		{"run", "--metrics-addr", "9477"},
		{"run", "--live", "--metrics-addr", "example.com:9477"},
		{"run", "--metrics-addr", "127.0.0.1:65536"},
		{"frobnicate"},
	}
	for _, args := range cases {
		var out, errb bytes.Buffer
		code := Main(append(args, "--pin-dir", pin), &out, &errb)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, exitUsage, errb.String())
			continue
		}
		lines := strings.Split(strings.TrimRight(errb.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "hck-bpf: ") {
			t.Errorf("%q: want one 'hck-bpf: ...' line on stderr, got %q", args, errb.String())
		}
		if out.Len() != 0 {
			t.Errorf("%q: wrote to stdout: %q", args, out.String())
		}
		if _, err := os.Stat(pin); err == nil {
			t.Errorf("%q: created the pin dir: something was loaded", args)
		}
	}
}

func FuzzNormalizeArgs(f *testing.F) {
	f.Add("--live --exclude-ports 22 3306 -v")
	f.Add("run --include-ports -- 80")
	f.Add("--pin-dir X -v run --exclude-ports 22 80")
	shape := shapeOf(newRoot(io.Discard, io.Discard))
	f.Fuzz(func(t *testing.T, s string) {
		in := strings.Fields(s)
		out := normalizeArgs(slices.Clone(in), shape)
		// Nothing is lost or invented: every input word survives, in order,
		// and only "scan" or repeated list flags are added.
		j := 0
		for _, w := range out {
			if j < len(in) && w == in[j] {
				j++
				continue
			}
			if w != "scan" && !listFlags[w] {
				t.Fatalf("normalizeArgs(%q) = %q: invented %q", in, out, w)
			}
		}
		if j != len(in) {
			t.Fatalf("normalizeArgs(%q) = %q: lost words", in, out)
		}
	})
}

// TestGlobalFlagsBeforeCommand: a global flag before the subcommand
// reaches that subcommand; each case fails in the subcommand's own flag
// checks, before anything is loaded.
func TestGlobalFlagsBeforeCommand(t *testing.T) {
	pin := filepath.Join(t.TempDir(), "pins")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--pin-dir", pin, "list", "--state", "bogus"}, `--state: unknown TCP state "bogus"`},
		{[]string{"-v", "list", "--state", "bogus", "--pin-dir", pin}, `--state: unknown TCP state "bogus"`},
		{[]string{"--log-format", "json", "doctor", "stray"}, `unknown command "stray" for "hck-bpf doctor"`},
		{[]string{"--pin-dir", pin, "unload", "stray"}, `unknown command "stray" for "hck-bpf unload"`},
		{[]string{"--pin-dir", pin, "-v", "run", "-n", "-l"}, "choose one mode"},
	} {
		var out, errb bytes.Buffer
		code := Main(tt.args, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tt.args, code, errb.String(), exitUsage, tt.want)
		}
		if _, err := os.Stat(pin); err == nil {
			t.Fatalf("%q: created the pin dir: something was loaded", tt.args)
		}
	}
}

// TestBadValueMessages: values pflag or a silent default used to take get
// one clear line and exit 2, before anything is loaded.
func TestBadValueMessages(t *testing.T) {
	pin := filepath.Join(t.TempDir(), "pins")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--dry-run", "--map-size", "-1"}, `hck-bpf: --map-size: invalid value "-1": want a whole number from 0 to 4294967295`},
		{[]string{"--dry-run", "--map-size", "1e3"}, `hck-bpf: --map-size: invalid value "1e3": want a whole number from 0 to 4294967295`},
		{[]string{"--dry-run", "--max-kills", "x"}, `hck-bpf: --max-kills: invalid value "x": want a whole number`},
		{[]string{"list", "--map-size", "-1"}, `hck-bpf: --map-size: invalid value "-1": want a whole number from 0 to 4294967295`},
		{[]string{"--dry-run", "--log-format", ""}, `hck-bpf: --log-format: invalid value "": want text or json`},
		{[]string{"--log-format", "", "list"}, `hck-bpf: --log-format: invalid value "": want text or json`},
		{[]string{"--dry-run", "--log-format", "xml"}, `hck-bpf: --log-format: invalid value "xml": want text or json`},
		{[]string{"list", "--state", ""}, `hck-bpf: --state: no state in "": want states such as close-wait or FIN_WAIT2`},
		{[]string{"list", "--state", " , "}, `hck-bpf: --state: no state in " , ": want states such as close-wait or FIN_WAIT2`},
	} {
		var out, errb bytes.Buffer
		code := Main(append(tt.args, "--pin-dir", pin), &out, &errb)
		if code != exitUsage || errb.String() != tt.want+"\n" {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tt.args, code, errb.String(), exitUsage, tt.want)
		}
		if _, err := os.Stat(pin); err == nil {
			t.Fatalf("%q: created the pin dir: something was loaded", tt.args)
		}
	}
}

// TestHelpSaysHowToKeepASpace: --help says how a process name with a
// space is written, for scan and run alike.
func TestHelpSaysHowToKeepASpace(t *testing.T) {
	for _, cmd := range []string{"scan", "run"} {
		var out, errb bytes.Buffer
		if code := Main([]string{cmd, "--help"}, &out, &errb); code != exitOK {
			t.Fatalf("%s --help: exit %d: %s", cmd, code, errb.String())
		}
		if !strings.Contains(out.String(), `"'my proc' nginx"`) {
			t.Errorf("%s --help does not show how to quote a name with a space:\n%s", cmd, out.String())
		}
	}
}

// TestLogFileRefused: a --log-file that is not plainly this user's log
// file is refused with one line and exit 2, before anything is loaded, and
// nothing is written to it. (/proc/self/comm stands for
// /proc/sys/kernel/hostname, which a test must never write.)
func TestLogFileRefused(t *testing.T) {
	dir := t.TempDir()
	pin := testnet.PinDir(t) // on bpffs, never made: the log file is refused first
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		link:              "a symbolic link",
		fifo:              "a FIFO, not a regular file",
		"/dev/full":       "a character device, not a regular file",
		dir:               "a directory, not a regular file",
		"/proc/self/comm": "on proc, a kernel interface",
	}
	if os.Geteuid() == 0 {
		theirs := filepath.Join(dir, "theirs")
		if err := os.WriteFile(theirs, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases[theirs] = "owned by uid 65534"
	}
	for path, want := range cases {
		var out, errb bytes.Buffer
		code := make(chan int, 1)
		go func() { code <- Main([]string{"--dry-run", "--log-file", path, "--pin-dir", pin}, &out, &errb) }()
		select {
		case c := <-code:
			msg := errb.String()
			if c != exitUsage || !strings.HasPrefix(msg, "hck-bpf: open log file "+path+": ") ||
				!strings.Contains(msg, want) || strings.Count(msg, "\n") != 1 {
				t.Errorf("--log-file %s: exit %d, stderr %q; want exit %d and one line saying %q", path, c, msg, exitUsage, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("--log-file %s: still running after 10s", path)
		}
		if _, err := os.Stat(pin); err == nil {
			t.Fatalf("--log-file %s: created the pin dir: something was loaded", path)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Errorf("the symlink's target was written: %q", b)
	}
}
