// Package report writes what a sweep saw and did to a zerolog logger: the
// scripts' lines and summary for a person, the same events with fields for
// machines (--log-format json).
package report

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/logging"
	"github.com/hck-bpf/hck-bpf/internal/policy"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

const (
	rule = "============================================================"
	thin = "------------------------------------------------------------"
)

// Mode names the run in the header, as the scripts do.
func Mode(dryRun bool) string {
	if dryRun {
		return "DRY RUN"
	}
	return "LIVE"
}

// human is an info event for people only (see logging.Human).
func human(log zerolog.Logger) *zerolog.Event { return log.Info().Bool(logging.Human, true) }

// Header opens a scan's output.
func Header(log zerolog.Logger, dryRun bool) {
	human(log).Msg(rule)
	log.Info().Str("mode", Mode(dryRun)).Msg("hck-bpf - " + Mode(dryRun))
	human(log).Msg(rule)
}

// connText is one socket's strings, rendered once for the two or three
// lines a hung socket gets (a live scan of 10,000 logs 30,000).
type connText struct {
	conn          string // conn.Conn.String()
	local, remote string
}

// textOf renders c in the scripts' form; with several namespaces in
// scope (multi), followed by its namespace: " [netns INODE NAME]".
func textOf(c *conn.Conn, multi bool) connText {
	t := connText{local: c.Local.String(), remote: c.Remote.String()}
	t.conn = "tcp " + c.State.String() + " " + t.local + " -> " + t.remote
	if c.Owner != nil {
		t.conn += " (PID: " + strconv.Itoa(c.Owner.PID) + ", Process: " + c.Owner.Comm + ")"
	}
	if multi {
		t.conn += " [netns " + strconv.FormatUint(uint64(c.NetNS), 10)
		if c.NetNSName != "" {
			t.conn += " " + c.NetNSName
		}
		t.conn += "]"
	}
	return t
}

// NetNS names a network namespace in a message: its inode, and its
// readable name in parentheses when it has one.
func NetNS(ino uint32, name string) string {
	if name == "" {
		return strconv.FormatUint(uint64(ino), 10)
	}
	return strconv.FormatUint(uint64(ino), 10) + " (" + name + ")"
}

// netnsEvent adds a socket's namespace to an event: netns, the inode;
// netns_name, its readable name, when it has one.
func netnsEvent(e *zerolog.Event, c *conn.Conn) *zerolog.Event {
	e = e.Uint32("netns", c.NetNS)
	if c.NetNSName != "" {
		e = e.Str("netns_name", c.NetNSName)
	}
	return e
}

// connEvent adds one socket's fields to an event.
func connEvent(e *zerolog.Event, c *conn.Conn, t *connText, v *policy.Verdict) *zerolog.Event {
	e = e.Str("state", c.State.String()).
		Str("local", t.local).
		Str("remote", t.remote).
		Uint64("cookie", c.Cookie)
	e = netnsEvent(e, c).
		Float64("age_s", v.Age.Seconds()).
		Bool("age_exact", c.Exact).
		Float64("threshold_s", v.Threshold.Seconds())
	if v.Rule != "" {
		e = e.Str("rule", v.Rule)
	}
	return ownerFields(e, c.Owner)
}

// ownerFields adds the owner's fields to an event, when c has one: pid,
// process, and where known cgroup, container_id and pod_uid.
func ownerFields(e *zerolog.Event, o *conn.Owner) *zerolog.Event {
	if o == nil {
		return e
	}
	e = e.Int("pid", o.PID).Str("process", o.Comm)
	if o.Cgroup != "" {
		e = e.Str("cgroup", o.Cgroup)
	}
	if o.ContainerID != "" {
		e = e.Str("container_id", o.ContainerID)
	}
	if o.PodUID != "" {
		e = e.Str("pod_uid", o.PodUID)
	}
	return e
}

