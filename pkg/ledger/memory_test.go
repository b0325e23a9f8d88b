package ledger

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestParseMemoryRange(t *testing.T) {
	tests := []struct {
		in       string
		min, max string // canonical quantities
		err      string
	}{
		{in: "2Gi", min: "2Gi", max: "2Gi"},
		{in: "2Gi-3Gi", min: "2Gi", max: "3Gi"},
		{in: " 512Mi - 1Gi ", min: "512Mi", max: "1Gi"},
		{in: "1-2Gi", min: "1Gi", max: "2Gi"},
		{in: "0.5-1Gi", min: "512Mi", max: "1Gi"},
		{in: "8G", min: "8G", max: "8G"},
		{in: "0", min: "0", max: "0"},
		{in: "", err: "empty memory range"},
		{in: "  ", err: "empty memory range"},
		{in: "lots", err: `memory range "lots"`},
		{in: "2Gi-", err: "want QUANTITY or MIN-MAX"},
		{in: "-2Gi", err: "want QUANTITY or MIN-MAX"},
		{in: "3Gi-2Gi", err: "minimum 3Gi is above maximum 2Gi"},
		{in: "1Gi-2Gi-3Gi", err: `memory range "1Gi-2Gi-3Gi"`},
		{in: "2Gb", err: `memory range "2Gb"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := ParseMemoryRange(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Min.String() != tt.min || m.Max.String() != tt.max {
				t.Errorf("got %s-%s, want %s-%s", m.Min.String(), m.Max.String(), tt.min, tt.max)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{12 * gibi, "12Gi"}, {8602 * mebi, "8.4Gi"}, {512 * mebi, "512Mi"}, {gibi + gibi/2, "1.5Gi"}, {0, "0"}, {1000, "1000"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// envVar and envFrom set the main container's environment.
func envVar(e corev1.EnvVar) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, e) }
}

func envFrom(cm, prefix string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].EnvFrom = append(p.Spec.Containers[0].EnvFrom, corev1.EnvFromSource{
			Prefix:       prefix,
			ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}},
		})
	}
}

func utilization(v string) corev1.EnvVar {
	return corev1.EnvVar{Name: workload.EnvGPUMemoryUtilization, Value: v}
}

func utilizationFrom(cm, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: workload.EnvGPUMemoryUtilization, ValueFrom: &corev1.EnvVarSource{
		ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: cm}, Key: key},
	}}
}

func TestWorkloadMemory(t *testing.T) {
	const gpu = "nvidia.com/gpu"
	// Every case runs on a 24Gi GPU with these ConfigMaps in "ml".
	configMaps := []corev1.ConfigMap{
		configMap("ml", "vllm", map[string]string{workload.EnvGPUMemoryUtilization: "0.5", "UTIL": "0.25"}),
		configMap("ml", "prefixed", map[string]string{"MEMORY_UTILIZATION": "0.75"}),
	}
	defaults := map[string]MemoryRange{"serve": mustRange("1Gi-2Gi"), "ml/serve": mustRange("3Gi")}

	tests := []struct {
		name string
		pods []corev1.Pod
		node corev1.Node // zero value: the 24Gi gpubox
		want string      // "EXPECTED SOURCE"
	}{{
		name: "annotation",
		pods: []corev1.Pod{newPod("ml", "p", gpubox, shares(gpu, 1), gpuMemory("2Gi-3Gi"), envVar(utilization("0.9")))},
		want: "2Gi-3Gi annotation gpu-memory",
	}, {
		name: "invalid annotation is flagged, not defaulted",
		pods: []corev1.Pod{newPod("ml", "serve", gpubox, shares(gpu, 1), gpuMemory("3Gi-2Gi"))},
		want: `? invalid gpu-memory annotation: memory range "3Gi-2Gi": minimum 3Gi is above maximum 2Gi`,
	}, {
		name: "direct env",
		pods: []corev1.Pod{newPod("ml", "p", gpubox, shares(gpu, 1), envVar(utilization("0.5")))},
		want: "12Gi GPU_MEMORY_UTILIZATION=0.5 of 24Gi, env of container main",
	}, {
		name: "configMapKeyRef",
		pods: []corev1.Pod{newPod("ml", "p", gpubox, shares(gpu, 1), envVar(utilizationFrom("vllm", "UTIL")))},
		want: "6Gi GPU_MEMORY_UTILIZATION=0.25 of 24Gi, configmap ml/vllm",
	}, {
		name: "envFrom with prefix",
		pods: []corev1.Pod{newPod("ml", "p", gpubox, shares(gpu, 1), envFrom("prefixed", "GPU_"))},
		want: "18Gi GPU_MEMORY_UTILIZATION=0.75 of 24Gi, configmap ml/prefixed",
	}, {
		name: "env overrides envFrom",
		pods: []corev1.Pod{newPod("ml", "p", gpubox, shares(gpu, 1), envFrom("vllm", ""), envVar(utilization("0.25")))},
		want: "6Gi GPU_MEMORY_UTILIZATION=0.25 of 24Gi, env of container main",
	}, {
		name: "missing ConfigMap falls back to the default by namespace/name",
		pods: []corev1.Pod{newPod("ml", "serve", gpubox, shares(gpu, 1), envFrom("gone", ""))},
		want: "3Gi default for ml/serve",
	}, {
		name: "default by name",
		pods: []corev1.Pod{newPod("web", "serve", gpubox, shares(gpu, 1))},
		want: "1Gi-2Gi default for serve",
	}, {
		name: "invalid fraction",
		pods: []corev1.Pod{newPod("ml", "p", gpubox, shares(gpu, 1), envVar(utilization("70%")))},
		want: `? invalid GPU_MEMORY_UTILIZATION="70%" (env of container main): want a fraction in (0, 1]`,
	}, {
		name: "fraction without node GPU memory",
		node: newNode(gpubox, gpuResource(gpu, 1)),
		pods: []corev1.Pod{newPod("ml", "p", gpubox, shares(gpu, 1), envVar(utilization("0.5")))},
		want: "? unknown: GPU_MEMORY_UTILIZATION=0.5 but the node's GPU memory is unknown",
	}, {
		name: "nothing known",
		pods: []corev1.Pod{newPod("ml", "p", gpubox, shares(gpu, 1))},
		want: "? unknown: no gpu-memory annotation",
	}, {
		name: "pods of a workload add up",
		pods: func() []corev1.Pod {
			pods, _ := deployment("ml", "w", gpubox, 3, shares(gpu, 1), gpuMemory("1Gi-2Gi"))
			return pods
		}(),
		want: "3Gi-6Gi annotation gpu-memory, x3 pods",
	}, {
		name: "one unknown pod makes the workload unknown",
		pods: []corev1.Pod{
			newPod("ml", "a", gpubox, ownedBy("StatefulSet", "s"), shares(gpu, 1), gpuMemory("1Gi")),
			newPod("ml", "b", gpubox, ownedBy("StatefulSet", "s"), shares(gpu, 1)),
		},
		want: "? unknown: no gpu-memory annotation",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := tt.node
			if node.Name == "" {
				node = gpuboxCluster().in.Nodes[0]
			}
			in := Input{Nodes: []corev1.Node{node}, Pods: tt.pods, ConfigMaps: configMaps}
			r, err := Build(in, Options{DefaultMemory: defaults})
			if err != nil {
				t.Fatal(err)
			}
			w := r.Nodes[0].Workloads[0]
			got := "? " + w.MemorySource
			if w.Memory != nil {
				got = w.Memory.String() + " " + w.MemorySource
			}
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestVRAMRisk(t *testing.T) {
	// One 12Gi GPU; the risk line must appear iff the potential maximum
	// exceeds it, and workloads without an estimate do not count.
	tests := []struct {
		name    string
		memory  []string // one pod each; "" = no estimate
		nodeMem string   // override; "" = GFD 12288 MiB
		sum     string
		unknown int
		risk    string
	}{
		{"below", []string{"2Gi-4Gi", "1Gi-2Gi"}, "", "3Gi-6Gi", 0, ""},
		{"exactly full", []string{"4Gi-8Gi", "4Gi"}, "", "8Gi-12Gi", 0, ""},
		{"one MiB over", []string{"4Gi-8Gi", "4097Mi"}, "", "8Gi-12Gi", 0,
			"Potential total 8Gi-12Gi, available 12Gi: CUDA OOM risk if all workloads are active"},
		{"only the maximum over", []string{"1Gi-10Gi", "1Gi-3Gi"}, "", "2Gi-13Gi", 0,
			"Potential total 2Gi-13Gi, available 12Gi: CUDA OOM risk if all workloads are active"},
		{"unknown workloads do not count", []string{"10Gi", ""}, "", "10Gi", 1, ""},
		{"node override", []string{"10Gi"}, "8Gi", "10Gi", 0,
			"Potential total 10Gi, available 8Gi: CUDA OOM risk if all workloads are active"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := (&cluster{}).node(newNode("n", gpuResource(shared, 8), gfd("GPU", "1", "12288", "8")))
			if tt.nodeMem != "" {
				c.in.Nodes[0].Annotations[workload.AnnotationNodeGPUMemory] = tt.nodeMem
			}
			for i, m := range tt.memory {
				opts := []podOpt{shares(shared, 1)}
				if m != "" {
					opts = append(opts, gpuMemory(m))
				}
				c.pods(newPod("ai", fmt.Sprintf("p%d", i), "n", opts...))
			}
			r, err := Build(c.in, Options{})
			if err != nil {
				t.Fatal(err)
			}
			v := r.Nodes[0].VRAM
			if got := formatRange(v.MinBytes, v.MaxBytes); got != tt.sum || len(v.Unknown) != tt.unknown || v.Risk != tt.risk {
				t.Errorf("got sum %s unknown %v risk %q, want %s, %d unknown, risk %q", got, v.Unknown, v.Risk, tt.sum, tt.unknown, tt.risk)
			}
			var buf strings.Builder
			if err := WriteTable(&buf, r, false); err != nil {
				t.Fatal(err)
			}
			hasRiskLine := slices.ContainsFunc(strings.Split(buf.String(), "\n"), func(l string) bool {
				return strings.HasPrefix(l, "Risk: ")
			})
			if hasRiskLine != (tt.risk != "") {
				t.Errorf("risk line shown = %v, want %v:\n%s", hasRiskLine, tt.risk != "", buf.String())
			}
		})
	}
}
