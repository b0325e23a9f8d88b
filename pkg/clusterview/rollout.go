package clusterview

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// rolloutSurges says whether a Deployment's rollout may start a new pod
// while an old one still runs: a RollingUpdate whose maxSurge comes to
// more than 0 for its replicas (the default 25% rounds up to 1). Recreate
// stops every old pod first.
func rolloutSurges(d *appsv1.Deployment) bool {
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return false
	}
	maxSurge := intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
		maxSurge = *ru.MaxSurge
	}
	replicas := 1
	if d.Spec.Replicas != nil {
		replicas = int(*d.Spec.Replicas)
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&maxSurge, replicas, true)
	return err != nil || n > 0
}

// lowerNeedsRecreate turns a lower-memory preemption of a Deployment
// whose rollout surges into a scale to zero, and says why. Lowering
// restarts the pods with less memory: with a surge, the lowered pod
// starts beside the one it replaces, both hold GPU memory, free memory
// falls further, and the arbiter would lower again and again (seen on a
// real node: a restart every 12 s). Scaling to zero frees the memory at
// once, which is what the protected workload needs first.
func lowerNeedsRecreate(w *Workload, d *appsv1.Deployment) {
	if w.Policy.Action != policy.ActionLowerMemory || !rolloutSurges(d) {
		return
	}
	w.Adjusted = append(w.Adjusted, fmt.Sprintf(
		"%s=%s=%s is preempted by scaling to zero instead: its rollout starts the lowered pod beside the one it replaces (RollingUpdate with maxSurge above 0), so both would hold GPU memory; "+
			"set spec.strategy.type: Recreate (or rollingUpdate.maxSurge: 0) on %s to lower its memory instead",
		workload.AnnotationPreemptAction, policy.ActionLowerMemory, w.Policy.Fraction, w.Ref.Qualified()))
	w.Policy.Action, w.Policy.Fraction = policy.ActionScaleToZero, ""
}
