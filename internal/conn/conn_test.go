package conn

import (
	"testing"
	"time"
)

// TestMayBeStale: the one staleness rule, which list and sweep share.
func TestMayBeStale(t *testing.T) {
	now := uint64(100 * time.Second)
	young, old := now-uint64(time.Second), now-uint64(TimewaitLen)
	for _, tt := range []struct {
		name string
		c    Conn
		want bool
	}{
		{"FIN_WAIT2 timewait, young", Conn{State: FinWait2, Timewait: true, Entered: young}, true},
		{"TIME_WAIT timewait, within its timer", Conn{State: TimeWait, Timewait: true, Entered: young}, false},
		{"TIME_WAIT timewait, past its timer", Conn{State: TimeWait, Timewait: true, Entered: old}, true},
		{"CLOSE_WAIT, file known", Conn{State: CloseWait, File: 0xff, Entered: old}, false},
		{"CLOSE_WAIT, file unknown", Conn{State: CloseWait, Entered: young}, true},
		{"orphan, no file", Conn{State: LastAck, Orphan: true, Entered: old}, false},
		{"FIN_WAIT2 full socket, file known", Conn{State: FinWait2, File: 0xff, Entered: old}, false},
	} {
		if got := tt.c.MayBeStale(now); got != tt.want {
			t.Errorf("%s: MayBeStale = %v, want %v", tt.name, got, tt.want)
		}
	}
}
