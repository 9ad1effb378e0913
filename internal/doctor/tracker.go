package doctor

import (
	"fmt"

	"github.com/hck-bpf/hck-bpf/internal/tracking"
)

// CheckTrackerMap reports how full the pinned tracker's socket map is, and
// whether it ever refused a socket.
const CheckTrackerMap = "tracker_map"

// checkTrackerMap reads the pinned map's use and the overflow counter: a
// socket refused by a full map is not tracked, and so never destroyed.
func checkTrackerMap(opts Options) (Status, string) {
	if opts.PinDir == "" {
		return OK, "no pin dir given"
	}
	c, entries, size, ok, err := tracking.PinnedUsage(opts.PinDir)
	switch {
	case !ok:
		return OK, fmt.Sprintf("no tracker pinned in %s yet", opts.PinDir)
	case err != nil:
		return failf("read the tracker pinned in %s: %v", opts.PinDir, err)
	case c.Overflow > 0:
		return Warn, fmt.Sprintf("the map was full %d times, so sockets went untracked (%d of %d entries used now): "+
			"run 'hck-bpf unload' and start again with a larger --map-size", c.Overflow, entries, size)
	}
	return OK, fmt.Sprintf("%d of %d entries used; no socket refused", entries, size)
}
