package arbiter

import (
	"github.com/gpuslice/gpuslice/internal/serving"
	"github.com/gpuslice/gpuslice/pkg/workload"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the arbiter's Prometheus metrics.
type metrics struct {
	registry      *prometheus.Registry
	leader        prometheus.Gauge
	rounds        prometheus.Counter
	roundDuration prometheus.Histogram
	steps         *prometheus.CounterVec
	pressure      *prometheus.GaugeVec
	released      *prometheus.GaugeVec
	signalErrors  *prometheus.CounterVec
	invalid       prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		registry: serving.NewRegistry(),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gpuslice_arbiter_leader",
			Help: "1 while this replica holds the leader lease and acts, 0 on standby.",
		}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gpuslice_arbiter_rounds_total",
			Help: "Rounds run: signals sampled, the cluster read and a plan made.",
		}),
		roundDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gpuslice_arbiter_round_duration_seconds",
			Help:    "Time of one round, from sampling the signals to the last write.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_arbiter_steps_total",
			Help: "Steps taken, by kind (preempt, restore), result (done, unchanged, error, dry_run) and workload (NAMESPACE/KIND/NAME; only workloads with an arbiter policy).",
		}, []string{"kind", "result", "workload"}),
		pressure: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gpuslice_arbiter_node_pressure",
			Help: "1 while a GPU node is under pressure (low memory, or a protected workload active or unhealthy).",
		}, []string{"node"}),
		released: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gpuslice_arbiter_preempted_workloads",
			Help: "Workloads the arbiter holds preempted, by the node they were preempted for.",
		}, []string{"node"}),
		signalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpuslice_arbiter_signal_errors_total",
			Help: "Failed samples of a signal source, by source.",
		}, []string{"source"}),
		invalid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gpuslice_arbiter_invalid_policies",
			Help: "Workloads skipped because their gpuslice.io annotations do not parse.",
		}),
	}
	m.registry.MustRegister(m.leader, m.rounds, m.roundDuration, m.steps, m.pressure, m.released, m.signalErrors, m.invalid,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// workloadLabel is a step's workload label: "ai-dev/deployment/vllm-server".
// Only workloads with an arbiter policy take steps, which bounds its values.
func workloadLabel(ref workload.Ref) string { return ref.Namespace + "/" + ref.String() }
