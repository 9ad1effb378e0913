package main

import (
	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// logCounters warns when the tracker lost anything: nothing is lost silently.
func logCounters(log zerolog.Logger, tr *tracking.Tracker) {
	c, err := tr.Counters()
	if err != nil {
		log.Warn().Err(err).Msg("Could not read tracker counters")
		return
	}
	ev := log.Debug()
	if c.Overflow > 0 || c.UpdateErrors > 0 || c.EventsLost > 0 {
		ev = log.Warn()
	}
	ev.Uint64("tracked", c.Tracked).Uint64("untracked", c.Untracked).Uint64("overflow", c.Overflow).
		Uint64("update_errors", c.UpdateErrors).Uint64("events_lost", c.EventsLost).Uint64("events_sent", c.EventsSent).Uint64("missed", c.Missed).
		Uint32("map_size", tr.MapSize()).
		Msgf("Tracker: %d tracked, %d untracked, %d overflow (map size %d), %d update errors, %d events lost, %d transitions missed",
			c.Tracked, c.Untracked, c.Overflow, tr.MapSize(), c.UpdateErrors, c.EventsLost, c.Missed)
}
