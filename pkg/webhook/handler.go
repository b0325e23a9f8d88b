// Package webhook serves gpuslice's device-injection admission webhook
// (gpu-directory-injector): the AdmissionReview v1 handler, its metrics and
// health endpoints, and the TLS server around them. The mutation itself is
// package inject's; this package only speaks the admission protocol.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/registration"
)

// DefaultMaxBodyBytes bounds a request body. etcd refuses objects over
// 1.5 MiB, and the review of a pod's creation carries one object.
const DefaultMaxBodyBytes = 2 << 20

// Handler answers AdmissionReview v1 requests at /mutate and
// /mutate/hostpath-forbidden.
type Handler struct {
	config atomic.Pointer[inject.Config]
	gate   atomic.Pointer[Gate] // nil: the admission gate is off
	// decisions takes the gate's decisions to its journal; nil: none is
	// kept. Set before serving.
	decisions *gateJournal
	metrics   *Metrics
	log       *slog.Logger
	limits    Limits
	slots     chan struct{} // one per admission in progress
	// configProblem is why the configuration file last failed to reload,
	// "" while the one in force is the file's.
	configProblem atomic.Pointer[string]
}

// NewHandler returns a handler applying cfg.
func NewHandler(cfg *inject.Config, metrics *Metrics, log *slog.Logger) *Handler {
	h := &Handler{metrics: metrics, log: log}
	h.config.Store(cfg)
	h.SetLimits(DefaultLimits)
	return h
}

// SetLimits replaces the bounds (zero fields are DefaultLimits'); call it
// before serving.
func (h *Handler) SetLimits(l Limits) {
	h.limits = l.orDefault()
	h.slots = make(chan struct{}, h.limits.MaxConcurrent)
}

// SetConfig swaps the configuration used by later requests.
func (h *Handler) SetConfig(cfg *inject.Config) {
	h.config.Store(cfg)
	h.configProblem.Store(nil)
}

// setConfigProblem records why the file did not reload, for /readyz.
func (h *Handler) setConfigProblem(why string) { h.configProblem.Store(&why) }

// configReady is false, with the reason, while the file does not load.
func (h *Handler) configReady() (bool, string) {
	if p := h.configProblem.Load(); p != nil {
		return false, *p
	}
	return true, ""
}

var podKind = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Pod"}

// ServeHTTP implements http.Handler. Malformed requests get an HTTP 4xx
// with the reason; well-formed ones always get HTTP 200 with the decision.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	release := h.acquire(w, r)
	if release == nil {
		h.metrics.badRequests.WithLabelValues("busy").Inc()
		h.observe("rejected", start)
		return
	}
	defer release()
	review, pod, status, reason, err := h.decode(w, r)
	if err != nil {
		h.metrics.badRequests.WithLabelValues(reason).Inc()
		h.observe("rejected", start)
		h.log.Warn("rejected admission request", "reason", reason, "status", status, "error", err.Error(), "remote", r.RemoteAddr)
		http.Error(w, err.Error(), status)
		return
	}
	// The registration sends namespaces whose Pod Security level forbids
	// hostPath to their own path.
	ns := inject.Namespace{Name: review.Request.Namespace, HostPathForbidden: r.URL.Path == registration.HostPathForbiddenPath}
	resp, outcome := h.admit(r.Context(), ns, review.Request, pod)
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	body, err := json.Marshal(out)
	if err != nil {
		// Only reachable if a patch value cannot be encoded; deny rather
		// than let the API server see a 5xx.
		resp = deny(review.Request.UID, fmt.Sprintf("could not encode its response: %v; please report this pod spec", err))
		outcome = "denied"
		body, _ = json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	h.observe(outcome, start)
}

func (h *Handler) observe(outcome string, start time.Time) {
	h.metrics.requests.WithLabelValues(outcome).Inc()
	h.metrics.duration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
}

