package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hck-bpf/hck-bpf/bpf"
)

// What the kernel says about the tracker: run time and run count of its
// program (BPF statistics), and the memory of its socket map.

const (
	trackerProg = "hck_set_state"
	trackerLink = "hck_set_state_link"
	connsMap    = "hck_conns"
	countersMap = "hck_counters"
)

// enableStats turns on the kernel's BPF run-time statistics, the switch
// behind kernel.bpf_stats_enabled, through BPF_ENABLE_STATS: they stay on
// while the returned closer is open and go back off when it is closed, or
// when this process dies. The sysctl is never written.
func enableStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF stats: %w", err)
	}
	return c, nil
}

// progStats is the cumulated run time and run count of one program.
type progStats struct {
	Runtime time.Duration
	Count   uint64
}

func (a progStats) sub(b progStats) progStats {
	return progStats{Runtime: a.Runtime - b.Runtime, Count: a.Count - b.Count}
}

func (a progStats) perRun() time.Duration {
	if a.Count == 0 {
		return 0
	}
	return a.Runtime / time.Duration(a.Count)
}

// trackerStats reads the statistics of the tracker attached through the
// link pinned in pinDir.
func trackerStats(pinDir string) (progStats, error) {
	l, err := link.LoadPinnedLink(filepath.Join(pinDir, trackerLink), nil)
	if err != nil {
		return progStats{}, fmt.Errorf("load pinned link: %w", err)
	}
	info, err := l.Info()
	l.Close()
	if err != nil {
		return progStats{}, fmt.Errorf("link info: %w", err)
	}
	p, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return progStats{}, fmt.Errorf("open program %d: %w", info.Program, err)
	}
	defer p.Close()
	st, err := p.Stats()
	if err != nil {
		return progStats{}, fmt.Errorf("program %d stats: %w", info.Program, err)
	}
	return progStats{Runtime: st.Runtime, Count: st.RunCount}, nil
}

// mapMemory is the kernel's memory charge for the socket map pinned in
// pinDir (bpftool's bytes_memlock) and its capacity.
func mapMemory(pinDir string) (uint64, uint32, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, connsMap), nil)
	if err != nil {
		return 0, 0, fmt.Errorf("load pinned map: %w", err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return 0, 0, fmt.Errorf("map info: %w", err)
	}
	mem, ok := info.Memlock()
	if !ok {
		return 0, 0, errors.New("map info: the kernel does not report memlock")
	}
	return mem, info.MaxEntries, nil
}

// attachedTrackers counts hck_set_state programs loaded on the host (any
// hck-bpf, not only the bench's): they run on every transition of every
// namespace, so "without the tracker" means without these too.
func attachedTrackers() int {
	n := 0
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return n
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && info.Name == trackerProg {
			n++
		}
		p.Close()
	}
}

// eventsSent sums the tracker's count of ring-buffer records sent to a
// service (hck_counters, HCK_CNT_EVENT_SENT); ok is false when the
// tracker pinned in pinDir does not count them (a build before it did).
func eventsSent(pinDir string) (n uint64, ok bool) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, countersMap), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, false
	}
	defer m.Close()
	idx := uint32(bpf.TrackerHckCounterHCK_CNT_EVENT_SENT)
	if idx >= m.MaxEntries() {
		return 0, false
	}
	var perCPU []uint64
	if err := m.Lookup(idx, &perCPU); err != nil {
		return 0, false
	}
	for _, v := range perCPU {
		n += v
	}
	return n, true
}
