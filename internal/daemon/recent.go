package daemon

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/hck-bpf/hck-bpf/internal/sweep"
	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// PublishKills is a Config.Swept hook that adds every socket a sweep
// destroyed to the pinned ring of recent kills (tracking.Tracker.Publish),
// where `top` reads them. A failure is logged, never fatal: the ring is
// for viewers, the kill happened.
func PublishKills(tr *tracking.Tracker, log zerolog.Logger) func(*sweep.Report) {
	return func(rep *sweep.Report) {
		if rep.Destroyed == 0 {
			return
		}
		now := time.Now()
		var kills []tracking.Recent
		for i := range rep.Items {
			it := &rep.Items[i]
			if it.Outcome != sweep.Destroyed {
				continue
			}
			kills = append(kills, tracking.Recent{At: now, Conn: it.Conn, Age: it.Verdict.Age,
				Reason: it.Verdict.Reason, Rule: it.Verdict.Rule})
		}
		if err := tr.Publish(kills); err != nil {
			log.Warn().Err(err).Msg("Could not publish the kills for top")
		}
	}
}
