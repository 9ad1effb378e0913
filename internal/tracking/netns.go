package tracking

import (
	"time"

	"github.com/hck-bpf/hck-bpf/internal/netns"
)

// liveNetNSMaxAge is how long a list of live namespaces is trusted.
const liveNetNSMaxAge = 30 * time.Second

// liveNetNS lists the network namespaces a process could still enter
// (netns.Live), cached for liveNetNSMaxAge. Entries of any other namespace
// belong to a namespace that is gone (its sockets went with it, without an
// event) or that nothing can reach: no sweep could ever act on them. fresh
// skips the cached list.
func (t *Tracker) liveNetNS(fresh bool) map[uint32]bool {
	if !fresh && t.live != nil && time.Since(t.liveAt) < liveNetNSMaxAge {
		return t.live
	}
	t.live, t.liveAt = netns.Live(), time.Now()
	return t.live
}