// Items logs every hung socket with its reason and fate, in the scripts'
// words: the one rendering of scan and the service, dry run or live.
// Sockets kept by a filter are logged at debug level (-v), as the scripts
// did. With several namespaces in scope each line names the socket's.
func Items(log zerolog.Logger, rep *sweep.Report) {
	multi := rep.Namespaces > 1
	for i := range rep.Items {
		it := &rep.Items[i]
		c, v := &it.Conn, &it.Verdict
		if it.Outcome == sweep.Skipped && v.Skip == policy.SkipReportOnly {
			// A report-only rule: reported as hung, never destroyed.
			t := textOf(c, multi)
			connEvent(log.Warn(), c, &t, v).Str("action", "report").Str("reason", v.Reason).
				Msg("Hung connection reported (rule " + v.Rule + ", action report, not destroyed): " + t.conn)
			log.Warn().Bool(logging.Human, true).Msg("  Reason: " + v.Reason)
			continue
		}
		if it.Outcome == sweep.Skipped {
			// Without -v, render nothing for the line nobody sees.
			if e := log.Debug(); e.Enabled() {
				t := textOf(c, multi)
				connEvent(e, c, &t, v).Str("action", "skip").Str("skip", v.Skip.String()).
					Msg("Skipping " + t.conn + ": " + v.SkipDetail)
			}
			continue
		}
		t := textOf(c, multi)
		connEvent(log.Warn(), c, &t, v).Str("action", "detect").Str("reason", v.Reason).
			Msg("Hung connection detected: " + t.conn)
		log.Warn().Bool(logging.Human, true).Msg("  Reason: " + v.Reason)
		fate(log, it, &t)
	}
}

// Intent logs, before its destroy is sent, the socket a destroy is for:
// with Fate's line after it, the service's audit trail names every socket
// the kernel may have destroyed, even if hck-bpf is killed in between.
// multi: several namespaces are in scope, the line names the socket's.
func Intent(log zerolog.Logger, c *conn.Conn, multi bool) {
	t := textOf(c, multi)
	e := log.Info().Str("state", c.State.String()).Str("local", t.local).Str("remote", t.remote).Uint64("cookie", c.Cookie)
	e = netnsEvent(e, c)
	ownerFields(e, c.Owner).Str("action", "destroying").Msg("Terminating: " + t.conn + " (socket cookie " + strconv.FormatUint(c.Cookie, 10) + ")")
}

func fate(log zerolog.Logger, it *sweep.Item, t *connText) {
	c, v := &it.Conn, &it.Verdict
	switch it.Outcome {
	case sweep.Planned:
		connEvent(log.Info(), c, t, v).Str("action", "would_destroy").Msg("[DRY RUN] Would terminate: " + t.conn)
	case sweep.Destroyed:
		connEvent(log.Info(), c, t, v).Str("action", "destroyed").
			Msg("Terminated: " + t.conn + " after " + policy.FormatAge(v.Age, c.Exact) +
				" (socket cookie " + strconv.FormatUint(c.Cookie, 10) + ")")
	case sweep.Gone:
		connEvent(log.Info(), c, t, v).Str("action", "gone").Msg("Already gone: " + t.conn)
	case sweep.Held:
		connEvent(log.Warn(), c, t, v).Str("action", "held").Msg("Held back by --max-kills: " + t.conn)
	case sweep.Failed:
		connEvent(log.Error(), c, t, v).Str("action", "failed").AnErr("error", it.Err).
			Msg("Failed to terminate: " + t.conn)
		for i := range it.Processes {
			processLine(log, c, &it.Processes[i])
		}
	case sweep.Unsupported:
		connEvent(log.Warn(), c, t, v).Str("action", "unsupported").
			Msg("Not destroyed, this kernel cannot destroy it reliably: " + t.conn)
	case sweep.Changed:
		connEvent(log.Info(), c, t, v).Str("action", "changed").Str("kernel_state", it.KernelState.String()).
			Msg("Left alone, no longer " + c.State.String() + " (the kernel has it in " + it.KernelState.String() + "): " + t.conn)
	}
}

