package agent

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpuslice/gpuslice/pkg/gpu"
)

// GPUReader is where the exporter reads GPUs from: an NVMLSession.
type GPUReader interface {
	Read() (gpu.Snapshot, error)
	Status() (bool, *gpu.UnavailableError)
}

// collector is one part of a scrape, node_exporter style: it reads what it
// needs, writes its metrics, and its duration and success are reported.
// Collectors run in order on one scrape, so later ones use what earlier
// ones read (the pods collector attributes the processes the GPU
// collector listed), and NVML is read once per scrape.
type collector interface {
	name() string
	describe(ch chan<- *prometheus.Desc)
	update(ch chan<- prometheus.Metric, s *scrape) error
}

// scrape is what one Collect has read so far.
type scrape struct {
	gpus []gpu.GPU
}

// Exporter is the agent's prometheus.Collector: everything is read when
// Prometheus scrapes, nothing in between.
type Exporter struct {
	gpus       GPUReader
	log        *slog.Logger
	collectors []collector

	nvmlAvailable *prometheus.Desc
	duration      *prometheus.Desc
	success       *prometheus.Desc
}

// ExporterOptions configure NewExporter.
type ExporterOptions struct {
	Node string
	GPUs GPUReader
	// Pods maps processes to pods; nil leaves the pods collector out (the
	// benchmark's baseline).
	Pods     PodLookup
	ProcRoot string
	Log      *slog.Logger
}

// NewExporter builds the collector set for one node.
func NewExporter(o ExporterOptions) *Exporter {
	constLabels := prometheus.Labels{LabelNode: o.Node}
	e := &Exporter{
		gpus: o.GPUs,
		log:  o.Log,
		nvmlAvailable: prometheus.NewDesc(MetricNVMLAvailable,
			"Whether NVML is initialised (1) or not (0: no driver library or GPU; see the agent's log and /readyz for the reason).", nil, constLabels),
		duration: prometheus.NewDesc(MetricCollectorDuration,
			"Time the collector took during this scrape.", []string{LabelCollector}, constLabels),
		success: prometheus.NewDesc(MetricCollectorSuccess,
			"Whether the collector succeeded during this scrape (1) or not (0).", []string{LabelCollector}, constLabels),
	}
	e.collectors = []collector{newGPUCollector(o.GPUs, constLabels)}
	if o.Pods != nil {
		e.collectors = append(e.collectors, newPodsCollector(o.Pods, o.ProcRoot, o.Log, constLabels))
	}
	return e
}

func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.nvmlAvailable
	ch <- e.duration
	ch <- e.success
	for _, c := range e.collectors {
		c.describe(ch)
	}
}

func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	s := &scrape{}
	for _, c := range e.collectors {
		start := time.Now()
		err := c.update(ch, s)
		ch <- prometheus.MustNewConstMetric(e.duration, prometheus.GaugeValue, time.Since(start).Seconds(), c.name())
		ok := 1.0
		if err != nil {
			ok = 0
			e.log.Debug("collector failed", "collector", c.name(), "error", err.Error())
		}
		ch <- prometheus.MustNewConstMetric(e.success, prometheus.GaugeValue, ok, c.name())
	}
	// After the reads: a read that lost NVML shows as 0 in the same scrape.
	up, _ := e.gpus.Status()
	ch <- prometheus.MustNewConstMetric(e.nvmlAvailable, prometheus.GaugeValue, boolFloat(up))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
