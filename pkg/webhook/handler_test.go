package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/pkg/inject"
)

func newTestHandler() *Handler {
	return NewHandler(inject.DefaultConfig("gpu-system"), NewMetrics(), slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func plexPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plex", Namespace: "media", Annotations: map[string]string{"gpu-directories": "nvidia"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "plex", Image: "plexinc/pms-docker"}}},
	}
}

// review builds an AdmissionReview the way the API server sends it.
func review(op admissionv1.Operation, kind metav1.GroupVersionKind, obj any) []byte {
	raw, _ := json.Marshal(obj)
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "0b1c", Kind: kind, Operation: op, Namespace: "media",
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object:   runtime.RawExtension{Raw: raw},
		},
	}
	b, _ := json.Marshal(r)
	return b
}

func TestHandler(t *testing.T) {
	podGVK := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	noObject := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &admissionv1.AdmissionRequest{UID: "0b1c", Kind: podGVK, Operation: admissionv1.Create},
	}
	noObjectBody, _ := json.Marshal(noObject)
	unknown := plexPod()
	unknown.Annotations["gpu-directories"] = "amd"

	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		wantStatus  int
		wantAllowed bool
		wantPatch   bool
		wantMessage string // in the HTTP body or the denial
	}{
		{name: "seed Plex pod is mutated", body: review(admissionv1.Create, podGVK, plexPod()), wantStatus: 200, wantAllowed: true, wantPatch: true},
		{name: "unknown profile is denied", body: review(admissionv1.Create, podGVK, unknown), wantStatus: 200, wantMessage: "amd"},
		{name: "update passes untouched", body: review(admissionv1.Update, podGVK, plexPod()), wantStatus: 200, wantAllowed: true},
		{name: "other kinds pass untouched", body: review(admissionv1.Create, metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, map[string]string{}), wantStatus: 200, wantAllowed: true},
		{name: "missing object is denied", body: noObjectBody, wantStatus: 200, wantMessage: "no pod object"},
		{name: "object that is not a pod is denied", body: review(admissionv1.Create, podGVK, "not a pod"), wantStatus: 200, wantMessage: "does not decode"},
		{name: "malformed JSON", body: []byte(`{"apiVersion":`), wantStatus: 400, wantMessage: "not an AdmissionReview"},
		{name: "wrong version", body: bytes.Replace(review(admissionv1.Create, podGVK, plexPod()), []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1), wantStatus: 400, wantMessage: "admissionReviewVersions"},
		{name: "wrong kind", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}`), wantStatus: 400, wantMessage: "kind AdmissionReview"},
		{name: "no request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), wantStatus: 400, wantMessage: "no request"},
		{name: "oversized body", body: bytes.Repeat([]byte(" "), DefaultMaxBodyBytes+1), wantStatus: 413, wantMessage: "over"},
		{name: "GET", method: http.MethodGet, wantStatus: 405, wantMessage: "POST"},
		{name: "wrong content type", contentType: "text/plain", body: review(admissionv1.Create, podGVK, plexPod()), wantStatus: 415, wantMessage: "application/json"},
		{name: "empty body", body: []byte{}, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHandler()
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/mutate", bytes.NewReader(tt.body))
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus != 200 {
				if !strings.Contains(rec.Body.String(), tt.wantMessage) {
					t.Errorf("body %q lacks %q", rec.Body, tt.wantMessage)
				}
				return
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("response is not an AdmissionReview: %v", err)
			}
			if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
				t.Fatalf("bad envelope: %+v", out)
			}
			if out.Response.UID != "0b1c" {
				t.Errorf("UID %q not echoed", out.Response.UID)
			}
			if out.Response.Allowed != tt.wantAllowed {
				t.Errorf("allowed = %v, want %v (%+v)", out.Response.Allowed, tt.wantAllowed, out.Response.Result)
			}
			if got := len(out.Response.Patch) > 0; got != tt.wantPatch {
				t.Errorf("patch present = %v, want %v", got, tt.wantPatch)
			}
			if tt.wantPatch && (out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch) {
				t.Errorf("patchType = %v, want JSONPatch", out.Response.PatchType)
			}
			if !tt.wantAllowed {
				if out.Response.Result == nil || !strings.Contains(out.Response.Result.Message, tt.wantMessage) || out.Response.Result.Code != 403 {
					t.Errorf("denial %+v lacks %q or code 403", out.Response.Result, tt.wantMessage)
				}
			}
		})
	}
}

func TestHandlerMetrics(t *testing.T) {
	h := newTestHandler()
	podGVK := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	unknown := plexPod()
	unknown.Annotations["gpu-directories"] = "amd"
	for _, body := range [][]byte{review(admissionv1.Create, podGVK, plexPod()), review(admissionv1.Create, podGVK, unknown), []byte("{")} {
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	m := h.metrics
	for name, tc := range map[string]struct {
		got  float64
		want float64
	}{
		"mutated":           {testutil.ToFloat64(m.requests.WithLabelValues("mutated")), 1},
		"denied":            {testutil.ToFloat64(m.requests.WithLabelValues("denied")), 1},
		"rejected":          {testutil.ToFloat64(m.requests.WithLabelValues("rejected")), 1},
		"nvidia mutations":  {testutil.ToFloat64(m.mutations.WithLabelValues("nvidia")), 1},
		"unknown-profile":   {testutil.ToFloat64(m.denials.WithLabelValues(inject.ReasonUnknownProfile)), 1},
		"malformed request": {testutil.ToFloat64(m.badRequests.WithLabelValues("malformed")), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", name, tc.got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.duration); n != 3 {
		t.Errorf("latency histogram has %d series, want one per outcome (3)", n)
	}
}

// TestMetricsLint checks the metric names and help against Prometheus rules.
func TestMetricsLint(t *testing.T) {
	m := NewMetrics()
	m.requests.WithLabelValues("mutated").Inc()
	m.duration.WithLabelValues("mutated").Observe(0.001)
	m.mutations.WithLabelValues("nvidia").Inc()
	m.denials.WithLabelValues("unknown-profile").Inc()
	m.badRequests.WithLabelValues("malformed").Inc()
	m.certReloads.WithLabelValues("success").Inc()
	m.configReloads.WithLabelValues("success").Inc()
	m.gateDecisions.WithLabelValues(gateBreakGlass).Inc()
	m.gateJournalWrites.WithLabelValues("error").Inc()
	for _, c := range []interface {
		Describe(chan<- *prometheus.Desc)
		Collect(chan<- prometheus.Metric)
	}{m.requests, m.duration, m.mutations, m.denials, m.badRequests, m.certExpiry, m.certReloads, m.configReloads, m.gateDecisions, m.gateJournalWrites} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func podGVK() metav1.GroupVersionKind { return metav1.GroupVersionKind{Version: "v1", Kind: "Pod"} }

func mustRequest(t *testing.T, path string) *http.Request {
	t.Helper()
	return httptest.NewRequest(http.MethodGet, path, nil)
}