// processLine logs what --kill-process did with one owner of c, a socket
// that could not be destroyed.
func processLine(log zerolog.Logger, c *conn.Conn, r *sweep.ProcessResult) {
	o := &r.Owner
	who := "PID " + strconv.Itoa(o.PID) + " (" + o.Comm + ")"
	ev := func(e *zerolog.Event, action string) *zerolog.Event {
		return ownerFields(e.Uint64("cookie", c.Cookie).Str("action", action), o)
	}
	grace := r.Grace.String()
	switch r.Outcome {
	case sweep.ProcessTerminated:
		ev(log.Warn(), "process_terminated").Str("signal", "SIGTERM").
			Msg("Terminated process " + who + " with SIGTERM: its socket could not be destroyed")
	case sweep.ProcessKilled:
		e := ev(log.Warn(), "process_killed").Str("signal", "SIGKILL").Float64("grace_s", r.Grace.Seconds())
		msg := "Killed process " + who + " with SIGKILL: still running " + grace + " after SIGTERM"
		if r.Err != nil {
			e = e.AnErr("error", r.Err)
			msg += " (" + r.Err.Error() + ")"
		}
		e.Msg(msg)
	case sweep.ProcessGone:
		ev(log.Info(), "process_gone").Msg("Process " + who + " had already exited")
	case sweep.ProcessSpared:
		ev(log.Warn(), "process_spared").AnErr("error", r.Err).Msg("Not signalling process " + who + ": " + errText(r.Err))
	case sweep.ProcessFailed:
		ev(log.Error(), "process_failed").AnErr("error", r.Err).Msg("Failed to signal process " + who + ": " + errText(r.Err))
	}
}

func errText(err error) string {
	if err == nil {
		return "no reason given"
	}
	return err.Error()
}

// Signalling logs, before --kill-process signals it, the process o: with
// the line of its fate after it, the service's audit trail names every
// process hck-bpf may have signalled, even if it is killed in between.
func Signalling(log zerolog.Logger, o *conn.Owner, grace string) {
	ownerFields(log.Warn(), o).Str("action", "signalling").Str("signal", "SIGTERM").
		Msg("Signalling: SIGTERM to PID " + strconv.Itoa(o.PID) + " (" + o.Comm + "), SIGKILL after " + grace + " if it is still running")
}

// Reconciled logs what the walk of the namespace's sockets changed: at
// debug level, or at info when it seeded sockets first seen now (their
// ages are lower bounds) and the walk is not routine, or as a warning when
// the map is full. The service's walks after its first are routine: under
// churn it walks several times a second, and a socket it seeds then is one
// whose transition the tracker missed, which the missed-runs warning
// reports.
func Reconciled(log zerolog.Logger, rep *sweep.Report, routine bool) {
	if rep.ReconcileErr != nil {
		log.Warn().Err(rep.ReconcileErr).Msg("Could not walk the namespace's sockets (iter/tcp): timewait ages may be stale")
		return
	}
	r := rep.Reconciled
	ev := log.Debug()
	if r.Seeded > 0 && !routine {
		ev = log.Info()
	}
	if r.Overflow > 0 {
		ev = log.Warn()
	}
	ev.Int("seen", r.Seen).Int("seeded", r.Seeded).Int("updated", r.Updated).Int("removed", r.Removed).
		Int("pruned", r.Pruned).Int("overflow", r.Overflow).
		Msgf("Kernel walk: %d closing sockets, %d first seen now (ages are lower bounds: ≥), %d timewait updated, "+
			"%d stale entries removed, %d of deleted namespaces pruned, %d not tracked (map full)",
			r.Seen, r.Seeded, r.Updated, r.Removed, r.Pruned, r.Overflow)
}

