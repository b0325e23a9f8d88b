package agent

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// gpuCollector reads every GPU through NVML: memory, utilization and
// temperature per device, and the processes the pods collector attributes.
type gpuCollector struct {
	gpus                      GPUReader
	total, used, free         *prometheus.Desc
	utilization, temperatureC *prometheus.Desc
}

func newGPUCollector(gpus GPUReader, constLabels prometheus.Labels) *gpuCollector {
	labels := []string{LabelGPU, LabelUUID, LabelModel}
	desc := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, constLabels) }
	return &gpuCollector{
		gpus:         gpus,
		total:        desc(MetricGPUMemoryTotal, "GPU memory (framebuffer) size."),
		used:         desc(MetricGPUMemoryUsed, "GPU memory in use, by every process and the driver's reservations."),
		free:         desc(MetricGPUMemoryFree, "GPU memory free."),
		utilization:  desc(MetricGPUUtilization, "Fraction of the last sample period (1/6 s to 1 s) in which a kernel ran on the GPU, 0 to 1."),
		temperatureC: desc(MetricGPUTemperature, "GPU die temperature."),
	}
}

func (c *gpuCollector) name() string { return "gpu" }

func (c *gpuCollector) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.total, c.used, c.free, c.utilization, c.temperatureC} {
		ch <- d
	}
}

// update reports what it could read: one failing GPU leaves the others in.
func (c *gpuCollector) update(ch chan<- prometheus.Metric, s *scrape) error {
	snap, err := c.gpus.Read()
	s.gpus = snap.GPUs
	for _, g := range snap.GPUs {
		lv := []string{strconv.Itoa(g.Index), g.UUID, g.Model}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
		}
		gauge(c.total, float64(g.Memory.Total))
		gauge(c.used, float64(g.Memory.Used))
		gauge(c.free, float64(g.Memory.Free))
		if g.Utilization != nil {
			gauge(c.utilization, float64(g.Utilization.Gpu)/100)
		}
		if g.TemperatureC != nil {
			gauge(c.temperatureC, float64(*g.TemperatureC))
		}
	}
	return err
}
