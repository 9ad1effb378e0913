package logging

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openRefused opens path as a log file and fails unless it is refused
// with an error naming the path and holding want.
func openRefused(t *testing.T, path, want string) {
	t.Helper()
	var b bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, out, err := New(&b, Options{File: path})
		if err == nil {
			out.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("log file %s accepted", path)
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
			t.Errorf("log file %s: error %q, want one line naming it and saying %q", path, msg, want)
		}
	case <-time.After(10 * time.Second): // a FIFO without reader
		t.Fatalf("opening log file %s hangs", path)
	}
}

func TestLogFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	openRefused(t, link, "a symbolic link")
	// A dangling one, too: following it would create the file it names.
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "created"), dangling); err != nil {
		t.Fatal(err)
	}
	openRefused(t, dangling, "a symbolic link")
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Errorf("target written: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "created")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dangling link's target was created: %v", err)
	}
}

func TestLogFileRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	openRefused(t, fifo, "a FIFO, not a regular file") // no reader: would hang
	// With a reader, it would open: still not a log file.
	r, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(r)
	openRefused(t, fifo, "a FIFO, not a regular file")
	if n, _ := unix.Read(r, make([]byte, 64)); n > 0 {
		t.Errorf("%d bytes written to the FIFO", n)
	}
}

func TestLogFileRefusesNonRegular(t *testing.T) {
	openRefused(t, "/dev/full", "a character device, not a regular file")
	openRefused(t, t.TempDir(), "a directory, not a regular file")
}

// TestLogFileRefusesKernelFiles: a regular file of a kernel interface is
// not a log file. /proc/self/comm stands for /proc/sys/kernel/hostname (a
// line written there renames the host; this test never writes a /proc/sys
// file): both are regular files of procfs, owned by the user writing them.
func TestLogFileRefusesKernelFiles(t *testing.T) {
	before, err := os.ReadFile("/proc/thread-self/comm")
	if err != nil {
		t.Skip("no procfs")
	}
	openRefused(t, "/proc/thread-self/comm", "on proc, a kernel interface")
	openRefused(t, "/proc/self/comm", "on proc, a kernel interface")
	if after, _ := os.ReadFile("/proc/thread-self/comm"); !bytes.Equal(before, after) {
		t.Errorf("comm changed from %q to %q", before, after)
	}
}

func TestLogFileRefusesOtherUsersFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	f := filepath.Join(t.TempDir(), "theirs.log")
	if err := os.WriteFile(f, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	openRefused(t, f, "owned by uid 65534, not by this user (uid 0)")
	if st, _ := os.Stat(f); st.Size() != 0 {
		t.Errorf("written: %d bytes", st.Size())
	}
}

func TestLogFileRefusesHardLink(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a.log")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(f, filepath.Join(dir, "b.log")); err != nil {
		t.Fatal(err)
	}
	openRefused(t, f, "2 hard links")
}

// TestLogFileMode: a new log file is 0600 whatever the umask, even one
// that takes the owner's write bit; an existing one keeps its mode and is
// appended to.
func TestLogFileMode(t *testing.T) {
	for _, mask := range []int{0o000, 0o022, 0o277} {
		f := filepath.Join(t.TempDir(), "new.log")
		old := syscall.Umask(mask)
		log, out, err := New(&bytes.Buffer{}, Options{File: f})
		syscall.Umask(old)
		if err != nil {
			t.Fatalf("umask %03o: %v", mask, err)
		}
		log.Info().Msg("one")
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != LogFileMode {
			t.Errorf("umask %03o: created %v, want %v", mask, st.Mode(), os.FileMode(LogFileMode))
		}
	}
	f := filepath.Join(t.TempDir(), "old.log")
	if err := os.WriteFile(f, []byte("before\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	log, out, err := New(&bytes.Buffer{}, Options{File: f})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("after")
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(f)
	if !strings.HasPrefix(string(b), "before\n") || !strings.HasSuffix(string(b), " - INFO - after\n") {
		t.Errorf("existing file now %q: want the line appended", b)
	}
	if st, _ := os.Stat(f); st.Mode() != 0o640 {
		t.Errorf("existing file's mode changed to %v", st.Mode())
	}
}

// inFullDir runs fn with a directory on a tmpfs of one page, filled up,
// mounted in a private mount namespace, on the thread that made it: a file
// can be created there, and every write to it fails ENOSPC. The host's
// mounts are untouched; the namespace and the thread go away after fn.
func inFullDir(t *testing.T, fn func(dir string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs in a private mount namespace")
	}
	dir := t.TempDir()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		err := func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
				return err
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return err
			}
			if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4k"); err != nil {
				return err
			}
			fill, err := os.Create(filepath.Join(dir, "fill"))
			if err != nil {
				return err
			}
			defer fill.Close()
			for {
				if _, err := fill.Write(make([]byte, 4096)); err != nil {
					if errors.Is(err, unix.ENOSPC) {
						return nil
					}
					return err
				}
			}
		}()
		if err != nil {
			errc <- err
			return
		}
		fn(dir)
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestLogFileWriteErrorsCounted: lines the log file cannot take (disk
// full) are counted, said on stdout when it starts failing, and reported
// by Close; stdout still gets every line.
func TestLogFileWriteErrorsCounted(t *testing.T) {
	for _, format := range []string{Text, JSON} {
		t.Run(format, func(t *testing.T) {
			var stdout bytes.Buffer
			inFullDir(t, func(dir string) {
				log, out, err := New(&stdout, Options{File: filepath.Join(dir, "hck.log"), Format: format, Buffered: true})
				if err != nil {
					t.Error(err)
					return
				}
				for range 3 {
					log.Info().Msg("kill line")
				}
				out.Flush() // one write, three lines
				log.Info().Msg("another")
				lost := out.Lost()
				if len(lost) != 1 || lost[0].Lines != 4 || !errors.Is(lost[0].Err, unix.ENOSPC) ||
					!strings.HasPrefix(lost[0].Dest, "log file "+dir) {
					t.Errorf("lost %+v, want 4 lines of the log file, ENOSPC", lost)
				}
				err = out.Close()
				if err == nil || !strings.Contains(err.Error(), "hck.log: 4 log lines not written: write ") ||
					!strings.Contains(err.Error(), "no space left on device") {
					t.Errorf("close: %v, want the 4 lost lines reported", err)
				}
			})
			got := stdout.String()
			if n := strings.Count(got, "kill line"); n != 3 {
				t.Errorf("stdout has %d of 3 lines:\n%s", n, got)
			}
			// Said once when the file started failing, not per line.
			if n := strings.Count(got, "Could not write the log file"); n != 1 {
				t.Errorf("stdout says %d times that the file fails, want once:\n%s", n, got)
			}
		})
	}
}
