package doctor

import (
	"fmt"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// JudgeNodeVRAM judges the seed's "Memory Over-Subscription Risk" from the
// VRAM ledger. It is a warning, never a failure: time-slicing shares compute
// and not memory, and the seed accepts the risk because the workloads are
// rarely all active at once.
func JudgeNodeVRAM(n ledger.NodeReport) Result {
	res := Result{Check: CheckVRAM, Object: "node/" + n.Name, Verdict: OK}
	var parts []string
	for _, w := range n.Workloads {
		if w.Memory != nil {
			parts = append(parts, fmt.Sprintf("%s/%s %s", w.Namespace, w.Name, w.Memory.String()))
		}
	}
	consumers := ""
	if len(parts) > 0 {
		consumers = " (" + strings.Join(parts, ", ") + ")"
	}
	switch {
	case n.VRAM.AvailableBytes == 0:
		res.Verdict = Warn
		res.Evidence = fmt.Sprintf("GPU memory of %s is unknown: no %s label (GPU Feature Discovery) or %s annotation", n.Name, ledger.LabelGPUMemory, workload.AnnotationNodeGPUMemory)
		res.Remedy = fmt.Sprintf("kubectl annotate node %s %s=12Gi (the GPU's memory)", n.Name, workload.AnnotationNodeGPUMemory)
		return res
	case n.VRAM.Risk != "":
		res.Verdict = Warn
		res.Evidence = n.VRAM.Risk + consumers
		res.Remedy = "time-slicing shares compute, not memory: " + vramMitigation(n)
	default:
		res.Evidence = "expected VRAM " + formatVRAM(n.VRAM) + consumers
	}
	if len(n.VRAM.Unknown) > 0 {
		res.Evidence += fmt.Sprintf("; no estimate for %s (annotate gpu-memory)", strings.Join(n.VRAM.Unknown, ", "))
		if res.Remedy == "" {
			res.Remedy = "annotate their pod templates with gpu-memory (e.g. \"2Gi-3Gi\") so the risk is computed"
		}
	}
	return res
}

// vramMitigation is the seed's mitigation list, naming the node's vLLM
// workloads (those sized by GPU_MEMORY_UTILIZATION) when there are any.
func vramMitigation(n ledger.NodeReport) string {
	lower := "lower vLLM's GPU_MEMORY_UTILIZATION (0.70 → 0.60)"
	scale := "scale down vLLM during heavy Plex use"
	for _, w := range n.Workloads {
		if strings.Contains(w.MemorySource, workload.EnvGPUMemoryUtilization) {
			lower = fmt.Sprintf("lower GPU_MEMORY_UTILIZATION of %s/%s (%s)", w.Namespace, w.Name, w.MemorySource)
			scale = fmt.Sprintf("scale %s down when the others are busy (kubectl scale %s -n %s %s --replicas=0)", w.Name, strings.ToLower(w.Kind), w.Namespace, w.Name)
			break
		}
	}
	return fmt.Sprintf("1) %s; 2) do not run every workload at once: %s; 3) watch real use with the DCGM exporter (DCGM_FI_DEV_FB_USED) or nvidia-smi", lower, scale)
}
