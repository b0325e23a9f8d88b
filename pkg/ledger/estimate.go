package ledger

import corev1 "k8s.io/api/core/v1"

// Estimator gives one pod's expected VRAM exactly as Build does for the
// pods of a workload, for callers that set single pods against what they
// actually hold (gpuslice top).
type Estimator struct{ b *builder }

// NewEstimator indexes in's ConfigMaps (GPU_MEMORY_UTILIZATION) and owners
// (Options.DefaultMemory is keyed by workload).
func NewEstimator(in Input, opt Options) *Estimator {
	return &Estimator{b: newBuilder(in, opt)}
}

// PodMemory is the pod's expected VRAM and where the figure comes from:
// its gpu-memory annotation, else GPU_MEMORY_UTILIZATION times
// gpuMemoryBytes (one GPU of the pod's node; 0 when unknown), else the
// default for its workload. A nil range comes with the reason it is
// unknown.
func (e *Estimator) PodMemory(pod *corev1.Pod, gpuMemoryBytes int64) (*MemoryRange, string) {
	_, owner := e.b.owner(pod)
	return e.b.podMemory(pod, owner, gpuMemoryBytes)
}

// FormatBytes writes memory as the ledger's tables do: "8.4Gi", "512Mi".
func FormatBytes(n int64) string { return formatBytes(n) }

// Owners finds the workload a pod belongs to, from the same index.
func (e *Estimator) Owners() Owners { return Owners{e.b.owners} }
