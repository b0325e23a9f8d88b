package realnode

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
)

// TestNodeRegistered: the kubelet registered the seed's node with its
// bridge address and the device plugin's 8 shares.
func TestNodeRegistered(t *testing.T) {
	n := realNode(t)
	ctx := testContext(t, time.Minute)
	got, err := n.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var internal string
	for _, a := range got.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			internal = a.Address
		}
	}
	if internal != rn.NodeIP {
		t.Errorf("InternalIP %q, want the bridge's %s", internal, rn.NodeIP)
	}
	q := got.Status.Allocatable["nvidia.com/gpu.shared"]
	if q.Value() != 8 {
		t.Errorf("allocatable nvidia.com/gpu.shared %v, want 8", q.String())
	}
	if ids := n.Plugin.DeviceIDs(); ids[0] != rn.FakeGPUUUID+"::0" || ids[7] != rn.FakeGPUUUID+"::7" {
		t.Errorf("device IDs %v, want time-slicing's replicated %s::0..7", ids, rn.FakeGPUUUID)
	}
}

// TestUnannotatedPodSeesNoGPU: a pod without the annotation runs, and its
// container has none of the GPU's device nodes.
func TestUnannotatedPodSeesNoGPU(t *testing.T) {
	n := realNode(t)
	ctx := testContext(t, 3*time.Minute)
	p := n.TestboxPod("default", "no-gpu")
	if _, err := n.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}) })
	p = waitRunning(ctx, t, n, p.Namespace, p.Name)
	if got, want := execIn(ctx, t, n, p, append([]string{"/testbox", "devices"}, devicePaths()...)...), deviceLines(false); got != want {
		t.Errorf("an unannotated pod sees:\n%s\nwant:\n%s", got, want)
	}
}
