package config

import (
	"fmt"

	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// Template is the configuration file with every key at its default, each
// commented, and an example rule (commented out): what `hck-bpf install`
// writes to /etc/hck-bpf/config.yaml.
func Template() []byte {
	d := Default()
	th := func(key string) string {
		for _, t := range Timeouts {
			if t.Key == key {
				v, _ := d.Thresholds.For(t.States[0])
				return policy.FormatThreshold(v)
			}
		}
		return ""
	}
	v := d.Values()
	return fmt.Appendf(nil, `# hck-bpf configuration: hck-bpf run --config FILE (and scan --config FILE).
# Every key is shown at its default. A flag given on the command line
# overrides the key it names (mode: --live / --dry-run). The service
# re-reads this file on SIGHUP (systemctl reload hck-bpf): a bad file
# keeps the running configuration; mode, map_size, netns, all_netns,
# log_*, verbose, metrics_addr and webhooks take effect on restart.
# An unknown key or a bad value is an error naming its line.
#
# Durations: seconds (60, 1.5) or Go durations (90s, 1m30s, 500ms).
# Lists: [a, b], one item a line ("- a"), or one string as the flag takes it ("22 3306").

# dry-run: say what would be destroyed; live: destroy (needs root).
# The installed service (hck-bpf install) runs as this says: it starts as a
# dry run; set live and restart it (systemctl restart hck-bpf) to destroy.
mode: %s

# How long a connection may stay in each closing state before it is hung.
close_wait_timeout: %s
fin_wait_timeout: %s   # FIN_WAIT1 and FIN_WAIT2
time_wait_timeout: %s
closing_timeout: %s
last_ack_timeout: %s

# Ports never destroyed, local or remote (set [] to destroy on 22 too).
exclude_ports: %s
# Only connections on these ports, local or remote ([]: every port).
include_ports: %s
# Process names (comm, as ps shows) never touched, on top of the protected ones.
exclude_processes: %s
# Cgroup globs (path.Match on the whole path, or a cgroup above it):
# never destroy connections of their processes...
exclude_cgroups: %s
# ...or, when not empty, only those of their processes.
include_cgroups: %s

# Destroy at most this many sockets per sweep; the rest wait (0: no cap).
max_kills: %s
# When a destroy fails, SIGTERM the socket's owners, SIGKILL after kill_grace.
kill_process: %s
kill_grace: %s

# Sockets the kernel tracker can hold when hck-bpf attaches it.
map_size: %s

# Network namespaces: names (ip netns, Docker, CNI), /proc/PID/ns/net paths
# or pids ([]: the one hck-bpf runs in); or every one with all_netns: true.
netns: %s
all_netns: %s

# Logs: text or json; also append to log_file ("": none); verbose: debug lines.
log_format: %s
log_file: %s
verbose: %s

# Prometheus /metrics and /healthz on HOST:PORT ("": off), e.g. "127.0.0.1:9477".
metrics_addr: %s
# Webhooks, [FORMAT=]URL with FORMAT slack, discord or json (detected from the host when left out).
webhooks: %s

# Rules give the connections they match their own thresholds and action.
# The FIRST rule that matches decides; a connection no rule matches gets the
# thresholds above. Matchers (all given must match; none: every connection):
#   ports      local or remote port
#   cidrs      remote address (10.0.0.0/8, fd00::/8, or one address)
#   processes  owner's process name (comm)
#   cgroups    owner's cgroup glob (as exclude_cgroups)
#   netns      namespace name glob (as hck-bpf names them: ip netns name,
#              pod:<uid>, container:<id>) or inode number
# Each rule may set any of the five *_timeout keys (the others inherit) and
# action: destroy (the default) or report (logged and counted, never destroyed).
# exclude_* and the protected processes win over every rule.
rules: []
#rules:
#  - name: web-fast
#    ports: [80, 443]
#    close_wait_timeout: 10
#  - name: db-report
#    cidrs: [10.20.0.0/16]
#    processes: [postgres]
#    action: report
`, v["mode"], th("close_wait_timeout"), th("fin_wait_timeout"), th("time_wait_timeout"), th("closing_timeout"), th("last_ack_timeout"),
		v["exclude_ports"], v["include_ports"], v["exclude_processes"], v["exclude_cgroups"], v["include_cgroups"],
		v["max_kills"], v["kill_process"], v["kill_grace"], v["map_size"], v["netns"], v["all_netns"],
		v["log_format"], v["log_file"], v["verbose"], v["metrics_addr"], v["webhooks"])
}
