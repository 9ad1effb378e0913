package tracking

import (
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// liveNetNSMaxAge is how long a list of live namespaces is trusted.
const liveNetNSMaxAge = 30 * time.Second

// liveNetNS lists the network namespaces a process could still enter: the
// ones some thread is in, and the ones bind-mounted under /run/netns.
// Entries of any other namespace belong to a namespace that is gone (its
// sockets went with it, without an event) or that nothing can reach: no
// sweep could ever act on them. fresh skips the cached list.
func (t *Tracker) liveNetNS(fresh bool) map[uint32]bool {
	if !fresh && t.live != nil && time.Since(t.liveAt) < liveNetNSMaxAge {
		return t.live
	}
	live := map[uint32]bool{}
	add := func(path string) {
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil {
			live[uint32(st.Ino)] = true
		}
	}
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		names, _ := os.ReadDir(dir)
		for _, n := range names {
			add(filepath.Join(dir, n.Name()))
		}
	}
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	for _, p := range tasks {
		add(p)
	}
	t.live, t.liveAt = live, time.Now()
	return live
}
