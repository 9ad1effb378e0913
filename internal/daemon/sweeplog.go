package daemon

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// MissedWarnEvery is the most often the service warns that the tracker
// missed transitions: under load the count grows with every burst.
const MissedWarnEvery = 5 * time.Minute

// sweepLog logs the service's sweeps: the sockets acted on, routine walks
// at debug level (only the first walk, at start, may say more), and a
// warning when the tracker's missed runs grow.
type sweepLog struct {
	log      zerolog.Logger
	counters func() (tracking.Counters, error)
	now      func() time.Time
	sweeps   int
	missed   missedWatch
}

func newSweepLog(log zerolog.Logger, counters func() (tracking.Counters, error)) *sweepLog {
	return &sweepLog{log: log, counters: counters, now: time.Now}
}

// sweep logs one sweep that ran.
func (s *sweepLog) sweep(rep *sweep.Report) {
	logSweep(s.log, rep, s.sweeps > 0)
	s.sweeps++
	c, err := s.counters()
	if err != nil {
		s.log.Debug().Err(err).Msg("Could not read tracker counters")
		return
	}
	if grew, over, ok := s.missed.check(c.Missed, s.now()); ok {
		s.log.Warn().Uint64("missed_new", grew).Uint64("missed_total", c.Missed).Float64("over_s", over.Seconds()).
			Msgf("Tracker missed %d socket transitions in the last %s (%d since it was loaded): the kernel skipped its program "+
				"(recursion_misses, under load); the next transition or walk corrects those sockets, their ages then lower bounds (≥)",
				grew, over.Round(time.Second), c.Missed)
	}
}

// missedWatch decides when the tracker's missed runs (Counters.Missed, a
// total since the program was loaded) are worth a warning: when they grew
// since the last warning, at most once per MissedWarnEvery. What grows in
// between is told in the next warning. The first reading is the baseline:
// misses from before this service are not its news.
type missedWatch struct {
	started bool
	base    uint64    // the count at the last warning, or at start
	since   time.Time // when base was taken
	warned  time.Time // the last warning; zero: none yet
}

// check takes a reading at now. When it warrants a warning it returns the
// growth since base, how long that took, and true.
func (m *missedWatch) check(count uint64, now time.Time) (grew uint64, over time.Duration, warn bool) {
	switch {
	case !m.started:
		m.started, m.base, m.since = true, count, now
		return 0, 0, false
	case count < m.base:
		// A new program (the tracker was unloaded and attached again):
		// its count starts over.
		m.base = 0
	}
	if count == m.base || !m.warned.IsZero() && now.Sub(m.warned) < MissedWarnEvery {
		return 0, 0, false
	}
	grew, over = count-m.base, now.Sub(m.since)
	m.base, m.since, m.warned = count, now, now
	return grew, over, true
}
