package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func logLines(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "logs", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// TestDoctorDetectLogProblems runs the detection on real-looking logs of vLLM,
// faster-whisper (PyTorch) and Ollama (llama.cpp), and on lines that say
// "out of memory" about something else.
func TestDoctorDetectLogProblems(t *testing.T) {
	tests := []struct {
		file string
		want []string // kind: substring of the line, in order
	}{
		{file: "vllm-cuda-oom.log", want: []string{
			FindingCUDAOOM + ": ERROR 11-28 21:04:36 engine.py:366] CUDA out of memory. Tried to allocate 1.17 GiB",
			FindingCUDAOOM + ": torch.OutOfMemoryError: CUDA out of memory.",
		}},
		{file: "whisper-runtime-error.log", want: []string{FindingCUDAOOM + ": RuntimeError: CUDA error: out of memory"}},
		{file: "ollama-cudamalloc.log", want: []string{FindingCUDAOOM + ": ggml_backend_cuda_buffer_type_alloc_buffer: allocating 3577.56 MiB on device 0: cudaMalloc failed: out of memory"}},
		{file: "vllm-kv-cache.log", want: []string{FindingKVCache + ": ValueError: The model's max seq len (8192) is larger than the maximum number of tokens that can be stored in KV cache (672)"}},
		{file: "vllm-healthy.log"},
		{file: "negatives.log"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got := DetectLogProblems(logLines(t, tc.file))
			if len(got) != len(tc.want) {
				t.Fatalf("%d findings, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, f := range got {
				kind, line, _ := strings.Cut(tc.want[i], ": ")
				if f.Kind != kind || !strings.HasPrefix(f.Line, line) {
					t.Errorf("finding %d = %s: %q, want %s: %q...", i, f.Kind, f.Line, kind, line)
				}
			}
		})
	}
}

var seedVLLM = MemorySettings{
	Utilization: "0.70", UtilizationFrom: "configmap ai-dev/vllm-config",
	MaxModelLen: "8192", MaxModelLenFrom: "configmap ai-dev/vllm-config",
	Model: "TheBloke/deepseek-coder-6.7B-instruct-AWQ",
}

func seedNodeReport(t *testing.T) *ledger.NodeReport {
	t.Helper()
	plex := pod("media", "plex", "homelabai", 0, annotated, func(p *corev1.Pod) { p.Annotations[workload.AnnotationMemory] = "1Gi-2Gi" })
	vllm := pod("ai-dev", "vllm-server", "homelabai", 2, withEnv(workload.EnvGPUMemoryUtilization, "0.70"))
	r := ledgerOf(t, []corev1.Node{homelabai()}, plex, vllm)
	return &r.Nodes[0]
}

func TestDoctorMemoryAdvice(t *testing.T) {
	got := MemoryAdvice(seedVLLM, seedNodeReport(t))
	for _, want := range []string{
		"1) lower GPU_MEMORY_UTILIZATION 0.70 → 0.60 (configmap ai-dev/vllm-config)",
		"2) use a smaller or more quantized model than TheBloke/deepseek-coder-6.7B-instruct-AWQ",
		"3) reduce MAX_MODEL_LEN 8192 → 4096 (configmap ai-dev/vllm-config)",
		"4) check other GPU workloads' memory on homelabai: expected 9.4Gi-10.4Gi of 12Gi (media/plex 1Gi-2Gi, ai-dev/vllm-server 8.4Gi)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("advice lacks %q:\n%s", want, got)
		}
	}
	// Without settings or a ledger, the seed's own numbers as examples.
	got = MemoryAdvice(MemorySettings{}, nil)
	for _, want := range []string{"(e.g. 0.70 → 0.60)", "(e.g. 8192 → 4096)", "gpuslice status"} {
		if !strings.Contains(got, want) {
			t.Errorf("advice lacks %q:\n%s", want, got)
		}
	}
}

func TestDoctorMemorySettings(t *testing.T) {
	cm := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vllm-config", Namespace: "ai-dev"}, Data: map[string]string{
		"GPU_MEMORY_UTILIZATION": "0.70", "MAX_MODEL_LEN": "8192", "MODEL": "TheBloke/deepseek-coder-6.7B-instruct-AWQ",
	}}
	p := pod("ai-dev", "vllm-server", "homelabai", 2, func(p *corev1.Pod) {
		p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}}}}
	})
	ev := &Evidence{ConfigMaps: []corev1.ConfigMap{cm}}
	if got := ev.memorySettings(p); got != seedVLLM {
		t.Errorf("from the ConfigMap: %+v", got)
	}
	// vLLM's own flags win.
	p.Spec.Containers[0].Args = []string{"--model", "x", "--gpu-memory-utilization=0.5", "--max-model-len", "4096"}
	got := ev.memorySettings(p)
	if got.Utilization != "0.5" || got.MaxModelLen != "4096" || !strings.Contains(got.UtilizationFrom, "--gpu-memory-utilization") {
		t.Errorf("from the arguments: %+v", got)
	}
	// Flags that only refer to the env leave the env's value and source.
	p.Spec.Containers[0].Args = []string{"--gpu-memory-utilization=$(GPU_MEMORY_UTILIZATION)", "--max-model-len", "$(MAX_MODEL_LEN)"}
	if got := ev.memorySettings(p); got.Utilization != "0.70" || got.MaxModelLen != "8192" || !strings.Contains(got.UtilizationFrom, "configmap ai-dev/vllm-config") {
		t.Errorf("with $(VAR) flags: %+v", got)
	}
}

