package doctor

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestDoctorJudgeNodeVRAM(t *testing.T) {
	memory := func(m string) podOpt {
		return func(p *corev1.Pod) { p.Annotations[workload.AnnotationMemory] = m }
	}
	// The seed's "After AI-dev Deployment": 13.9-18.4Gi expected on 12Gi.
	seed := []*corev1.Pod{
		pod("media", "plex", "homelabai", 0, annotated, memory("1Gi-2Gi")),
		pod("ai", "ollama", "homelabai", 1, memory("2Gi-4Gi")),
		pod("ai", "tts", "homelabai", 1, memory("512Mi-1Gi")),
		pod("ai", "whisper", "homelabai", 2, memory("2Gi-3Gi")),
		pod("ai-dev", "vllm-server", "homelabai", 2, annotated, withEnv(workload.EnvGPUMemoryUtilization, "0.70")),
	}
	noGFD := homelabai()
	delete(noGFD.Labels, ledger.LabelGPUMemory)
	tests := []struct {
		name     string
		node     corev1.Node
		pods     []*corev1.Pod
		verdict  Verdict
		contains []string
	}{
		{name: "seed after AI-dev: risk is a warning", node: homelabai(), pods: seed, verdict: Warn,
			contains: []string{"Potential total 13.9Gi-18.4Gi, available 12Gi", "ai-dev/vllm-server 8.4Gi",
				"lower GPU_MEMORY_UTILIZATION of ai-dev/vllm-server", "kubectl scale deployment -n ai-dev vllm-server --replicas=0", "DCGM"}},
		{name: "seed before AI-dev fits", node: homelabai(), pods: seed[:4], verdict: OK, contains: []string{"expected VRAM 5.5Gi-10Gi of 12Gi"}},
		{name: "a workload without estimate", node: homelabai(), pods: append(seed[:1:1], pod("ai", "comfyui", "homelabai", 1)), verdict: OK,
			contains: []string{"no estimate for ai/comfyui", "annotate their pod templates with gpu-memory"}},
		{name: "GPU memory unknown", node: noGFD, pods: seed, verdict: Warn, contains: []string{"GPU memory of homelabai is unknown", "kubectl annotate node homelabai gpuslice.io/gpu-memory=12Gi"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ledgerOf(t, []corev1.Node{tc.node}, tc.pods...)
			got := JudgeNodeVRAM(r.Nodes[0])
			expect(t, got, tc.verdict, tc.contains...)
			if got.Object != "node/homelabai" {
				t.Errorf("object %q", got.Object)
			}
		})
	}
}
