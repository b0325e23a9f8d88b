package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// fakeGate answers with result and remembers what it was asked.
type fakeGate struct {
	result GateResult
	ready  bool
	pod    *corev1.Pod
	dryRun bool
}

func (g *fakeGate) Start(context.Context) error { return nil }

func (g *fakeGate) Ready() (bool, string) { return g.ready, "still listing" }

func (g *fakeGate) Admit(_ context.Context, pod *corev1.Pod, dryRun bool) GateResult {
	g.pod, g.dryRun = pod, dryRun
	return g.result
}

// hybridPod asks for its shares with gpu-shares: only the mutation adds
// the request. Its namespace is left to the request, as on a create.
func hybridPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "vllm-server-5d9c-", Annotations: map[string]string{workload.AnnotationProfiles: "nvidia", workload.AnnotationShares: "2"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai"}}},
	}
}

func postReview(t *testing.T, h *Handler, pod *corev1.Pod, dryRun bool) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, _ := json.Marshal(pod)
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "0b1c", Kind: podGVK(), Operation: admissionv1.Create, Namespace: "ai-dev", DryRun: ptr.To(dryRun),
			Object: runtime.RawExtension{Raw: raw},
		},
	})
	return admitRaw(t, h, body)
}

// admitRaw posts a review's body to h and returns the response in it.
func admitRaw(t *testing.T, h *Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body)))
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || out.Response == nil {
		t.Fatalf("HTTP %d %s: %v", rec.Code, rec.Body, err)
	}
	return out.Response
}

var vllmRef = workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}

func TestHandlerGate(t *testing.T) {
	refusal := "admission gate: preemptible deployment ai-dev/vllm-server may not start new pods: protected deployment media/plex is unhealthy"
	tests := []struct {
		name   string
		result GateResult
		dryRun bool
		// wantLog is in the log; the decision counter goes up by one.
		wantLog      string
		wantDecision string
		// wantJournal is the action handed to the gate's journal, "" for none.
		wantJournal string
	}{
		{name: "allowed: mutated", result: GateResult{Allowed: true}, wantDecision: gateAllowed},
		{
			name: "denied", result: GateResult{Message: refusal, Workload: vllmRef},
			wantLog: `level=INFO msg="admission gate denied pod" uid=0b1c namespace=ai-dev pod=vllm-server-5d9c-* workload="deployment ai-dev/vllm-server"`, wantDecision: gateDenied,
			wantJournal: journal.ActionDenied,
		},
		{
			name: "denied on a dry run: nothing journaled", result: GateResult{Message: refusal, Workload: vllmRef}, dryRun: true,
			wantLog: `msg="admission gate denied pod"`, wantDecision: gateDenied,
		},
		{
			name: "break-glass: allowed and logged", result: GateResult{Allowed: true, BreakGlass: "board demo", Message: refusal, Workload: vllmRef},
			wantLog:      `level=WARN msg="break-glass: admitted pod past the admission gate" uid=0b1c namespace=ai-dev pod=vllm-server-5d9c-* workload="deployment ai-dev/vllm-server" reason="board demo" overrode=`,
			wantDecision: gateBreakGlass,
			wantJournal:  journal.ActionBreakGlass,
		},
		{name: "dry run is passed on", result: GateResult{Allowed: true, BreakGlass: "board demo"}, dryRun: true, wantLog: "dryRun=true", wantDecision: gateBreakGlass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			h := NewHandler(inject.DefaultConfig("gpu-system"), NewMetrics(), slog.New(slog.NewTextHandler(&log, nil)))
			g := &fakeGate{result: tt.result, ready: true}
			h.SetGate(g)
			h.decisions = newGateJournal(nil, store.Ref{}, 0, h.metrics, h.log)
			resp := postReview(t, h, hybridPod(), tt.dryRun)
			if resp.Allowed != tt.result.Allowed {
				t.Fatalf("allowed = %v: %+v", resp.Allowed, resp.Result)
			}
			if resp.Allowed && len(resp.Patch) == 0 {
				t.Error("allowed without the mutation's patch")
			}
			if !resp.Allowed && (resp.Result.Code != 403 || resp.Result.Message != "gpuslice: "+refusal) {
				t.Errorf("denial %+v, want 403 gpuslice: %s", resp.Result, refusal)
			}
			// The gate sees the pod as it will be stored.
			q := g.pod.Spec.Containers[0].Resources.Requests[workload.SharedResource]
			if q.Value() != 2 || g.pod.Namespace != "ai-dev" || len(g.pod.Spec.Volumes) != 3 || g.dryRun != tt.dryRun {
				t.Errorf("gate saw requests %v, namespace %q, %d volumes, dry run %v", g.pod.Spec.Containers[0].Resources.Requests, g.pod.Namespace, len(g.pod.Spec.Volumes), g.dryRun)
			}
			if !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log lacks %s:\n%s", tt.wantLog, log.String())
			}
			m := h.metrics
			if got := testutil.ToFloat64(m.gateDecisions.WithLabelValues(tt.wantDecision)); got != 1 || testutil.CollectAndCount(m.gateDecisions) != 1 {
				t.Errorf("gate decisions %s = %v, want 1 and no other", tt.wantDecision, got)
			}
			if got := testutil.ToFloat64(m.denials.WithLabelValues("admission-gate")); (got == 1) == tt.result.Allowed {
				t.Errorf("denials{admission-gate} = %v", got)
			}
			var journaled []string
			for _, e := range h.decisions.pending.History {
				journaled = append(journaled, e.Action)
				if e.Workload != vllmRef || e.By != journal.ByGate || e.Message != refusal || e.Reason != tt.result.BreakGlass || e.At.IsZero() {
					t.Errorf("journal entry %+v, want the gate's decision on %s with its message and reason", e, vllmRef.Qualified())
				}
			}
			if want := strings.Fields(tt.wantJournal); !slices.Equal(journaled, want) {
				t.Errorf("journaled %v, want %v", journaled, want)
			}
		})
	}
}

// A pod the mutation denies never reaches the gate.
func TestHandlerGateAfterMutation(t *testing.T) {
	h := newTestHandler()
	g := &fakeGate{result: GateResult{Allowed: true}, ready: true}
	h.SetGate(g)
	p := hybridPod()
	p.Annotations[workload.AnnotationProfiles] = "amd"
	if resp := postReview(t, h, p, false); resp.Allowed || !strings.Contains(resp.Result.Message, "amd") {
		t.Errorf("response %+v, want the mutation's denial", resp.Result)
	}
	if g.pod != nil {
		t.Error("the gate was asked about a pod the mutation denied")
	}
}

func TestReadyzFailsWhileGateLists(t *testing.T) {
	h := newTestHandler()
	h.SetGate(&fakeGate{})
	s := &Server{Handler: h, Metrics: h.metrics}
	s.ready.Store(true)
	rec := httptest.NewRecorder()
	s.mux(true).ServeHTTP(rec, mustRequest(t, "/readyz"))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "still listing") {
		t.Errorf("readyz while the gate lists = %d %q", rec.Code, rec.Body.String())
	}
}
