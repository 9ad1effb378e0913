package top

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/policy"
)

// TestParseServiceArgs: a service's command line as run's flags read it:
// --name value and --name=value, other flags (with their values) skipped,
// the mode's long and short flags, lists adding up.
func TestParseServiceArgs(t *testing.T) {
	for _, tc := range []struct {
		line string
		want serviceArgs
	}{
		{"hck-bpf run", serviceArgs{given: map[string][]string{}}},
		{"hck-bpf --pin-dir /sys/fs/bpf/x run --config /etc/hck-bpf/config.yaml", serviceArgs{given: map[string][]string{}, config: "/etc/hck-bpf/config.yaml"}},
		{"hck-bpf run -l --config=c.yaml --close-wait-timeout 30 --exclude-ports 22 --exclude-ports=3306 --netns blue",
			serviceArgs{given: map[string][]string{"close-wait-timeout": {"30"}, "exclude-ports": {"22", "3306"}}, config: "c.yaml", mode: "live"}},
		{"hck-bpf run --dry-run --fin-wait-timeout=5 -- --live", serviceArgs{given: map[string][]string{"fin-wait-timeout": {"5"}}, mode: "dry-run"}},
		{"hck-bpf run -n --config", serviceArgs{given: map[string][]string{}, mode: "dry-run"}},
	} {
		if got := parseServiceArgs(strings.Fields(tc.line)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

// TestOverlay: the flags given override what the policy had; the last
// threshold wins; a bad value names its flag.
func TestOverlay(t *testing.T) {
	p := policy.Default()
	p.ExcludePorts = []uint16{80}
	err := Overlay(&p, map[string][]string{"close-wait-timeout": {"10", "20"}, "fin-wait-timeout": {"90s"}, "exclude-ports": {"22", "3306"}})
	if err != nil {
		t.Fatal(err)
	}
	cw, _ := p.Thresholds.For(conn.CloseWait)
	fw1, _ := p.Thresholds.For(conn.FinWait1)
	fw2, _ := p.Thresholds.For(conn.FinWait2)
	if cw != 20*time.Second || fw1 != 90*time.Second || fw2 != 90*time.Second || !reflect.DeepEqual(p.ExcludePorts, []uint16{22, 3306}) {
		t.Errorf("CLOSE_WAIT %s FIN_WAIT1 %s FIN_WAIT2 %s exclude %v", cw, fw1, fw2, p.ExcludePorts)
	}
	if err := Overlay(&p, map[string][]string{"include-ports": {"99999"}}); err == nil || !strings.HasPrefix(err.Error(), "--include-ports: ") {
		t.Errorf("bad port: %v", err)
	}
}
