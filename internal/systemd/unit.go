package systemd

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Where install puts things (under its root).
const (
	UnitName   = "hck-bpf.service"
	UnitDir    = "/etc/systemd/system"
	ConfigDir  = "/etc/hck-bpf"
	ConfigPath = ConfigDir + "/config.yaml"
)

// WatchdogSec is the unit's watchdog: the loop pings at half of it
// (Notifier.PingEvery), from the loop itself, after every sweep and between
// sweeps; a sweep of 100,000 sockets takes well under a second. A loop
// wedged this long is restarted (Restart=on-failure).
const WatchdogSec = 30 * time.Second

// MemoryMax is the unit's hard memory limit: a backstop against a leak,
// not a budget. The service's resident memory is 17-20 MiB (20.0 MiB idle,
// measured; 17 MiB peak with 100,000 tracked sockets in the README's bench;
// its Go heap is held near 24 MiB by a soft limit); BPF maps are charged to
// the service's cgroup too (since Linux 5.11): 128 B per tracked socket,
// 32 MiB for a full default map of 262,144 entries.
const MemoryMax = "256M"

// Capabilities is the unit's capability set, exactly (CapabilityBoundingSet
// and AmbientCapabilities): the least that `run --live` in the namespace
// it starts in needs, proven by a test running it under exactly this set
// (cmd/hck-bpf TestServiceUnderUnitCapabilities).
var Capabilities = []string{
	"CAP_BPF",       // every bpf(2) call: loading, pinning, reading the maps
	"CAP_PERFMON",   // loading the tracing program (tp_btf) and the iterators
	"CAP_NET_ADMIN", // netlink SOCK_DESTROY
}

