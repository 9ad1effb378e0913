package conn

import "golang.org/x/sys/unix"

// Now reads CLOCK_BOOTTIME, the clock the BPF tracker stamps entries with
// (bpf_ktime_get_boot_ns).
func Now() uint64 {
	var ts unix.Timespec
	// CLOCK_BOOTTIME cannot fail on Linux ≥ 2.6.39.
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return uint64(ts.Nano())
}
