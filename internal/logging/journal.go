package logging

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// JournalStreamEnv is set by systemd for a service whose standard output
// or error is connected to the journal: "DEVICE:INODE" of that stream
// (systemd.exec(5)).
const JournalStreamEnv = "JOURNAL_STREAM"

// OnJournal reports whether w is the very stream systemd connected to the
// journal: an *os.File whose device and inode are those JOURNAL_STREAM
// names. A process that inherited the variable but writes elsewhere (a
// shell started from the service, output redirected to a file) keeps the
// timestamped lines.
func OnJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	env := os.Getenv(JournalStreamEnv)
	if env == "" {
		return false
	}
	var dev, ino uint64
	if n, err := fmt.Sscanf(env, "%d:%d", &dev, &ino); err != nil || n != 2 {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// priorities are the syslog priorities (sd-daemon(3) prefixes) of the
// levels: the journal stores a line's priority from its "<N>" prefix.
var priorities = map[string]byte{
	"trace": '7', "debug": '7', "info": '6', "warn": '4', "error": '3', "fatal": '2', "panic": '0',
}

// textPriorities are the same, by the text line's level name.
var textPriorities = map[string]byte{
	"DEBUG": '7', "INFO": '6', "WARN": '4', "ERROR": '3', "FATAL": '2',
}

// tsLen is the length of a text line's timestamp and its separator
// ("2006-01-02 15:04:05 - ").
const tsLen = len("2006-01-02 15:04:05 - ")

// journalText turns a rendered text line into the journal's: the priority
// prefix instead of the timestamp (the journal has its own), the level
// name kept ("<4>WARN - message").
func journalText(line []byte) []byte {
	if len(line) < tsLen {
		return line
	}
	rest := line[tsLen:]
	lvl, _, _ := bytes.Cut(rest, []byte(" - "))
	p, ok := textPriorities[string(lvl)]
	if !ok {
		p = '6'
	}
	// In place: the prefix is shorter than the timestamp.
	out := line[tsLen-3:]
	out[0], out[1], out[2] = '<', p, '>'
	return out
}

// journalJSON is the priority prefix of a JSON event, from its level.
func journalJSON(p []byte) []byte {
	prio := byte('6')
	walkObject(p, func(key, val []byte) bool {
		if string(key) != "level" {
			return true
		}
		if s, ok := jsonString(val); ok {
			if v, ok := priorities[s]; ok {
				prio = v
			}
		}
		return false
	})
	return []byte{'<', prio, '>'}
}
