package policy

import (
	"fmt"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
)

// Thresholds is how long a connection may stay in each closing state before
// it counts as hung. A zero (or negative) field means "no threshold": Decide
// never destroys a connection in that state, and Validate refuses it.
type Thresholds struct {
	CloseWait time.Duration
	FinWait1  time.Duration
	FinWait2  time.Duration
	Closing   time.Duration
	LastAck   time.Duration
	TimeWait  time.Duration
}

// DefaultThresholds are the scripts' defaults: CLOSE_WAIT 60s, FIN_WAIT1 and
// FIN_WAIT2 120s, CLOSING 60s, LAST_ACK 60s, TIME_WAIT 120s.
func DefaultThresholds() Thresholds {
	return Thresholds{
		CloseWait: 60 * time.Second,
		FinWait1:  120 * time.Second,
		FinWait2:  120 * time.Second,
		Closing:   60 * time.Second,
		LastAck:   60 * time.Second,
		TimeWait:  120 * time.Second,
	}
}

// For returns the threshold for state s. ok is false for the states a sweep
// never destroys (ESTABLISHED, LISTEN, SYN_SENT, SYN_RECV, NEW_SYN_RECV,
// CLOSE) and for a closing state whose threshold is not set (≤ 0).
func (t Thresholds) For(s conn.State) (d time.Duration, ok bool) {
	if p := t.field(s); p != nil && *p > 0 {
		return *p, true
	}
	return 0, false
}

// Set sets the threshold for closing state s. It refuses the other states
// and values outside (0, MaxDuration].
func (t *Thresholds) Set(s conn.State, d time.Duration) error {
	p := t.field(s)
	if p == nil {
		return fmt.Errorf("set threshold for %s: not a closing state, never destroyed", s)
	}
	if err := checkThreshold(s, d); err != nil {
		return err
	}
	*p = d
	return nil
}

// Validate checks that every closing state has a threshold in (0, MaxDuration].
func (t Thresholds) Validate() error {
	for _, s := range conn.ClosingStates {
		if err := checkThreshold(s, *t.field(s)); err != nil {
			return err
		}
	}
	return nil
}

func checkThreshold(s conn.State, d time.Duration) error {
	switch {
	case d <= 0:
		return fmt.Errorf("no threshold for %s: want a duration above zero", s)
	case d > MaxDuration:
		return fmt.Errorf("threshold for %s is %s: more than 100 years", s, d)
	}
	return nil
}

// field returns the threshold for s, nil when s is not a closing state.
func (t *Thresholds) field(s conn.State) *time.Duration {
	switch s {
	case conn.CloseWait:
		return &t.CloseWait
	case conn.FinWait1:
		return &t.FinWait1
	case conn.FinWait2:
		return &t.FinWait2
	case conn.Closing:
		return &t.Closing
	case conn.LastAck:
		return &t.LastAck
	case conn.TimeWait:
		return &t.TimeWait
	}
	return nil
}
