package arbiter

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLint(t *testing.T) {
	m := newMetrics()
	m.pressure.WithLabelValues("homelabai").Set(1)
	m.steps.WithLabelValues(StepPreempt, "done", "ai-dev/deployment/vllm-server").Inc()
	problems, err := testutil.GatherAndLint(m.registry)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
