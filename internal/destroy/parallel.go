package destroy

import (
	"runtime"
	"sync"

	"github.com/hck-bpf/hck-bpf/internal/netns"
)

const (
	// maxWorkers bounds the netlink sockets, and OS threads, one call
	// uses: at most one per CPU Go may run on (GOMAXPROCS), and no more
	// than this. Each destroy costs the kernel several microseconds
	// (tcp_abort, the reset, the tracker), which runs on the calling CPU;
	// measured on 2 cores only, so the bound is a guess for large hosts.
	maxWorkers = 8
	// parMin is the fewest requests a further socket and thread are used
	// for: a call with fewer than 2*parMin sockets runs on the caller's
	// goroutine alone and spawns nothing. A socket costs about 7 us to
	// look up and destroy; opening a worker's socket about 20 us (70 us
	// from a thread that must enter the namespace first).
	parMin = 256
)

// share is one worker's part of a call: requests [lo, hi).
type share struct{ lo, hi int }

// shares splits n requests into at most workers contiguous shares of at
// least perWorker each (one share below 2*perWorker).
func shares(n, workers, perWorker int) []share {
	w := max(1, min(workers, n/max(1, perWorker)))
	out := make([]share, 0, w)
	for k := range w {
		lo, hi := n*k/w, n*(k+1)/w
		out = append(out, share{lo, hi})
	}
	return out
}

// fanOut runs work over the shares of n requests: the first on the calling
// goroutine with the Destroyer's socket, each other on a goroutine locked
// to an OS thread of its own, with a socket it opens in the Destroyer's
// namespace and closes when done. A share whose socket cannot be opened
// (out of file descriptors; no CAP_SYS_ADMIN to enter the namespace from a
// thread outside it) is done afterwards with the Destroyer's socket. It
// returns what the works return, in share order. d.mu is held.
func (d *Destroyer) fanOut(n int, work func(k *nlSock, lo, hi int) []int) []int {
	sh := shares(n, d.workers, d.perWorker)
	out := make([][]int, len(sh))
	if len(sh) == 1 {
		return work(d.sock, 0, n)
	}
	failed := make([]bool, len(sh))
	var wg sync.WaitGroup
	for i := 1; i < len(sh); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			netns.OnThread(func() {
				k, err := openSock(d.ns)
				if err != nil {
					failed[i] = true
					return
				}
				defer k.close()
				if d.opened != nil {
					d.opened(k.fd)
				}
				out[i] = work(k, sh[i].lo, sh[i].hi)
			})
		}()
	}
	runtime.LockOSThread()
	out[0] = work(d.sock, sh[0].lo, sh[0].hi)
	runtime.UnlockOSThread()
	wg.Wait()
	for i := range sh {
		if failed[i] {
			out[i] = work(d.sock, sh[i].lo, sh[i].hi)
		}
	}
	var all []int
	for _, o := range out {
		all = append(all, o...)
	}
	return all
}

// inNetns runs fn on a thread in the Destroyer's namespace (netns.NS.Do).
func (d *Destroyer) inNetns(fn func() error) error { return d.ns.Do(fn) }
