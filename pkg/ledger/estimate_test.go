package ledger

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// TestEstimatorPodMemory: one pod's budget is what Build counts for it.
func TestEstimatorPodMemory(t *testing.T) {
	vllm := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ai-dev", Name: "vllm-server-abc"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}}},
		}}}},
	}
	tts := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "tts-abc", Annotations: map[string]string{workload.AnnotationMemory: "512Mi-1Gi"}}}
	bare := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ai", Name: "bare"}}
	e := NewEstimator(Input{ConfigMaps: []corev1.ConfigMap{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ai-dev", Name: "vllm-config"},
		Data:       map[string]string{workload.EnvGPUMemoryUtilization: "0.70"},
	}}}, Options{})

	gpu := 12288 * mebi
	if m, src := e.PodMemory(&vllm, gpu); m == nil || m.String() != "8.4Gi" || m.Max.Value() != 8602*mebi || src != "GPU_MEMORY_UTILIZATION=0.70 of 12Gi, configmap ai-dev/vllm-config" {
		t.Errorf("vLLM: %v from %q", m, src)
	}
	if m, src := e.PodMemory(&vllm, 0); m != nil || src != "unknown: GPU_MEMORY_UTILIZATION=0.70 but the node's GPU memory is unknown" {
		t.Errorf("vLLM without GPU memory: %v %q", m, src)
	}
	if m, _ := e.PodMemory(&tts, gpu); m == nil || m.String() != "512Mi-1Gi" {
		t.Errorf("TTS: %v", m)
	}
	if m, src := e.PodMemory(&bare, gpu); m != nil || src != "unknown: no gpu-memory annotation" {
		t.Errorf("bare pod: %v %q", m, src)
	}
	if FormatBytes(8586*mebi) != "8.4Gi" || FormatBytes(156*mebi) != "156Mi" {
		t.Errorf("FormatBytes: %s %s", FormatBytes(8586*mebi), FormatBytes(156*mebi))
	}
}
