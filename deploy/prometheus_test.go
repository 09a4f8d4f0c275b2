package deploy

import (
	"os/exec"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// TestPrometheusConfigAndRules runs promtool over the scrape config, the
// alerting rules and their unit tests, which fire and do not fire each alert
// on synthetic series.
func TestPrometheusConfigAndRules(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", "prometheus/prometheus.yml"},
		{"check", "rules", "prometheus/rules/cairn.rules.yml"},
		{"test", "rules", "prometheus/tests/cairn.rules.test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
