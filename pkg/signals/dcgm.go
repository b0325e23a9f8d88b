package signals

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// DCGMExporter scrapes dcgm-exporter's /metrics (Prometheus exposition
// text) on each target and reads DCGM_FI_DEV_FB_USED and _FREE.
//
// GPUMemory scrapes the targets in parallel. When some fail (refused,
// an HTTP error, text that is not dcgm-exporter's, a GPU lacking a field),
// it returns the GPUs of the others and a non-nil error naming each
// failed URL: act on the GPUs returned, and report the error.
type DCGMExporter struct {
	Targets []Target     // one per exporter (usually one per node)
	HTTP    *http.Client // nil: a client with a 5 s timeout
	// NodeLabel is the label naming the node; "" means "Hostname"
	// (dcgm-exporter's own). A Target's Node overrides it.
	NodeLabel string
}

// Name lists the exporters, for logs.
func (d *DCGMExporter) Name() string {
	urls := make([]string, len(d.Targets))
	for i, t := range d.Targets {
		urls[i] = t.URL
	}
	return "dcgm-exporter " + strings.Join(urls, ", ")
}

// GPUMemory scrapes every target; see DCGMExporter for partial failures.
func (d *DCGMExporter) GPUMemory(ctx context.Context) ([]GPUMemory, error) {
	if len(d.Targets) == 0 {
		return nil, errors.New("no dcgm-exporter targets: give at least one URL or NODE=URL")
	}
	return gather(len(d.Targets), func(i int) ([]GPUMemory, error) {
		t := d.Targets[i]
		gpus, err := d.scrape(ctx, t)
		if err != nil {
			err = fmt.Errorf("scraping dcgm-exporter %s: %w", t.URL, err)
		}
		return gpus, err
	})
}

func (d *DCGMExporter) scrape(ctx context.Context, t Target) ([]GPUMemory, error) {
	code, body, err := get(ctx, d.HTTP, t.URL, "text/plain")
	if err != nil {
		return nil, fmt.Errorf("%w; check that dcgm-exporter runs there and listens on that port (default 9400)", err)
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s; check dcgm-exporter's log on that node", code, snippet(body))
	}
	return parseDCGM(body, t.Node, nodeLabel(d.NodeLabel))
}

// parseDCGM reads dcgm-exporter's exposition text. node, when set, is the
// node of every series; else each series' nodeLabel names it.
func parseDCGM(body []byte, node, nodeLabel string) ([]GPUMemory, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("not Prometheus exposition text (%w): is the URL dcgm-exporter's /metrics?", err)
	}
	var samples []sample
	for _, field := range []string{fieldFBUsed, fieldFBFree} {
		for _, m := range families[field].GetMetric() {
			samples = append(samples, sample{field: field, labels: labelMap(m), value: metricValue(m)})
		}
	}
	return memoryFromSamples(samples, func(labels map[string]string) (string, error) {
		if node != "" {
			return node, nil
		}
		if n := labels[nodeLabel]; n != "" {
			return n, nil
		}
		return "", fmt.Errorf("no %q label names the node: give the target as NODE=URL, or set the node label option to the label that does", nodeLabel)
	})
}

func nodeLabel(l string) string {
	if l == "" {
		return DefaultNodeLabel
	}
	return l
}

func labelMap(m *dto.Metric) map[string]string {
	labels := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	return labels
}

// metricValue reads a gauge, or an untyped sample (a family without a
// TYPE line), or a counter, as a collectors CSV may declare any of them;
// anything else is NaN, which mibToBytes refuses.
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return math.NaN()
}
