package agent

// Metric names the agent exposes; gpuslice top reads them back.
const (
	MetricGPUMemoryTotal     = "gpuslice_gpu_memory_total_bytes"
	MetricGPUMemoryUsed      = "gpuslice_gpu_memory_used_bytes"
	MetricGPUMemoryFree      = "gpuslice_gpu_memory_free_bytes"
	MetricGPUUtilization     = "gpuslice_gpu_utilization_ratio"
	MetricGPUTemperature     = "gpuslice_gpu_temperature_celsius"
	MetricPodGPUMemory       = "gpuslice_pod_gpu_memory_bytes"
	MetricUnattributedMemory = "gpuslice_unattributed_gpu_memory_bytes"
	MetricNVMLAvailable      = "gpuslice_agent_nvml_available"
	MetricCollectorDuration  = "gpuslice_agent_scrape_collector_duration_seconds"
	MetricCollectorSuccess   = "gpuslice_agent_scrape_collector_success"
)

// Labels of the agent's metrics.
const (
	LabelNode      = "node"
	LabelGPU       = "gpu" // NVML index, as nvidia-smi numbers GPUs
	LabelUUID      = "uuid"
	LabelModel     = "model"
	LabelNamespace = "namespace"
	LabelPod       = "pod"
	LabelContainer = "container"
	LabelReason    = "reason"
	LabelCollector = "collector"
)

// Reasons GPU memory is not attributed to a pod
// (gpuslice_unattributed_gpu_memory_bytes{reason}).
const (
	// ReasonHostProcess: the process's cgroup is outside Kubernetes' pod
	// tree (Xorg, a host daemon, a container started by hand).
	ReasonHostProcess = "host-process"
	// ReasonUnknownPod: the cgroup names a pod the API server does not
	// list on this node (just deleted, or not yet seen).
	ReasonUnknownPod = "unknown-pod"
	// ReasonPIDNotFound: no --proc-root/PID entry, usually because the
	// agent does not share the host's PID namespace (hostPID: true).
	ReasonPIDNotFound = "pid-not-found"
	// ReasonProcUnreadable: the entry exists but could not be read.
	ReasonProcUnreadable = "proc-unreadable"
)

// Reasons lists every reason; each GPU reports all of them, 0 included,
// so that alerts never see a series appear from nothing.
var Reasons = []string{ReasonHostProcess, ReasonUnknownPod, ReasonPIDNotFound, ReasonProcUnreadable}