// Summary closes a scan's output with the scripts' totals, and the log
// lines that could not be written so far (logLost).
func Summary(log zerolog.Logger, rep *sweep.Report, dryRun bool, logLost uint64) {
	skipped := 0
	var reasons []string
	for _, r := range policy.SkipReasons {
		if n := rep.Skipped[r]; n > 0 {
			skipped += n
			reasons = append(reasons, fmt.Sprintf("%s: %d", r, n))
		}
	}
	if rep.Changed > 0 {
		skipped += rep.Changed
		reasons = append(reasons, fmt.Sprintf("state changed: %d", rep.Changed))
	}
	terminated := rep.Destroyed
	note := ""
	if dryRun {
		terminated, note = rep.Planned, " (dry run: would terminate)"
	}
	ev := log.Info().Bool(logging.Machine, true).Str("summary", "sweep").Int("scanned", rep.Scanned).Int("hung", rep.Hung).
		Int("skipped", skipped).Int("terminated", terminated).Int("gone", rep.Gone).
		Int("held", rep.Held).Int("failed", rep.Failed).Int("unsupported", rep.Unsupported).Int("changed", rep.Changed).
		Bool("dry_run", dryRun).Int("namespaces", max(rep.Namespaces, 1)).Float64("took_s", rep.Took.Seconds()).
		Float64("took_walk_s", rep.Steps.Walk.Seconds()).Float64("took_read_s", rep.Steps.Read.Seconds()).
		Float64("took_owners_s", rep.Steps.Owners.Seconds()).Float64("took_act_s", rep.Steps.Act.Seconds()).Uint64("log_lines_lost", logLost).
		Int("processes_terminated", rep.ProcessesTerminated).Int("processes_killed", rep.ProcessesKilled)
	for _, r := range policy.SkipReasons {
		ev = ev.Int("skipped_"+strings.ReplaceAll(r.String(), " ", "_"), rep.Skipped[r])
	}
	ev.Msg("Summary")
	human(log).Msg(thin)
	human(log).Msg("Summary:")
	if rep.Namespaces > 1 {
		human(log).Msgf("  Network namespaces: %d", rep.Namespaces)
	}
	human(log).Msgf("  Total connections scanned: %d (tracked in closing states)", rep.Scanned)
	human(log).Msgf("  Hung connections found: %d", rep.Hung)
	line := fmt.Sprintf("  Connections skipped: %d", skipped)
	if len(reasons) > 0 {
		line += " (" + strings.Join(reasons, ", ") + ")"
	}
	human(log).Msg(line)
	human(log).Msgf("  Connections terminated: %d%s", terminated, note)
	if rep.Gone > 0 {
		human(log).Msgf("  Already gone: %d", rep.Gone)
	}
	if rep.Held > 0 {
		log.Warn().Bool(logging.Human, true).Msgf("  Held back by --max-kills: %d", rep.Held)
	}
	if rep.Unsupported > 0 {
		log.Warn().Bool(logging.Human, true).Msgf("  Reported, not destroyed (kernel too old): %d", rep.Unsupported)
	}
	summaryEnd(log, rep.Failed, rep.ProcessesTerminated, rep.ProcessesKilled, logLost)
}

// summaryEnd closes a scan's or a kill's summary: failures, the processes
// --kill-process ended, log lines lost, and the closing rule.
func summaryEnd(log zerolog.Logger, failed, terminated, killed int, logLost uint64) {
	human(log).Msgf("  Failed terminations: %d", failed)
	if terminated+killed > 0 {
		log.Warn().Bool(logging.Human, true).Msgf("  Processes terminated (--kill-process): %d with SIGTERM, %d with SIGKILL",
			terminated, killed)
	}
	if logLost > 0 {
		log.Warn().Bool(logging.Human, true).Msgf("  Log lines not written: %d (see stderr)", logLost)
	}
	human(log).Msg(rule)
}
