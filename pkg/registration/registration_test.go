package registration

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestBuild(t *testing.T) {
	tests := []struct {
		name         string
		opts         Options
		wantService  bool
		wantExcluded []string
	}{
		{name: "in cluster", opts: Options{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system"}, wantService: true, wantExcluded: []string{"gpu-system", "kube-system"}},
		{name: "other namespace", opts: Options{ServiceName: "w", ServiceNamespace: "gpuslice"}, wantService: true, wantExcluded: []string{"gpuslice", "kube-system"}},
		{name: "URL", opts: Options{URL: "https://127.0.0.1:8443/mutate"}, wantExcluded: []string{"gpu-system", "kube-system"}},
		{name: "configured exclusions", opts: Options{URL: "https://x/mutate", ExcludedNamespaces: []string{"kube-system", "media", "kube-system", ""}}, wantExcluded: []string{"kube-system", "media"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Build(tt.opts)
			if m.Name != DefaultName || len(m.Webhooks) != 2 {
				t.Fatalf("name %q, %d webhooks", m.Name, len(m.Webhooks))
			}
			w := m.Webhooks[0]
			if *w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
				*w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || *w.TimeoutSeconds != DefaultTimeoutSecond {
				t.Errorf("policy: %v %v %v %v", *w.FailurePolicy, *w.SideEffects, *w.ReinvocationPolicy, *w.TimeoutSeconds)
			}
			if got := w.ClientConfig.Service != nil; got != tt.wantService {
				t.Errorf("service reference = %v, want %v", got, tt.wantService)
			}
			if tt.wantService && (*w.ClientConfig.Service.Path != "/mutate" || *w.ClientConfig.Service.Port != 443) {
				t.Errorf("service path/port: %v %v", *w.ClientConfig.Service.Path, *w.ClientConfig.Service.Port)
			}
			if len(w.Rules) != 1 || len(w.Rules[0].Operations) != 1 || w.Rules[0].Operations[0] != admissionregistrationv1.Create || w.Rules[0].Resources[0] != "pods" {
				t.Errorf("rules: %+v", w.Rules)
			}
			got := w.NamespaceSelector.MatchExpressions[0].Values
			if len(got) != len(tt.wantExcluded) {
				t.Fatalf("excluded %v, want %v", got, tt.wantExcluded)
			}
			for i := range got {
				if got[i] != tt.wantExcluded[i] {
					t.Errorf("excluded %v, want %v", got, tt.wantExcluded)
				}
			}
			if len(w.MatchConditions) != 1 || w.MatchConditions[0].Expression != MatchExpression() {
				t.Errorf("matchConditions: %+v", w.MatchConditions)
			}
		})
	}
}

// Namespaces whose Pod Security level forbids hostPath go to their own
// path, and every other namespace to /mutate: exactly one webhook each.
func TestBuildPodSecurityRoute(t *testing.T) {
	for _, o := range []Options{
		{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system"},
		{URL: "https://127.0.0.1:8443/mutate"},
	} {
		m := Build(o)
		if len(m.Webhooks) != 2 || m.Webhooks[0].Name != DefaultWebhookName || m.Webhooks[1].Name != PodSecurityWebhookName {
			t.Fatalf("webhooks: %+v", m.Webhooks)
		}
		target := func(w admissionregistrationv1.MutatingWebhook) string {
			if w.ClientConfig.URL != nil {
				return *w.ClientConfig.URL
			}
			return *w.ClientConfig.Service.Path
		}
		if got := target(m.Webhooks[0]); !strings.HasSuffix(got, MutatePath) {
			t.Errorf("first webhook goes to %s, want %s", got, MutatePath)
		}
		if got := target(m.Webhooks[1]); !strings.HasSuffix(got, HostPathForbiddenPath) {
			t.Errorf("second webhook goes to %s, want %s", got, HostPathForbiddenPath)
		}
		for i, want := range []metav1.LabelSelectorOperator{metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpIn} {
			exprs := m.Webhooks[i].NamespaceSelector.MatchExpressions
			if len(exprs) != 2 || exprs[1].Key != "pod-security.kubernetes.io/enforce" || exprs[1].Operator != want ||
				strings.Join(exprs[1].Values, ",") != "baseline,restricted" {
				t.Errorf("webhook %d namespace selector %+v, want %s baseline,restricted", i, exprs, want)
			}
		}
	}
}

// With the admission gate, unannotated pods requesting a GPU resource are
// sent too, and the gate's Events are declared.
func TestBuildAdmissionGate(t *testing.T) {
	w := Build(Options{ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system", AdmissionGate: true}).Webhooks[0]
	if *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun {
		t.Errorf("sideEffects = %v, want NoneOnDryRun: the gate records break-glass Events", *w.SideEffects)
	}
	if len(w.MatchConditions) != 1 || w.MatchConditions[0].Expression != GatedMatchExpression() {
		t.Errorf("matchConditions: %+v", w.MatchConditions)
	}
	if *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("failurePolicy = %v", *w.FailurePolicy)
	}
}

func TestGatedMatchExpression(t *testing.T) {
	got := GatedMatchExpression()
	for _, want := range []string{
		"(" + MatchExpression() + ") || ",
		`object.spec.containers.exists(c, has(c.resources) && ((has(c.resources.requests) && c.resources.requests.exists(r, r.startsWith("nvidia.com/")))`,
		`(has(c.resources.limits) && c.resources.limits.exists(r, r.startsWith("nvidia.com/")))`,
		`(has(object.spec.initContainers) && object.spec.initContainers.exists(`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%s\nlacks %s", got, want)
		}
	}
}

func TestMatchExpression(t *testing.T) {
	want := `has(object.metadata.annotations) && ("gpu-directories" in object.metadata.annotations || "gpu-shares" in object.metadata.annotations)`
	if got := MatchExpression(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
