package metrics

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hck-bpf/hck-bpf/internal/conn"
	"github.com/hck-bpf/hck-bpf/internal/sweep"
)

// alertsDir holds the example alerting rules the README points to.
var alertsDir = filepath.Join("..", "..", "deploy", "prometheus")

// TestAlertsNameServedMetrics: every hck_ metric the example alerts use is
// one the service serves: a metric renamed here breaks this test, not a
// fleet's alerting.
func TestAlertsNameServedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(alertsDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := New(&fakeTracker{read: true}, "dev")
	m.Swept(&sweep.Report{Items: []sweep.Item{item(conn.CloseWait, sweep.Destroyed, time.Minute, "", nil)}})
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, mf := range mfs {
		served[mf.GetName()] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			served[mf.GetName()+suffix] = true
		}
	}
	used := regexp.MustCompile(`\bhck_[a-z0-9_]+`).FindAllString(string(raw), -1)
	if len(used) < 6 {
		t.Fatalf("alerts.yaml names %d hck_ metrics: %v", len(used), used)
	}
	for _, name := range used {
		if !served[name] {
			t.Errorf("alerts.yaml uses %s, which the service does not serve", name)
		}
	}
}

// TestPromtoolRules: the example rules pass `promtool check rules`, and
// each alert fires on series shaped as the service serves them
// (alerts_test.yaml, `promtool test rules`).
func TestPromtoolRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("needs promtool (apt-get install prometheus)")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = alertsDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
