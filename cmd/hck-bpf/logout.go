package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/logging"
)

// errLogLost reports that log lines could not be written; closeLog has
// said which, on stderr.
var errLogLost = errors.New("log lines could not be written")

// closeLog closes a command's log. Lines it could not write are reported
// on stderr, one line per destination, and make an otherwise successful
// command exit 1: an audit trail with holes is a failure.
func (g *globals) closeLog(out *logging.Output, err *error) {
	cerr := out.Close()
	if cerr == nil {
		return
	}
	for _, l := range strings.Split(cerr.Error(), "\n") {
		fmt.Fprintf(g.stderr, "hck-bpf: %s\n", l)
	}
	if *err == nil {
		*err = errLogLost
	}
}

// logStopped is the service's last line, with the log lines lost so far.
func logStopped(log zerolog.Logger, out *logging.Output) {
	msg := "hck-bpf service stopped; the tracker stays pinned (hck-bpf unload removes it)"
	ev := log.Info()
	n := out.LostLines()
	if n > 0 {
		ev = log.Warn()
		msg += fmt.Sprintf("; %d log lines could not be written (see stderr)", n)
	}
	ev.Uint64("log_lines_lost", n).Msg(msg)
}