func oomKilled(p *corev1.Pod) {
	p.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("16Gi")
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: p.Spec.Containers[0].Name, RestartCount: 3,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}},
	}}
}

func status(s corev1.ContainerStatus) podOpt {
	return func(p *corev1.Pod) { p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, s) }
}

func TestDoctorJudgeCrash(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	tests := []struct {
		name     string
		pod      *corev1.Pod
		verdict  Verdict
		contains []string
	}{
		{name: "pending", pod: pod("ai-dev", "vllm-server", "", 2), verdict: OK, contains: []string{"no container has started (phase Pending)"}},
		{name: "running", pod: pod("ai-dev", "vllm-server", "homelabai", 2, status(corev1.ContainerStatus{Name: "vllm-server", State: running})), verdict: OK,
			contains: []string{"1 of 1 container(s) running, no restarts"}},
		{name: "OOMKilled", pod: pod("ai-dev", "vllm-server", "homelabai", 2, oomKilled), verdict: Fail,
			contains: []string{"container vllm-server was OOMKilled (3 restart(s), last exit OOMKilled code 137, now CrashLoopBackOff)",
				"host memory (limit 16Gi), not VRAM", "raise resources.limits.memory", "GPU_MEMORY_UTILIZATION 0.70 → 0.60", "MAX_MODEL_LEN 8192 → 4096"}},
		{name: "OOMKilled right now", pod: pod("ai-dev", "vllm-server", "homelabai", 2, status(corev1.ContainerStatus{Name: "vllm-server",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}})), verdict: Fail,
			contains: []string{"OOMKilled", "no limit: the node ran out of memory"}},
		{name: "CrashLoopBackOff", pod: pod("ai-dev", "vllm-server", "homelabai", 2, status(corev1.ContainerStatus{Name: "vllm-server", RestartCount: 5,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1}}})), verdict: Fail,
			contains: []string{"CrashLoopBackOff (5 restart(s), last exit Error code 1", "kubectl logs -n ai-dev vllm-server-abc12 -c vllm-server --previous"}},
		{name: "nvidia runtime missing on the node", pod: pod("media", "plex", "homelabai", 0, status(corev1.ContainerStatus{Name: "plex",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: `no runtime for "nvidia" is configured`}}})), verdict: Fail,
			contains: []string{`RunContainerError: no runtime for "nvidia" is configured`, "NVIDIA container toolkit"}},
		{name: "ConfigMap missing", pod: pod("ai-dev", "vllm-server", "homelabai", 2, status(corev1.ContainerStatus{Name: "vllm-server",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: `configmap "vllm-config" not found`}}})), verdict: Fail,
			contains: []string{"create the ConfigMap"}},
		{name: "restarted, running again", pod: pod("ai", "whisper", "homelabai", 2, status(corev1.ContainerStatus{Name: "whisper", RestartCount: 1, State: running,
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1}}})), verdict: Warn,
			contains: []string{"restarted 1 time(s), last exit Error code 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeCrash(&PodInput{PodEvidence: PodEvidence{Pod: tc.pod}, Memory: seedVLLM}), tc.verdict, tc.contains...)
		})
	}
}

func TestDoctorJudgeCUDAOOM(t *testing.T) {
	vllm := pod("ai-dev", "vllm-server", "homelabai", 2)
	node := seedNodeReport(t)
	tests := []struct {
		name     string
		logs     []ContainerLog
		verdict  Verdict
		contains []string
	}{
		{name: "not run yet", logs: nil, verdict: OK, contains: []string{"no container has run yet"}},
		{name: "healthy", logs: []ContainerLog{{Container: "vllm", Lines: logLines(t, "vllm-healthy.log")}}, verdict: OK,
			contains: []string{"no CUDA out of memory in the last 13 line(s) of vllm"}},
		{name: "CUDA OOM in the previous run", logs: []ContainerLog{
			{Container: "vllm", Previous: true, Lines: logLines(t, "vllm-cuda-oom.log")},
			{Container: "vllm", Err: "container is waiting to start: CrashLoopBackOff"},
		}, verdict: Fail, contains: []string{"vllm (previous run) log: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.17 GiB",
			"CUDA out of memory: 1) lower GPU_MEMORY_UTILIZATION 0.70 → 0.60", "4) check other GPU workloads' memory on homelabai"}},
		{name: "KV cache too small", logs: []ContainerLog{{Container: "vllm", Previous: true, Lines: logLines(t, "vllm-kv-cache.log")}}, verdict: Fail,
			contains: []string{"is larger than the maximum number of tokens that can be stored in KV cache", "reduce MAX_MODEL_LEN 8192 → 4096"}},
		{name: "no kubelet", logs: []ContainerLog{{Container: "vllm", Err: `Get "https://homelabai:10250/containerLogs/...": dial tcp: lookup homelabai: no such host`}}, verdict: Warn,
			contains: []string{"logs unavailable: vllm: Get", "kubectl logs -n ai-dev vllm-server-abc12 | grep"}},
		{name: "one read, one not", logs: []ContainerLog{
			{Container: "vllm", Previous: true, Err: "previous terminated container not found"},
			{Container: "vllm", Lines: logLines(t, "negatives.log")},
		}, verdict: Warn, contains: []string{"logs unavailable: vllm (previous run): previous terminated container not found", "no CUDA out of memory in 7 line(s) of vllm", "--previous"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeCUDAOOM(&PodInput{PodEvidence: PodEvidence{Pod: vllm, Logs: tc.logs}, Memory: seedVLLM, Node: node}), tc.verdict, tc.contains...)
		})
	}
}
