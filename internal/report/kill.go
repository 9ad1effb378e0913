package report

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/kill"
	"github.com/hck-bpf/hck-bpf/internal/logging"
)

// KillHeader opens a kill's output: the mode, what it looks for and where.
func KillHeader(log zerolog.Logger, dryRun bool, what string, namespaces int) {
	human(log).Msg(rule)
	log.Info().Str("mode", Mode(dryRun)).Str("filter", what).Int("namespaces", namespaces).Msg("hck-bpf kill - " + Mode(dryRun))
	human(log).Msg("Connections: " + what)
	human(log).Msg(rule)
}

// KillItems logs every socket the kill picked, in the scripts' words:
// what was destroyed (or would be), what was refused and why.
func KillItems(log zerolog.Logger, rep *kill.Report) {
	for _, e := range rep.NSErrors {
		log.Error().Uint32("netns", e.Target.NS.Inode()).Str("netns_name", e.Target.Name).AnErr("error", e.Err).
			Msg("Could not list the sockets of network namespace " + e.Target.Label() + ": " + e.Err.Error())
	}
	if rep.OwnerErr != nil {
		log.Error().Err(rep.OwnerErr).Msg("Could not look up socket owners: no socket a process may hold was destroyed (--force destroys them without knowing their owners)")
	}
	for i := range rep.Items {
		killItem(log, &rep.Items[i])
	}
}

// killText is a killed socket in the scripts' form, followed, when the
// kill was of more than its own namespace, by the socket's:
// " [netns INODE NAME]".
func killText(it *kill.Item) connText {
	c := &it.Conn
	t := connText{local: c.Local.String(), remote: c.Remote.String()}
	t.conn = "tcp " + c.State.String() + " " + t.local + " -> " + t.remote
	if c.Owner != nil {
		t.conn += " (PID: " + strconv.Itoa(c.Owner.PID) + ", Process: " + c.Owner.Comm + ")"
	}
	if it.Named() {
		t.conn += " [netns " + strconv.FormatUint(uint64(c.NetNS), 10)
		if it.Target.Name != "" {
			t.conn += " " + it.Target.Name
		}
		t.conn += "]"
	}
	return t
}

func killItem(log zerolog.Logger, it *kill.Item) {
	c := &it.Conn
	t := killText(it)
	line := t.conn
	ev := func(e *zerolog.Event, action string) *zerolog.Event {
		e = e.Str("state", c.State.String()).Str("local", t.local).Str("remote", t.remote).
			Uint64("cookie", c.Cookie).Uint32("netns", c.NetNS).Str("action", action)
		if it.Target != nil && it.Target.Name != "" {
			e = e.Str("netns_name", it.Target.Name)
		}
		if c.Owner != nil {
			e = e.Int("pid", c.Owner.PID).Str("process", c.Owner.Comm)
		}
		if it.Refusal != kill.NotRefused {
			e = e.Str("refusal", it.Refusal.String()).Str("detail", it.Detail).Bool("forced", it.Forced)
		}
		return e
	}
	forced := ""
	if it.Forced {
		forced = " (forced: " + it.Detail + ")"
	}
	cookie := " (socket cookie " + strconv.FormatUint(c.Cookie, 10) + ")"
	switch it.Outcome {
	case kill.Planned:
		ev(log.Info(), "would_destroy").Msg("[DRY RUN] Would terminate: " + line + forced)
	case kill.Destroyed:
		ev(log.Info(), "destroyed").Msg("Terminated: " + line + cookie + forced)
	case kill.Refused:
		ev(log.Warn(), "refused").Msg("Refused: " + line + ": " + it.Detail + "; --force destroys it")
	case kill.Gone:
		ev(log.Info(), "gone").Msg("Already gone: " + line)
	case kill.Changed:
		ev(log.Info(), "changed").Str("kernel_state", it.KernelState.String()).
			Msg("Left alone, no longer " + c.State.String() + " (the kernel has it in " + it.KernelState.String() + "): " + line)
	case kill.Failed:
		ev(log.Error(), "failed").AnErr("error", it.Err).Msg("Failed to terminate: " + line)
		for i := range it.Processes {
			processLine(log, c, &it.Processes[i])
		}
	case kill.Unsupported:
		ev(log.Warn(), "unsupported").Msg("Not destroyed, this kernel cannot destroy it reliably: " + line)
	}
}

// KillSummary closes a kill's output with its counts, and the log lines
// that could not be written so far (logLost).
func KillSummary(log zerolog.Logger, rep *kill.Report, dryRun bool, namespaces int, logLost uint64) {
	refused := 0
	var reasons []string
	for _, r := range kill.Refusals {
		if n := rep.Refused[r]; n > 0 {
			refused += n
			reasons = append(reasons, fmt.Sprintf("%s: %d", r, n))
		}
	}
	terminated := rep.Destroyed
	note := ""
	if dryRun {
		terminated, note = rep.Planned, " (dry run: would terminate)"
	}
	ev := log.Info().Bool(logging.Machine, true).Str("summary", "kill").Int("matched", rep.Matched).
		Int("refused", refused).Int("terminated", terminated).Int("gone", rep.Gone).Int("changed", rep.Changed).
		Int("failed", rep.Failed).Int("unsupported", rep.Unsupported).Int("namespaces", namespaces).
		Int("namespace_errors", len(rep.NSErrors)).Bool("dry_run", dryRun).
		Float64("took_s", rep.Took.Seconds()).Float64("took_dump_s", rep.Steps.Dump.Seconds()).
		Float64("took_owners_s", rep.Steps.Owners.Seconds()).Float64("took_act_s", rep.Steps.Act.Seconds()).
		Int("processes_terminated", rep.ProcessesTerminated).Int("processes_killed", rep.ProcessesKilled).
		Uint64("log_lines_lost", logLost)
	for _, r := range kill.Refusals {
		ev = ev.Int("refused_"+strings.ReplaceAll(r.String(), " ", "_"), rep.Refused[r])
	}
	ev.Msg("Summary")
	human(log).Msg(thin)
	human(log).Msg("Summary:")
	where := "1 network namespace"
	if namespaces != 1 {
		where = fmt.Sprintf("%d network namespaces", namespaces)
	}
	human(log).Msgf("  Connections matched: %d (in %s)", rep.Matched, where)
	line := fmt.Sprintf("  Connections refused: %d", refused)
	if len(reasons) > 0 {
		line += " (" + strings.Join(reasons, ", ") + "; --force destroys them)"
	}
	human(log).Msg(line)
	human(log).Msgf("  Connections terminated: %d%s", terminated, note)
	if rep.Gone > 0 {
		human(log).Msgf("  Already gone: %d", rep.Gone)
	}
	if rep.Changed > 0 {
		human(log).Msgf("  State changed, left alone: %d", rep.Changed)
	}
	if rep.Unsupported > 0 {
		log.Warn().Bool(logging.Human, true).Msgf("  Reported, not destroyed (kernel too old): %d", rep.Unsupported)
	}
	if n := len(rep.NSErrors); n > 0 {
		log.Warn().Bool(logging.Human, true).Msgf("  Network namespaces not listed: %d", n)
	}
	summaryEnd(log, rep.Failed, rep.ProcessesTerminated, rep.ProcessesKilled, logLost)
}
