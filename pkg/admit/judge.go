package admit

import (
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/gate"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Options are what judging needs besides the cluster.
type Options struct {
	// Ledger says which resources are GPU resources.
	Ledger ledger.Options
	// Injector is the webhook's configuration, which turns gpu-shares into
	// requests as the pods will have them; nil means the built-in one.
	Injector *inject.Config
	// BreakGlass is the reason given with --break-glass: the problems the
	// gate may be overridden for (gate.Overridable) no longer refuse.
	BreakGlass string
	// Trust is the admission gate's (its --protected and
	// --trusted-namespace), so that admit believes the same annotations;
	// nil believes every one.
	Trust *policy.Trust
}

// Verdict is one workload's answer.
type Verdict struct {
	Target
	// Code is the exit code this workload alone would give.
	Code gate.Code `json:"code"`
	// Problems are what stands in the way, most important first.
	Problems []gate.Problem `json:"problems,omitempty"`
	// Overridden says break-glass admitted it despite Problems.
	Overridden bool `json:"overridden,omitempty"`
	// Note says why a workload without problems was not judged further.
	Note string `json:"note,omitempty"`
}

// Report is admit's answer for a manifest.
type Report struct {
	// Code is the exit status: the most important workload's code, 0
	// when every workload can start (or break-glass overrode it).
	Code       gate.Code `json:"code"`
	Workloads  []Verdict `json:"workloads"`
	Skipped    []Skipped `json:"skipped,omitempty"`
	BreakGlass string    `json:"breakGlass,omitempty"`
	// Journaled says break-glass overrides were also added to the
	// admission gate's journal, for gpuslice history.
	Journaled bool `json:"journaled,omitempty"`
	// Warnings are what went wrong besides the decision, such as a
	// journal the user may not write.
	Warnings []string `json:"warnings,omitempty"`
}

// Judge decides, for each target, whether its pods can start now in c.
// An error is bad input (a pod the webhook would refuse, a policy that
// does not parse) or a cluster the ledger cannot use.
func Judge(c *clusterview.Cluster, targets []Target, skipped []Skipped, opt Options) (*Report, error) {
	v, err := clusterview.Read(c, clusterview.Options{Ledger: opt.Ledger, Trust: opt.Trust})
	if err != nil {
		return nil, fmt.Errorf("reading the cluster's GPU ledger: %w", err)
	}
	gopt := gate.Options{Nodes: c.Nodes, Classes: c.Classes, Ledger: opt.Ledger}
	r := &Report{Skipped: skipped, BreakGlass: opt.BreakGlass}
	var codes []gate.Code
	for _, t := range targets {
		vd, err := judgeOne(v, t, gopt, opt)
		if err != nil {
			return nil, err
		}
		r.Workloads = append(r.Workloads, vd)
		if !vd.Overridden {
			codes = append(codes, vd.Code)
		}
	}
	r.Code = gate.Worst(codes...)
	return r, nil
}

func judgeOne(v *clusterview.View, t Target, gopt gate.Options, opt Options) (Verdict, error) {
	vd := Verdict{Target: t}
	if t.Pods < 1 {
		vd.Note = "starts no pod (0 replicas)"
		return vd, nil
	}
	pod, err := admittedPod(t, opt.Injector)
	if err != nil {
		return vd, err
	}
	if !ledger.IsGPUPod(pod, opt.Ledger) {
		vd.Note = "not a GPU workload: no GPU request, no " + workload.AnnotationProfiles + " annotation"
		return vd, nil
	}
	pol, err := policy.Parse(t.Annotations, pod.Spec.PriorityClassName, gopt.Classes, nil)
	if err != nil {
		return vd, fmt.Errorf("%s (%s): %w", t.Workload.Qualified(), t.Source, err)
	}
	// As the gate: a controller's annotations count as far as Trust
	// believes them; a bare pod's as they are.
	if t.Workload.Kind != KindPod {
		pol, _ = opt.Trust.Apply(t.Workload, pol, pod.Spec.PriorityClassName, gopt.Classes)
	}
	// Applying a Deployment, StatefulSet or Pod again replaces its pods;
	// a Job's or CronJob's new pods run beside the old ones.
	replaces := t.Workload.Kind != workload.KindJob && t.Workload.Kind != workload.KindCronJob
	d := gate.DecideFor(v, gate.Subject{Pod: pod, Workload: t.Workload, Policy: &pol, Pods: t.Pods, Replaces: replaces}, gopt)
	vd.Problems, vd.Code = d.Problems, d.Code()
	vd.Overridden = opt.BreakGlass != "" && vd.Code != gate.CodeOK && gate.Overridable(vd.Code)
	return vd, nil
}

// admittedPod is a pod of t as the webhook lets it in: gpu-shares turned
// into requests, device profiles into volumes and runtime class.
func admittedPod(t Target, cfg *inject.Config) (*corev1.Pod, error) {
	pod := &corev1.Pod{ObjectMeta: *t.Template.ObjectMeta.DeepCopy(), Spec: *t.Template.Spec.DeepCopy()}
	pod.Namespace = t.Workload.Namespace
	if pod.Name == "" && pod.GenerateName == "" {
		pod.GenerateName = t.Workload.Name + "-"
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", t.Workload.Qualified(), t.Source, err)
	}
	if pod, err = inject.DecodePod(raw); err != nil {
		return nil, fmt.Errorf("%s (%s): %w", t.Workload.Qualified(), t.Source, err)
	}
	if cfg == nil {
		cfg = inject.DefaultConfig("")
	}
	d := cfg.Mutate(t.Workload.Namespace, pod)
	if !d.Allowed {
		return nil, fmt.Errorf("%s (%s): the device-injection webhook would refuse its pods: %s", t.Workload.Qualified(), t.Source, d.Message)
	}
	patch, err := d.PatchJSON()
	if err != nil || patch == nil {
		return pod, err
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err == nil {
		raw, err = p.Apply(raw)
	}
	if err != nil {
		return nil, fmt.Errorf("%s (%s): applying the webhook's patch: %w", t.Workload.Qualified(), t.Source, err)
	}
	return inject.DecodePod(raw)
}
