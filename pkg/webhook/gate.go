package webhook

import (
	"context"
	"fmt"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Gate is the optional admission gate (--admission-gate), consulted on
// every pod the mutation allows. Package gate/live implements it over the
// live cluster; it is an interface here so that the webhook does not
// depend on the arbiter's packages.
type Gate interface {
	// Start lists the cluster and keeps watching it until ctx ends; it
	// returns once listed, or with an error if ctx ends first.
	Start(ctx context.Context) error
	// Ready says whether the gate has listed the cluster, and if not why.
	Ready() (bool, string)
	// Admit decides on pod as it will be stored (mutated, namespace set).
	// On a dry run it has no side effects.
	Admit(ctx context.Context, pod *corev1.Pod, dryRun bool) GateResult
}

// GateResult is the gate's answer for one pod.
type GateResult struct {
	Allowed bool
	// Message says why; for a break-glass admission, the refusal it overrode.
	Message string
	// BreakGlass is the reason a break-glass annotation gave for letting
	// in a pod the gate would have refused; empty otherwise.
	BreakGlass string
	// Workload is the pod's owner, for logs and the gate's journal; the
	// pod itself (Kind Pod) when it has none or the gate did not find it.
	Workload workload.Ref
}

// Gate decisions, the label of gpuslice_webhook_gate_decisions_total.
const (
	gateAllowed    = "allowed"
	gateDenied     = "denied"
	gateBreakGlass = "break_glass"
)

// SetGate turns the admission gate on (nil turns it off) for later
// requests.
func (h *Handler) SetGate(g Gate) {
	if g == nil {
		h.gate.Store(nil)
		return
	}
	h.gate.Store(&g)
}

// gateReady is the gate's part of /readyz.
func (h *Handler) gateReady() (bool, string) {
	if g := h.gate.Load(); g != nil {
		return (*g).Ready()
	}
	return true, ""
}

// admitGate runs the gate on the whole pod as the mutation leaves it (so
// the shares a gpu-shares annotation adds count) and returns the denial
// message, or "" when the pod may be created.
func (h *Handler) admitGate(ctx context.Context, g Gate, req *admissionv1.AdmissionRequest, patch []byte, name string) string {
	pod, err := applyPatch(req.Object.Raw, patch)
	if err != nil {
		h.metrics.gateDecisions.WithLabelValues(gateDenied).Inc()
		return fmt.Sprintf("admission gate: could not read the pod as it will be stored (%v); please report this pod spec", err)
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	dryRun := req.DryRun != nil && *req.DryRun
	r := g.Admit(ctx, pod, dryRun)
	switch {
	case !r.Allowed:
		h.metrics.gateDecisions.WithLabelValues(gateDenied).Inc()
		h.log.Info("admission gate denied pod", "uid", req.UID, "namespace", req.Namespace, "pod", name, "workload", r.Workload.Qualified(), "message", r.Message)
		h.recordDecision(dryRun, journal.Entry{Action: journal.ActionDenied, Workload: r.Workload, Message: r.Message})
		return r.Message
	case r.BreakGlass != "":
		h.metrics.gateDecisions.WithLabelValues(gateBreakGlass).Inc()
		h.log.Warn("break-glass: admitted pod past the admission gate", "uid", req.UID, "namespace", req.Namespace, "pod", name,
			"workload", r.Workload.Qualified(), "reason", r.BreakGlass, "overrode", r.Message, "dryRun", dryRun)
		h.recordDecision(dryRun, journal.Entry{Action: journal.ActionBreakGlass, Workload: r.Workload, Reason: r.BreakGlass, Message: r.Message})
	default:
		h.metrics.gateDecisions.WithLabelValues(gateAllowed).Inc()
	}
	return ""
}

// recordDecision hands a decision to the gate's journal, if it has one; a dry
// run decides nothing.
func (h *Handler) recordDecision(dryRun bool, e journal.Entry) {
	if h.decisions == nil || dryRun {
		return
	}
	e.At, e.By = time.Now().UTC(), journal.ByGate
	h.decisions.record(e)
}

// applyPatch returns the whole pod raw becomes with patch (if any)
// applied, as the API server will store it.
func applyPatch(raw, patch []byte) (*corev1.Pod, error) {
	if len(patch) == 0 {
		return inject.DecodePod(raw)
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, err
	}
	out, err := p.Apply(raw)
	if err != nil {
		return nil, err
	}
	return inject.DecodePod(out)
}
