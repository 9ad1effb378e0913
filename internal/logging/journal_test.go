package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// journalLog logs one line per level to out and a log file, as under
// systemd (Journal), and returns what each got.
func journalLog(t *testing.T, format string, verbose bool) (out, file string) {
	t.Helper()
	var b bytes.Buffer
	path := filepath.Join(t.TempDir(), "log")
	log, o, err := New(&b, Options{Format: format, File: path, Journal: true, Verbose: verbose, Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	log.Error().Err(errors.New("boom")).Msg("an error")
	log.Warn().Msg("a warning")
	log.Info().Msg("some info")
	log.Debug().Str("k", "v").Msg("a debug line")
	log.Info().Bool(Machine, true).Msg("for programs only")
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), string(f)
}

// TestJournalText: under the journal, text lines carry a syslog priority
// instead of a timestamp; the log file's keep theirs.
func TestJournalText(t *testing.T) {
	out, file := journalLog(t, Text, true)
	want := "<3>ERROR - an error: boom\n<4>WARN - a warning\n<6>INFO - some info\n<7>DEBUG - a debug line k=v\n"
	if out != want {
		t.Errorf("journal lines\n%q\nwant\n%q", out, want)
	}
	ts := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - (ERROR|WARN|INFO|DEBUG) - `)
	lines := strings.Split(strings.TrimSuffix(file, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("log file %q: want 4 lines", file)
	}
	for _, l := range lines {
		if !ts.MatchString(l) {
			t.Errorf("log file line %q lacks its timestamp", l)
		}
	}
}

// TestJournalJSON: JSON events get the prefix too (journald strips it),
// and stay whole.
func TestJournalJSON(t *testing.T) {
	out, file := journalLog(t, JSON, false)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	prefixes := []string{"<3>", "<4>", "<6>", "<6>"}
	if len(lines) != len(prefixes) {
		t.Fatalf("journal lines %q: want %d", out, len(prefixes))
	}
	for i, l := range lines {
		rest, ok := strings.CutPrefix(l, prefixes[i])
		if !ok || !json.Valid([]byte(rest)) {
			t.Errorf("line %q: want %s and a JSON event", l, prefixes[i])
		}
	}
	if strings.Contains(file, "<") {
		t.Errorf("log file has priority prefixes:\n%s", file)
	}
}

// TestOnJournal: only the very stream JOURNAL_STREAM names is the
// journal's.
func TestOnJournal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	other, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	t.Setenv(JournalStreamEnv, fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !OnJournal(f) {
		t.Error("the stream JOURNAL_STREAM names is not taken for the journal")
	}
	if OnJournal(other) || OnJournal(&bytes.Buffer{}) {
		t.Error("another stream taken for the journal")
	}
	for _, v := range []string{"", "x", fmt.Sprintf("%d", st.Dev), fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)} {
		t.Setenv(JournalStreamEnv, v)
		if OnJournal(f) {
			t.Errorf("JOURNAL_STREAM=%q taken for the journal", v)
		}
	}
}

// TestReopen: after a rename and Reopen, lines go to a new file at the
// path (mode 0600); a path that fails the checks keeps the old file.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	log, o, err := New(&bytes.Buffer{}, Options{Format: Text, File: path, Buffered: true})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := o.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("after")
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(path+".1", path); err != nil {
		t.Fatal(err)
	}
	if err := o.Reopen(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("reopen onto a symlink: %v", err)
	}
	log.Info().Msg("kept")
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{".1": {"before"}, ".2": {"after", "kept"}} {
		b, err := os.ReadFile(path + name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			got = append(got, l[strings.LastIndex(l, " - ")+3:])
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("log%s holds %q, want %q", name, got, want)
		}
	}
	if st, err := os.Stat(path + ".2"); err != nil || st.Mode().Perm() != LogFileMode {
		t.Errorf("reopened file: %v %v", err, st.Mode())
	}
}
