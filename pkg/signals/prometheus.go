package signals

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Prometheus reads the DCGM memory fields from a Prometheus server that
// scrapes dcgm-exporter, with two instant queries (GET /api/v1/query,
// one a field). The figures are as old as the last scrape.
//
// A GPU that lacks one of the fields is left out and named in the
// returned error, with the GPUs that have both returned beside it.
type Prometheus struct {
	URL  string       // the server's base URL, e.g. http://prometheus.monitoring:9090
	HTTP *http.Client // nil: a client with a 5 s timeout
	// NodeLabel is the label naming the node; "" means "Hostname"
	// (dcgm-exporter's own). Set it when a relabelling rule puts the node
	// elsewhere, e.g. "kubernetes_node" or "node".
	NodeLabel string
	// Selector is the label matchers that pick the exporter's series, as
	// PromQL writes them inside braces; "" means DefaultPrometheusSelector.
	// Any series with a DCGM name is otherwise believed: another job
	// exporting DCGM_FI_DEV_FB_FREE 0 would make every GPU look full.
	Selector string
}

// DefaultPrometheusSelector matches the jobs dcgm-exporter's Helm chart
// and the GPU Operator create (dcgm-exporter, nvidia-dcgm-exporter, and
// RELEASE-dcgm-exporter). On a shared cluster, name the exact job.
const DefaultPrometheusSelector = `job=~".*dcgm-exporter"`

// selector is the series selector for field.
func (p *Prometheus) selector(field string) string {
	return field + "{" + cmp.Or(p.Selector, DefaultPrometheusSelector) + "}"
}

// Name is the server, for logs.
func (p *Prometheus) Name() string { return "prometheus " + p.URL }

// GPUMemory queries both fields; see Prometheus for partial results.
func (p *Prometheus) GPUMemory(ctx context.Context) ([]GPUMemory, error) {
	var samples []sample
	for _, field := range []string{fieldFBUsed, fieldFBFree} {
		s, err := p.query(ctx, field)
		if err != nil {
			return nil, fmt.Errorf("querying Prometheus at %s for %s: %w", p.URL, field, err)
		}
		samples = append(samples, s...)
	}
	gpus, err := memoryFromSamples(samples, p.nodeOf)
	if err != nil {
		err = fmt.Errorf("reading GPU memory from Prometheus at %s: %w", p.URL, err)
	}
	return finish(gpus), err
}

// nodeOf names the node of a series by NodeLabel.
func (p *Prometheus) nodeOf(labels map[string]string) (string, error) {
	label := nodeLabel(p.NodeLabel)
	if n := labels[label]; n != "" {
		return n, nil
	}
	return "", fmt.Errorf("no %q label names the node: set the node label option to the label that does (kubernetes_node or node where a relabelling rule sets one)", label)
}

// promResponse is the envelope of every Prometheus HTTP API answer.
type promResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"` // [unix seconds, "value"]
		} `json:"result"`
	} `json:"data"`
}

// query runs an instant query for one metric and returns its series.
func (p *Prometheus) query(ctx context.Context, field string) ([]sample, error) {
	if p.URL == "" {
		return nil, errors.New("no Prometheus URL: give one like http://prometheus.monitoring:9090")
	}
	q := p.selector(field)
	u := strings.TrimRight(p.URL, "/") + "/api/v1/query?" + url.Values{"query": {q}}.Encode()
	code, body, err := get(ctx, p.HTTP, u, "application/json")
	if err != nil {
		return nil, fmt.Errorf("%w; check the URL and that Prometheus runs", err)
	}
	return parseVector(code, body, field, q, p.URL)
}

// parseVector reads an instant query's answer (HTTP status code, body) for
// field, queried as q from the server at base. A series whose value does
// not parse carries the error in its sample.
func parseVector(code int, body []byte, field, q, base string) ([]sample, error) {
	var r promResponse
	if err := json.Unmarshal(body, &r); err != nil {
		if code != http.StatusOK {
			return nil, fmt.Errorf("HTTP %d: %s; is %s the Prometheus server (not its UI behind a proxy)?", code, snippet(body), base)
		}
		return nil, fmt.Errorf("the answer is not the Prometheus API's JSON (%w): is %s a Prometheus server?", err, base)
	}
	switch {
	case r.Status == "error" && r.ErrorType == "bad_data":
		return nil, fmt.Errorf("the server refused the query %s (HTTP %d, bad_data: %s): check the Prometheus selector", q, code, r.Error)
	case r.Status == "error":
		return nil, fmt.Errorf("the server answered HTTP %d, %s: %s", code, r.ErrorType, r.Error)
	case code != http.StatusOK || r.Status != "success":
		return nil, fmt.Errorf("HTTP %d, status %q: %s", code, r.Status, snippet(body))
	case r.Data.ResultType != "vector":
		return nil, fmt.Errorf("result type %q, want vector", r.Data.ResultType)
	case len(r.Data.Result) == 0:
		return nil, fmt.Errorf("no %s series: is dcgm-exporter scraped by this Prometheus, and does the selector match its job?", q)
	}
	out := make([]sample, 0, len(r.Data.Result))
	for _, res := range r.Data.Result {
		s := sample{field: field, labels: res.Metric}
		// A bad value costs its own series (and node), not the answer.
		if text, ok := res.Value[1].(string); !ok {
			s.err = fmt.Errorf("%s: value %v is not a string as the API writes it", s.describe(), res.Value[1])
		} else if s.value, s.err = strconv.ParseFloat(text, 64); s.err != nil {
			s.err = fmt.Errorf("%s: value %q is not a number", s.describe(), text)
		}
		out = append(out, s)
	}
	return out, nil
}
