package top

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/agent"
)

// agentMetrics is one agent's scrape, parsed.
type agentMetrics struct {
	node          string
	nvmlAvailable bool
	gpus          []GPUUsage
	containers    []containerSample
	unattributed  []Unattributed
}

type containerSample struct {
	namespace, pod, container, gpu string
	bytes                          int64
}

// parseMetrics reads an agent's /metrics (the Prometheus text format).
func parseMetrics(body []byte) (*agentMetrics, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing the agent's metrics: %w", err)
	}
	if families[agent.MetricNVMLAvailable] == nil {
		return nil, fmt.Errorf("no %s in the answer: is this a gpuslice agent?", agent.MetricNVMLAvailable)
	}
	am := &agentMetrics{}
	each(families, agent.MetricNVMLAvailable, func(l map[string]string, v float64) {
		am.node, am.nvmlAvailable = l[agent.LabelNode], v == 1
	})
	// A GPU is known by its total memory; the other gauges fill it in.
	byIndex := map[string]*GPUUsage{}
	each(families, agent.MetricGPUMemoryTotal, func(l map[string]string, v float64) {
		byIndex[l[agent.LabelGPU]] = &GPUUsage{Node: l[agent.LabelNode], Index: l[agent.LabelGPU], UUID: l[agent.LabelUUID], Model: l[agent.LabelModel], TotalBytes: int64(v)}
	})
	set := func(name string, apply func(g *GPUUsage, v float64)) {
		each(families, name, func(l map[string]string, v float64) {
			if g := byIndex[l[agent.LabelGPU]]; g != nil {
				apply(g, v)
			}
		})
	}
	set(agent.MetricGPUMemoryUsed, func(g *GPUUsage, v float64) { g.UsedBytes = int64(v) })
	set(agent.MetricGPUMemoryFree, func(g *GPUUsage, v float64) { g.FreeBytes = int64(v) })
	set(agent.MetricGPUUtilization, func(g *GPUUsage, v float64) { g.Utilization = &v })
	set(agent.MetricGPUTemperature, func(g *GPUUsage, v float64) { g.TemperatureCelsius = &v })
	for _, g := range byIndex {
		am.gpus = append(am.gpus, *g)
	}
	slices.SortFunc(am.gpus, func(a, b GPUUsage) int { return compareIndex(a.Index, b.Index) })
	each(families, agent.MetricPodGPUMemory, func(l map[string]string, v float64) {
		am.containers = append(am.containers, containerSample{
			namespace: l[agent.LabelNamespace], pod: l[agent.LabelPod], container: l[agent.LabelContainer], gpu: l[agent.LabelGPU], bytes: int64(v),
		})
	})
	each(families, agent.MetricUnattributedMemory, func(l map[string]string, v float64) {
		if v > 0 {
			am.unattributed = append(am.unattributed, Unattributed{Node: l[agent.LabelNode], GPU: l[agent.LabelGPU], Reason: l[agent.LabelReason], MemoryBytes: int64(v)})
		}
	})
	return am, nil
}

// CompareIndex orders GPU indexes numerically ("2" before "10"), as
// nvidia-smi lists them; pkg/signals sorts its GPUs the same way.
func CompareIndex(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	return x - y
}

// ParseAgentGPUs reads the GPUs out of an agent's /metrics text, sorted
// by index, with what the agent says of itself: its node and whether NVML
// is up (no GPUs are reported while it is down). pkg/signals reads GPU
// memory this way without the rest of top's report.
func ParseAgentGPUs(body []byte) ([]GPUUsage, AgentStatus, error) {
	am, err := parseMetrics(body)
	if err != nil {
		return nil, AgentStatus{}, err
	}
	return am.gpus, AgentStatus{Node: am.node, NVMLAvailable: am.nvmlAvailable}, nil
}

// compareIndex is CompareIndex under the name the rest of the package uses.
func compareIndex(a, b string) int { return CompareIndex(a, b) }

// each calls f with the labels and value of every sample of a gauge family.
func each(families map[string]*dto.MetricFamily, name string, f func(labels map[string]string, v float64)) {
	for _, m := range families[name].GetMetric() {
		labels := make(map[string]string, len(m.GetLabel()))
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		f(labels, m.GetGauge().GetValue())
	}
}

// ScrapeThroughProxy gets an agent pod's /metrics through the API
// server's pods proxy subresource, so top (and pkg/signals) needs no
// network path to the node, only `get pods/proxy` in the agent's namespace.
func ScrapeThroughProxy(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, port int) ([]byte, error) {
	body, err := cs.CoreV1().Pods(pod.Namespace).ProxyGet("", pod.Name, strconv.Itoa(port), "metrics", nil).DoRaw(ctx)
	if err != nil {
		return nil, proxyErr(pod, port, err, body)
	}
	return body, nil
}

// ReadyzThroughProxy fetches the agent's /readyz text, which says why
// NVML is unavailable; it answers 503 then, so the body comes with an error.
func ReadyzThroughProxy(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, port int) string {
	body, _ := cs.CoreV1().Pods(pod.Namespace).ProxyGet("", pod.Name, strconv.Itoa(port), "readyz", nil).DoRaw(ctx)
	return string(bytes.TrimSpace(body))
}

// scrapeThroughProxy and readyzThroughProxy are the exported functions
// under the names the rest of the package uses.
func scrapeThroughProxy(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, port int) ([]byte, error) {
	return ScrapeThroughProxy(ctx, cs, pod, port)
}

func readyzThroughProxy(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, port int) string {
	return ReadyzThroughProxy(ctx, cs, pod, port)
}

// proxyErr explains a failed proxied scrape. The API server's own answer
// (a Status, or the agent's text) is in body: client-go's error for a
// proxied request does not carry it.
func proxyErr(pod *corev1.Pod, port int, err error, body []byte) error {
	where := fmt.Sprintf("agent pod %s/%s on node %s (port %d, through the API server's pods proxy)", pod.Namespace, pod.Name, pod.Spec.NodeName, port)
	if answer := statusMessage(body); answer != "" {
		err = fmt.Errorf("%w: %s", err, answer)
	}
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("scraping %s is forbidden: %w; grant get on pods/proxy in namespace %s", where, err, pod.Namespace)
	case apierrors.IsBadRequest(err) && strings.Contains(err.Error(), "address not allowed"):
		return fmt.Errorf("scraping %s: the API server does not proxy to pod IP %q (loopback or link-local): %w; use --agent-url", where, pod.Status.PodIP, err)
	}
	return fmt.Errorf("scraping %s: %w; check that the agent runs (kubectl -n %s logs %s) and listens on --agent-port", where, err, pod.Namespace, pod.Name)
}

// readyzURL fetches an agent's /readyz text directly.
func readyzURL(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(bytes.TrimSpace(body))
}

// statusMessage is the message of a metav1.Status body, else the body
// itself, shortened.
func statusMessage(body []byte) string {
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return st.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// scrapeURL gets an agent's metrics directly (--agent-url), for a
// port-forward or a cluster whose API server cannot reach pod IPs.
func scrapeURL(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("agent URL %q: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping agent at %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("reading agent metrics from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping agent at %s: HTTP %d: %s", url, resp.StatusCode, bytes.TrimSpace(body))
	}
	return body, nil
}
