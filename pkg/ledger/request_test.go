package ledger

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestPodRequests(t *testing.T) {
	const gpu = "nvidia.com/gpu.shared"
	always := corev1.ContainerRestartPolicyAlways
	sidecar := func(n int64) corev1.Container {
		c := withRequests("sidecar", gpu, n)
		c.RestartPolicy = &always
		return c
	}
	limitOnly := corev1.Container{Name: "l"}
	setQuantity(&limitOnly.Resources.Limits, gpu, 2)
	both := withRequests("b", gpu, 1)
	setQuantity(&both.Resources.Limits, gpu, 3) // requests win over limits

	tests := []struct {
		name string
		spec corev1.PodSpec
		want map[string]int64
	}{
		{"containers add up", corev1.PodSpec{Containers: []corev1.Container{withRequests("a", gpu, 1), withRequests("b", gpu, 2)}}, map[string]int64{gpu: 3}},
		{"limit stands for a missing request", corev1.PodSpec{Containers: []corev1.Container{limitOnly}}, map[string]int64{gpu: 2}},
		{"request wins over limit", corev1.PodSpec{Containers: []corev1.Container{both}}, map[string]int64{gpu: 1}},
		{"init above containers", corev1.PodSpec{
			InitContainers: []corev1.Container{withRequests("i", gpu, 4)},
			Containers:     []corev1.Container{withRequests("a", gpu, 1)},
		}, map[string]int64{gpu: 4}},
		{"init below containers", corev1.PodSpec{
			InitContainers: []corev1.Container{withRequests("i", gpu, 1)},
			Containers:     []corev1.Container{withRequests("a", gpu, 2)},
		}, map[string]int64{gpu: 2}},
		{"sidecar adds to containers and to later init containers", corev1.PodSpec{
			InitContainers: []corev1.Container{sidecar(1), withRequests("i", gpu, 3)},
			Containers:     []corev1.Container{withRequests("a", gpu, 1)},
		}, map[string]int64{gpu: 4}},
		{"sidecar plus containers above init", corev1.PodSpec{
			InitContainers: []corev1.Container{sidecar(2), withRequests("i", gpu, 1)},
			Containers:     []corev1.Container{withRequests("a", gpu, 2)},
		}, map[string]int64{gpu: 4}},
		{"overhead", corev1.PodSpec{
			Containers: []corev1.Container{withRequests("a", gpu, 1)},
			Overhead:   corev1.ResourceList{gpu: *resource.NewQuantity(1, resource.DecimalSI)},
		}, map[string]int64{gpu: 2}},
		{"other resources ignored", corev1.PodSpec{Containers: []corev1.Container{withRequests("a", "cpu", 2)}}, map[string]int64{}},
	}
	want := func(name corev1.ResourceName) bool { return name == gpu }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podRequests(&corev1.Pod{Spec: tt.spec}, want)
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExportedRequests(t *testing.T) {
	const custom = "example.com/vgpu"
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{withRequests("i", "nvidia.com/gpu.shared", 4)},
		Containers: []corev1.Container{
			withRequests("a", "nvidia.com/gpu.shared", 1),
			withRequests("b", custom, 2),
			withRequests("c", "cpu", 3),
		},
	}}
	if got, want := PodRequests(pod, Options{}), map[string]int64{"nvidia.com/gpu.shared": 4}; !maps.Equal(got, want) {
		t.Errorf("default options: got %v, want %v", got, want)
	}
	if got, want := PodRequests(pod, Options{SharedResources: []string{custom}}), map[string]int64{"nvidia.com/gpu.shared": 4, custom: 2}; !maps.Equal(got, want) {
		t.Errorf("shared %s: got %v, want %v", custom, got, want)
	}

	limitOnly := corev1.Container{Name: "l"}
	setQuantity(&limitOnly.Resources.Limits, custom, 2)
	both := withRequests("b", custom, 1)
	setQuantity(&both.Resources.Limits, custom, 3)
	for _, tt := range []struct {
		c    corev1.Container
		want int64
	}{{withRequests("r", custom, 5), 5}, {limitOnly, 2}, {both, 1}, {withRequests("o", "cpu", 1), 0}} {
		if got := ContainerRequest(tt.c, custom); got != tt.want {
			t.Errorf("ContainerRequest(%s) = %d, want %d", tt.c.Name, got, tt.want)
		}
	}
}
