package signals

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Prometheus reads the DCGM memory fields from a Prometheus server that
// scrapes dcgm-exporter, with two instant queries (/api/v1/query, one a
// field, through client_golang's API client). The figures are as old as the last scrape.
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

// query runs an instant query for one metric, through client_golang's
// Prometheus API client, and returns its series.
func (p *Prometheus) query(ctx context.Context, field string) ([]sample, error) {
	if p.URL == "" {
		return nil, errors.New("no Prometheus URL: give one like http://prometheus.monitoring:9090")
	}
	client, err := promapi.NewClient(promapi.Config{Address: p.URL, Client: boundedClient(p.HTTP)})
	if err != nil {
		return nil, fmt.Errorf("the URL %q: %w; give one like http://prometheus.monitoring:9090", p.URL, err)
	}
	q := p.selector(field)
	value, _, err := promv1.NewAPI(client).Query(ctx, q, time.Time{})
	if err != nil {
		return nil, queryErr(err, q, p.URL)
	}
	return vectorSamples(value, field, q)
}

// boundedClient is c (or the 5 s default) reading at most maxBody of an
// answer, as every other source here does.
func boundedClient(c *http.Client) *http.Client {
	bounded := *httpClient(c)
	bounded.Transport = boundedTransport{cmp.Or[http.RoundTripper](bounded.Transport, http.DefaultTransport)}
	return &bounded
}

type boundedTransport struct{ next http.RoundTripper }

func (t boundedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, maxBody), resp.Body}
	}
	return resp, err
}

// queryErr turns the client's errors into what to check. Prometheus
// explains its errors in the body of a 4xx or 5xx; anything else at the
// URL (a UI behind a proxy, another server) answers otherwise.
func queryErr(err error, q, base string) error {
	var apiErr *promv1.Error
	var urlErr *url.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Type == promv1.ErrBadData:
		return fmt.Errorf("the server refused the query %s (bad_data: %s): check the Prometheus selector", q, apiErr.Msg)
	case errors.As(err, &apiErr) && apiErr.Type == promv1.ErrBadResponse:
		return fmt.Errorf("the answer is not the Prometheus API's JSON (%s): is %s a Prometheus server?", apiErr.Msg, base)
	case errors.As(err, &apiErr) && (apiErr.Type == promv1.ErrServer || apiErr.Type == promv1.ErrClient):
		var body struct {
			Status    string `json:"status"`
			ErrorType string `json:"errorType"`
			Error     string `json:"error"`
		}
		if json.Unmarshal([]byte(apiErr.Detail), &body) == nil && body.Status == "error" {
			return fmt.Errorf("the server answered %s, %s: %s", apiErr.Msg, body.ErrorType, body.Error)
		}
		return fmt.Errorf("%s: %s; is %s the Prometheus server (not its UI behind a proxy)?", apiErr.Msg, snippet([]byte(apiErr.Detail)), base)
	case errors.As(err, &apiErr):
		return fmt.Errorf("the server answered %s: %s", apiErr.Type, apiErr.Msg)
	case errors.As(err, &urlErr):
		return fmt.Errorf("%w; check the URL and that Prometheus runs", err)
	}
	// The envelope decoded but its result did not: a value that is not
	// a number, a result that is not one.
	return fmt.Errorf("the answer's result does not decode (%w): is %s a Prometheus server?", err, base)
}

// vectorSamples reads an instant query's result for field, queried as q.
func vectorSamples(value model.Value, field, q string) ([]sample, error) {
	vector, ok := value.(model.Vector)
	switch {
	case !ok:
		return nil, fmt.Errorf("result type %q, want vector", value.Type())
	case len(vector) == 0:
		return nil, fmt.Errorf("no %s series: is dcgm-exporter scraped by this Prometheus, and does the selector match its job?", q)
	}
	out := make([]sample, 0, len(vector))
	for _, v := range vector {
		labels := make(map[string]string, len(v.Metric))
		for k, l := range v.Metric {
			labels[string(k)] = string(l)
		}
		out = append(out, sample{field: field, labels: labels, value: float64(v.Value)})
	}
	return out, nil
}
