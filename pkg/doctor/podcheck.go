package doctor

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/ledger"
)

// PodInput is everything a pod check reads: one pod with what was
// gathered about it, and the cluster facts around it. Checks take all of
// it so that they share one type and one list.
type PodInput struct {
	PodEvidence
	// Template marks a pod made from a workload's template: the webhook
	// has not admitted it yet.
	Template bool

	Profiles       []inject.Profile
	RuntimeClasses RuntimeClasses
	ConfigMaps     []corev1.ConfigMap
	// Memory are the pod's memory knobs, Node the ledger entry the OOM
	// advice points at (nil when unknown).
	Memory MemorySettings
	Node   *ledger.NodeReport
}

// PodCheck judges one pod. Its Result's Check names it: the results of a
// workload's pods are merged by that name.
type PodCheck func(in *PodInput) Result

// podChecks run on every pod of a workload, in the order of the report's
// rows.
var podChecks = []PodCheck{
	JudgeScheduling,
	JudgeRuntimeClass,
	JudgeDevices,
	JudgeNvidiaEnv,
	JudgeCrash,
	JudgeCUDAOOM,
}

// podInput is what the pod checks read about p, one of w's pods.
func (ev *Evidence) podInput(w *WorkloadEvidence, p *PodEvidence) *PodInput {
	return &PodInput{
		PodEvidence:    *p,
		Profiles:       ev.profiles(),
		RuntimeClasses: ev.RuntimeClasses,
		ConfigMaps:     ev.ConfigMaps,
		Memory:         ev.memorySettings(p.Pod),
		Node:           ev.podNodeReport(p.Pod.Spec.NodeName, w),
	}
}