// decode reads and checks the AdmissionReview envelope. Without the
// admission gate (which needs the pod's bytes) it decodes the pod in the
// same pass, and returns it; the review's object is then left empty.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request) (review admissionv1.AdmissionReview, pod *mutationPod, status int, reason string, err error) {
	if r.Method != http.MethodPost {
		return review, nil, http.StatusMethodNotAllowed, "method", fmt.Errorf("method %s not allowed: POST an AdmissionReview to /mutate", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, perr := mime.ParseMediaType(ct); perr != nil || mt != "application/json" {
			return review, nil, http.StatusUnsupportedMediaType, "content-type", fmt.Errorf("content type %q not supported: send application/json", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.limits.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return review, nil, http.StatusRequestEntityTooLarge, "too-large", fmt.Errorf("request body over %d bytes: no pod etcd can store is this large", h.limits.MaxBodyBytes)
		}
		return review, nil, http.StatusBadRequest, "read", fmt.Errorf("reading request body: %w", err)
	}
	// A failed fast decode falls back to the whole review, whose errors
	// (and the pod's, later) say what is wrong.
	fast := false
	if h.gate.Load() == nil {
		review, pod, fast = decodeCreateReview(body)
	}
	if !fast {
		if err := json.Unmarshal(body, &review); err != nil {
			return review, nil, http.StatusBadRequest, "malformed", fmt.Errorf("request body is not an AdmissionReview: %w", err)
		}
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		return review, nil, http.StatusBadRequest, "version", fmt.Errorf("got %q %q, want apiVersion admission.k8s.io/v1 kind AdmissionReview: list only \"v1\" in the webhook's admissionReviewVersions", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return review, nil, http.StatusBadRequest, "no-request", errors.New("AdmissionReview has no request")
	}
	return review, pod, 0, "", nil
}

// admit turns one request into a response. It never panics: a bug in the
// mutation becomes a denial naming the pod, not a crashed server.
func (h *Handler) admit(ctx context.Context, ns inject.Namespace, req *admissionv1.AdmissionRequest, decoded *mutationPod) (resp *admissionv1.AdmissionResponse, outcome string) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("mutation panicked", "uid", req.UID, "namespace", req.Namespace, "name", req.Name, "panic", fmt.Sprint(p))
			resp = deny(req.UID, fmt.Sprintf("failed on this pod (%v); please report it with the pod spec", p))
			outcome = "denied"
			h.metrics.denials.WithLabelValues("internal-error").Inc()
		}
	}()
	// Only pod creation is ours to mutate; anything else the configuration
	// sends us passes untouched rather than being blocked.
	if req.Kind != podKind || req.Operation != admissionv1.Create || req.SubResource != "" {
		return &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}, "unchanged"
	}
	var pod *corev1.Pod
	var reason, msg string
	var err error
	switch {
	case decoded != nil:
		pod, reason, msg, err = h.limits.podForMutation(decoded)
	case len(req.Object.Raw) == 0:
		h.metrics.denials.WithLabelValues("no-object").Inc()
		return deny(req.UID, "the admission request carries no pod object"), "denied"
	default:
		pod, reason, msg, err = h.limits.decodeMutationPod(req.Object.Raw)
	}
	switch {
	case err != nil:
		h.metrics.denials.WithLabelValues("malformed-pod").Inc()
		return deny(req.UID, fmt.Sprintf("the pod in the admission request does not decode: %v", err)), "denied"
	case reason != "":
		h.metrics.denials.WithLabelValues(reason).Inc()
		return deny(req.UID, msg), "denied"
	}
	d := h.config.Load().MutateIn(ns, pod)
	name := podName(req, pod)
	if !d.Allowed {
		h.metrics.denials.WithLabelValues(d.Reason).Inc()
		h.log.Info("denied pod", "uid", req.UID, "namespace", req.Namespace, "pod", name, "reason", d.Reason, "message", d.Message)
		resp := deny(req.UID, d.Message)
		resp.Warnings = d.Warnings
		return resp, "denied"
	}
	if n := len(d.Patch); n > h.limits.MaxPatchOperations {
		h.metrics.denials.WithLabelValues("too-many-patch-operations").Inc()
		return deny(req.UID, fmt.Sprintf("injecting %s into this pod takes %d patch operations, over the webhook's bound of %d: name fewer profiles in gpu-directories, or split the pod into smaller ones", strings.Join(d.Profiles, ","), n, h.limits.MaxPatchOperations)), "denied"
	}
	patch, err := d.PatchJSON()
	if err != nil {
		h.metrics.denials.WithLabelValues("internal-error").Inc()
		return deny(req.UID, fmt.Sprintf("could not encode its patch: %v", err)), "denied"
	}
	if g := h.gate.Load(); g != nil {
		if msg := h.admitGate(ctx, *g, req, patch, name); msg != "" {
			h.metrics.denials.WithLabelValues("admission-gate").Inc()
			resp := deny(req.UID, msg)
			resp.Warnings = d.Warnings
			return resp, "denied"
		}
	}
	resp = &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true, Warnings: d.Warnings}
	if len(patch) == 0 {
		return resp, "unchanged"
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	for _, p := range d.Profiles {
		h.metrics.mutations.WithLabelValues(p).Inc()
	}
	h.log.Info("mutated pod", "uid", req.UID, "namespace", req.Namespace, "pod", name,
		"profiles", strings.Join(d.Profiles, ","), "operations", len(d.Patch), "dryRun", req.DryRun != nil && *req.DryRun)
	return resp, "mutated"
}

// deny builds a refusal; the message reaches the user through kubectl, so
// it says what is wrong and how to fix it.
func deny(uid types.UID, message string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{UID: uid, Allowed: false, Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusForbidden,
		Reason: metav1.StatusReasonForbidden, Message: "gpuslice: " + message,
	}}
}

// podName names a pod for logs; on create it often has only generateName.
func podName(req *admissionv1.AdmissionRequest, pod *corev1.Pod) string {
	switch {
	case req.Name != "":
		return req.Name
	case pod.Name != "":
		return pod.Name
	case pod.GenerateName != "":
		return pod.GenerateName + "*"
	}
	return "(unnamed)"
}
