package chart

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// promRule is the part of a PrometheusRule the test reads.
type promRule struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// TestChartPrometheusRule: off by default; on, every alert parses as
// PromQL (Prometheus's own parser, as promtool does), reads only metrics
// gpuslice exports (or Prometheus's up), and says how bad and what to do;
// the arbiter's and the agent's alerts come with them.
func TestChartPrometheusRule(t *testing.T) {
	if got := render(t, Options{}).OfKind("PrometheusRule"); len(got) != 0 {
		t.Errorf("%d PrometheusRules by default, want none", len(got))
	}
	exported := codeMetrics(t, testRoot(t))
	exported["up"] = true
	tests := []struct {
		name, values string
		want         []string
	}{
		{"webhook and agent", `prometheusRule: {enabled: true}`,
			[]string{"GpusliceGPUMemoryLow", "GpusliceWebhookCertificateExpiring", "GpusliceWebhookDown"}},
		{"with the arbiter", `{prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}}, arbiter: {enabled: true}}`,
			[]string{"GpusliceArbiterNotLeading", "GpusliceFrequentPreemptions", "GpusliceGPUMemoryLow", "GpusliceWebhookCertificateExpiring", "GpusliceWebhookDown"}},
		{"with the admission gate", `{prometheusRule: {enabled: true}, webhook: {admissionGate: true}}`,
			[]string{"GpusliceGPUMemoryLow", "GpusliceGateJournalNotWritten", "GpusliceWebhookCertificateExpiring", "GpusliceWebhookDown"}},
		{"without the agent", `{prometheusRule: {enabled: true}, agent: {enabled: false}}`,
			[]string{"GpusliceWebhookCertificateExpiring", "GpusliceWebhookDown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, Options{Values: values(t, tt.values)})
			var pr promRule
			convert(t, r.Find("PrometheusRule", "gpuslice"), &pr)
			var alerts []string
			for _, g := range pr.Spec.Groups {
				for _, rule := range g.Rules {
					alerts = append(alerts, rule.Alert)
					expr, err := parser.ParseExpr(rule.Expr)
					if err != nil {
						t.Errorf("%s: %q does not parse: %v", rule.Alert, rule.Expr, err)
						continue
					}
					parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
						if vs, ok := n.(*parser.VectorSelector); ok && !exported[vs.Name] {
							t.Errorf("%s reads %s, which nothing exports", rule.Alert, vs.Name)
						}
						return nil
					})
					if sev := rule.Labels["severity"]; sev != "critical" && sev != "warning" {
						t.Errorf("%s: severity %q", rule.Alert, sev)
					}
					if rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
						t.Errorf("%s: no summary or description", rule.Alert)
					}
					if strings.Contains(rule.Expr, "{{") {
						t.Errorf("%s: template left in %q", rule.Alert, rule.Expr)
					}
				}
			}
			slices.Sort(alerts)
			if !slices.Equal(alerts, tt.want) {
				t.Errorf("alerts %v, want %v", alerts, tt.want)
			}
		})
	}
}