// Unit is the service's unit file, running bin (an absolute path). Every
// directive says why it is there.
func Unit(bin string) []byte {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	caps := strings.Join(Capabilities, " ")
	w("# hck-bpf: destroys TCP connections stuck in closing states, in the kernel.")
	w("# Written by 'hck-bpf install'; 'hck-bpf uninstall' removes it. To change it,")
	w("# prefer a drop-in: systemctl edit hck-bpf")
	w("[Unit]")
	w("# What systemctl status and the journal call it.")
	w("Description=hck-bpf: destroy hung TCP connections")
	w("Documentation=https://github.com/hck-bpf/hck-bpf")
	w("# SOCK_DESTROY and the tracker need no network, but the service should watch")
	w("# the sockets of services that start after the network is configured.")
	w("After=network.target")
	w("# Restart=on-failure, at most StartLimitBurst times in StartLimitIntervalSec:")
	w("# a service that cannot start (no BTF, a bad config) stops being retried.")
	w("StartLimitIntervalSec=300")
	w("StartLimitBurst=5")
	w("")
	w("[Service]")
	w("# READY=1 once the tracker is attached, the first sweep ran and netlink")
	w("# answered; STOPPING=1 on SIGTERM; RELOADING=1 ... READY=1 around a SIGHUP.")
	w("Type=notify")
	w("# Only the main process may notify.")
	w("NotifyAccess=main")
	w("# The service, configured by the file install wrote; its mode key says")
	w("# whether it destroys (live) or only reports (dry-run, the default).")
	w("ExecStart=%s run --config %s", bin, ConfigPath)
	w("# SIGHUP reloads the config file (a bad one keeps the running config).")
	w("ExecReload=/bin/kill -HUP $MAINPID")
	w("# The loop itself sends WATCHDOG=1 every %s: a wedged loop is killed", WatchdogSec/2)
	w("# (SIGABRT, with a Go stack dump in the journal) and restarted.")
	w("WatchdogSec=%d", int(WatchdogSec.Seconds()))
	w("# A crash or a watchdog kill restarts it; a clean stop (exit 0) does not.")
	w("Restart=on-failure")
	w("# Not in a tight loop: a restart waits 5 s.")
	w("RestartSec=5")
	w("# It stops within a second of SIGTERM (the pins stay: a restart keeps every")
	w("# entry time); a stop that hangs longer is SIGKILLed.")
	w("TimeoutStopSec=30")
	w("")
	w("# Capabilities: exactly what 'run --live' needs in the host's network")
	w("# namespace (measured: a test runs it under this set):")
	w("#   CAP_BPF       every bpf(2) call (kernel.unprivileged_bpf_disabled)")
	w("#   CAP_PERFMON   loading the tracing program and the iterators")
	w("#   CAP_NET_ADMIN SOCK_DESTROY")
	w("# It runs as root (the pins in /sys/fs/bpf are root's) with no other")
	w("# capability. Add with a drop-in what a config option needs:")
	w("#   all_netns / netns: CAP_SYS_ADMIN (setns) and CAP_SYS_PTRACE (other")
	w("#   users' /proc/PID/ns/net), and RestrictNamespaces=net below;")
	w("#   kill_process: CAP_KILL.")
	w("CapabilityBoundingSet=%s", caps)
	w("AmbientCapabilities=%s", caps)
	w("# No setuid binary or file capability can give more.")
	w("NoNewPrivileges=yes")
	w("")
	w("# Filesystem: read-only everywhere but the pins; logs go to the journal.")
	w("ProtectSystem=strict")
	w("# The tracker's pins (and the pin dir's lock).")
	w("ReadWritePaths=/sys/fs/bpf")
	w("# Nothing in /home, /root or /run/user is read.")
	w("ProtectHome=yes")
	w("# A /tmp of its own: nothing of other services' is seen.")
	w("PrivateTmp=yes")
	w("# /proc/sys and /sys read-only (but /sys/fs/bpf, above): nothing is tuned.")
	w("ProtectKernelTunables=yes")
	w("# No module is loaded (BPF programs are not modules).")
	w("ProtectKernelModules=yes")
	w("# The kernel log is not read.")
	w("ProtectKernelLogs=yes")
	w("# /sys/fs/cgroup read-only: owners' cgroups are read from /proc/PID/cgroup.")
	w("ProtectControlGroups=yes")
	w("# The clock and the hostname are never set.")
	w("ProtectClock=yes")
	w("ProtectHostname=yes")
	w("# No realtime scheduling: a sweep must not starve the host.")
	w("RestrictRealtime=yes")
	w("# Nothing setuid/setgid is made.")
	w("RestrictSUIDSGID=yes")
	w("# The execution domain (personality) is never changed.")
	w("LockPersonality=yes")
	w("# Go never maps memory writable and executable; BPF is JITed by the kernel.")
	w("MemoryDenyWriteExecute=yes")
	w("# Netlink for sock_diag, INET for the metrics endpoint and webhooks, UNIX for")
	w("# the notify socket and the journal.")
	w("RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6")
	w("# Native system calls only (no 32-bit entry points).")
	w("SystemCallArchitectures=native")
	w("# System calls it never makes; refused with EPERM rather than a kill.")
	w("SystemCallFilter=~@clock @cpu-emulation @module @mount @obsolete @raw-io @reboot @swap")
	w("SystemCallErrorNumber=EPERM")
	w("# No device is opened (bpf(2) and netlink need none).")
	w("PrivateDevices=yes")
	w("# It makes and enters no namespace in the namespace it starts in. all_netns")
	w("# and netns enter others: add RestrictNamespaces=net in their drop-in.")
	w("RestrictNamespaces=yes")
	w("# Files it creates (a --log-file) are private: the log names every")
	w("# connection of the host.")
	w("UMask=0077")
	w("")
	w("# A backstop against a leak: the service holds 17-20 MiB; BPF maps are")
	w("# charged here too (128 B per tracked socket: 32 MiB for a full default map).")
	w("MemoryMax=%s", MemoryMax)
	w("")
	w("[Install]")
	w("# Started at boot with the other system services.")
	w("WantedBy=multi-user.target")
	return []byte(b.String())
}

// Directives parses a unit file into section -> key -> values, in order
// (a key may repeat). Comments and blank lines are skipped; no line
// continuations (Unit writes none).
func Directives(unit []byte) (map[string]map[string][]string, error) {
	out := map[string]map[string][]string{}
	var sec string
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[' && l[len(l)-1] == ']':
			sec = l[1 : len(l)-1]
			if out[sec] == nil {
				out[sec] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || sec == "" {
				return nil, fmt.Errorf("parse unit line %d: %q is not KEY=VALUE in a section", n, l)
			}
			k = strings.TrimSpace(k)
			out[sec][k] = append(out[sec][k], strings.TrimSpace(v))
		}
	}
	return out, sc.Err()
}
