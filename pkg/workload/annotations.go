package workload

// Annotations on pods and pod templates, read by the webhook, the ledger
// and doctor. They are unprefixed because manifests written for the
// existing gpu-directory-injector already use them.
const (
	// AnnotationProfiles names the device profiles a pod gets
	// ("nvidia", or several: "nvidia,dri").
	AnnotationProfiles = "gpu-directories"
	// AnnotationShares adds that many shares of the shared GPU resource
	// to the pod's requests and limits (the seed's hybrid method).
	AnnotationShares = "gpu-shares"
	// AnnotationSharesContainer names the container the shares go to.
	AnnotationSharesContainer = "gpu-shares-container"
	// AnnotationMemory is the expected VRAM of one pod: "2Gi" or "2Gi-3Gi".
	AnnotationMemory = "gpu-memory"
)

// AnnotationBreakGlass on a pod lets it past the admission gate; its
// value says why, and is logged and evented.
const AnnotationBreakGlass = "gpuslice.io/break-glass"

// ReasonBreakGlass is the Event reason of every break-glass admission:
// a pod the annotation let past the webhook's gate, or a manifest
// `gpuslice admit --break-glass` let through.
const ReasonBreakGlass = "BreakGlass"

// AnnotationNodeGPUMemory (a node annotation or label) gives the per-GPU
// memory of nodes without GPU Feature Discovery; it wins over GFD's label.
const AnnotationNodeGPUMemory = "gpuslice.io/gpu-memory"

// SharedResource is what the NVIDIA device plugin advertises when
// time-slicing renames nvidia.com/gpu (renameByDefault: true): the share
// pods request.
const SharedResource = "nvidia.com/gpu.shared"

// Policy annotations on a Deployment or StatefulSet (pkg/policy parses
// them).
const (
	// AnnotationProtected "true": the workload is never preempted nor
	// released, and its activity and health are the arbiter's signals
	// (Plex). Only a false value ("false", "0") lifts it.
	AnnotationProtected = "gpuslice.io/protected"
	// AnnotationPreemptible "true": the arbiter may preempt the workload.
	AnnotationPreemptible = "gpuslice.io/preemptible"
	// AnnotationPriority overrides the priority taken from the pod
	// template's PriorityClass: an integer, higher wins.
	AnnotationPriority = "gpuslice.io/priority"
	// AnnotationActiveHours is when a preemptible workload may hold the
	// GPU: "07:00-19:00", several as "07:00-12:00,13:00-19:00", a window
	// may cross midnight ("22:00-06:00"). Outside them it stays released.
	AnnotationActiveHours = "gpuslice.io/active-hours"
	// AnnotationTimeZone is the IANA zone of the active hours
	// ("Europe/Berlin"); without it the arbiter's --time-zone.
	AnnotationTimeZone = "gpuslice.io/time-zone"
	// AnnotationPreemptAction is what preempting means: "scale-to-zero"
	// (the default) or "lower-memory=0.30", which sets the workload's
	// GPU_MEMORY_UTILIZATION to 0.30 and restarts it.
	AnnotationPreemptAction = "gpuslice.io/preempt-action"
	// AnnotationHoldDown is how long the pressure must stay away before
	// the workload is restored ("10m"); without it the arbiter's
	// --hold-down.
	AnnotationHoldDown = "gpuslice.io/hold-down"
)

// AnnotationRestartedAt is the pod template annotation kubectl rollout
// restart sets; changing it makes the controller roll out new pods.
const AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"

// LabelPodSecurityEnforce is Kubernetes' Pod Security label on a namespace;
// its levels baseline and restricted forbid hostPath volumes.
const LabelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"

// PodSecurityLevelsForbiddingHostPath are the enforce levels under which a
// pod with hostPath volumes is refused.
var PodSecurityLevelsForbiddingHostPath = []string{"baseline", "restricted"}
