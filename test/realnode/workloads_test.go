package realnode

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	podresources "k8s.io/kubelet/pkg/apis/podresources/v1"

	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/internal/seed"
)

const sharedResource = "nvidia.com/gpu.shared"

// seedStandins: the GPU workloads of the seed run by testbox gpu, by
// container, with the MiB each holds: vLLM takes GPU_MEMORY_UTILIZATION
// (0.70 from its ConfigMap: 8602 MiB of 12288), Ollama a small model.
var seedStandins = rn.Standins{GPU: map[string]string{"vllm": "", "ollama": "1180"}, Plex: "plex", GracePeriod: new(int64)}

// deploySeed creates the seed's workloads after the AI-dev deployment
// (examples/ holds the same, a test in test/e2e checks) running the
// testbox image, and waits for each one's pod to run on the real node.
func deploySeed(ctx context.Context, t *testing.T, n *rn.RealNode) map[string]*corev1.Pod {
	t.Helper()
	pods, err := n.DeployWorkloads(ctx, append(seed.SeedWorkloads(), seed.VLLMWorkload()), seedStandins)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// TestSeedWorkloadsOnRealNode: with the chart installed, the seed's Plex
// (annotation only) sees the GPU's device nodes with the host's numbers;
// every workload runs; gpuslice status matches the seed's "After" table;
// the shares the kubelet allocated are the ledger's; and a request beyond
// the 8 shares is refused by the real scheduler and by the kubelet.
func TestSeedWorkloadsOnRealNode(t *testing.T) {
	n := realNode(t)
	installChart(t)
	ctx := testContext(t, 6*time.Minute)
	pods := deploySeed(ctx, t, n)

	cmd := append([]string{"/testbox", "devices"}, devicePaths()...)
	for _, name := range []string{"plex", "vllm-server"} {
		if got, want := execIn(ctx, t, n, pods[name], cmd...), deviceLines(true); got != want {
			t.Errorf("%s sees:\n%s\nwant the host's device nodes:\n%s", name, got, want)
		}
	}
	if got, want := execIn(ctx, t, n, pods["ollama"], cmd...), deviceLines(false); got != want {
		t.Errorf("ollama (shares only, no annotation) sees:\n%s\nwant none:\n%s", got, want)
	}
	// The device plugin's Allocate answer reached the container.
	if got := execIn(ctx, t, n, pods["ollama"], "/testbox", "env", "NVIDIA_VISIBLE_DEVICES"); got != "NVIDIA_VISIBLE_DEVICES="+rn.FakeGPUUUID+"\n" {
		t.Errorf("ollama's NVIDIA_VISIBLE_DEVICES: %q, want the device plugin's %s", got, rn.FakeGPUUUID)
	}

	golden, err := os.ReadFile(filepath.Join("..", "e2e", "testdata", "status-after.golden"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := gpuslice(ctx, t, n, "status", "--node", n.Name)
	if err != nil {
		t.Fatalf("gpuslice status: %v\n%s", err, out)
	}
	if out != string(golden) {
		t.Errorf("gpuslice status on the real node:\n%s\nwant the seed's After table (test/e2e/testdata/status-after.golden):\n%s", out, golden)
	}

	// The kubelet's own account of the shares: its pod-resources API.
	allocated := kubeletAllocated(ctx, t, n)
	total := 0
	for _, ids := range allocated {
		total += len(ids)
	}
	if total != 6 {
		t.Errorf("the kubelet allocated %d %s (%v), want the ledger's 6/8", total, sharedResource, allocated)
	}
	for pod, want := range map[string]int{"ollama": 1, "tts": 1, "whisper": 2, "vllm-server": 2} {
		if got := len(allocated[pods[pod].Namespace+"/"+pods[pod].Name]); got != want {
			t.Errorf("the kubelet allocated %s %d shares, want %d", pod, got, want)
		}
	}

	// Three more shares than the 2 left: the scheduler keeps the pod
	// Pending, and the kubelet refuses it when bound by hand.
	greedy := n.TestboxPod("ai", "greedy")
	three := resource.MustParse("3")
	greedy.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{sharedResource: three}, Limits: corev1.ResourceList{sharedResource: three},
	}
	if _, err := n.Client.CoreV1().Pods("ai").Create(ctx, greedy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(ctx, t, n, "ai", "greedy", "FailedScheduling", "Insufficient "+sharedResource)
	bound := n.TestboxPod("ai", "greedy-bound")
	bound.Spec.NodeSelector = nil
	bound.Spec.NodeName = n.Name
	bound.Spec.Containers[0].Resources = greedy.Spec.Containers[0].Resources
	if _, err := n.Client.CoreV1().Pods("ai").Create(ctx, bound, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := n.Client.CoreV1().Pods("ai").Get(ctx, bound.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		// The kubelet's device manager: "Allocate failed due to requested
		// number of devices unavailable for nvidia.com/gpu.shared.
		// Requested: 3, Available: 2".
		return p.Status.Phase == corev1.PodFailed && strings.Contains(p.Status.Message, "devices unavailable for "+sharedResource+". Requested: 3, Available: 2"), nil
	})
	if err != nil {
		p, _ := n.Client.CoreV1().Pods("ai").Get(ctx, bound.Name, metav1.GetOptions{})
		t.Errorf("a pod bound to the node asking 3 of the 2 free shares was not refused by the kubelet: %v (status %+v)", err, p.Status)
	}
	// Each share-holding pod's devices came from one of the plugin's
	// Allocate answers (earlier tests restart pods, so there may be more
	// answers than pods).
	answered := map[string]bool{}
	for _, ids := range n.Plugin.Allocated() {
		ids = slices.Clone(ids)
		sort.Strings(ids)
		answered[strings.Join(ids, ",")] = true
	}
	for pod, ids := range allocated {
		if !answered[strings.Join(ids, ",")] {
			t.Errorf("the kubelet gave %s the devices %v, which no Allocate answer of the plugin holds (%v)", pod, ids, n.Plugin.Allocated())
		}
	}
}

// kubeletAllocated asks the kubelet's pod-resources API which of the
// plugin's device IDs each pod holds, keyed by namespace/name.
func kubeletAllocated(ctx context.Context, t *testing.T, n *rn.RealNode) map[string][]string {
	t.Helper()
	sock := filepath.Join(n.NodeDir(), "kubelet", "root", "pod-resources", "kubelet.sock")
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := podresources.NewPodResourcesListerClient(conn).List(ctx, &podresources.ListPodResourcesRequest{})
	if err != nil {
		t.Fatalf("the kubelet's pod-resources API at %s: %v", sock, err)
	}
	out := map[string][]string{}
	for _, p := range resp.PodResources {
		for _, c := range p.Containers {
			for _, d := range c.Devices {
				if d.ResourceName == sharedResource {
					key := p.Namespace + "/" + p.Name
					out[key] = append(out[key], d.DeviceIds...)
				}
			}
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

// waitEvent waits for an event of reason about the object whose message
// holds text.
func waitEvent(ctx context.Context, t *testing.T, n *rn.RealNode, ns, name, reason, text string) string {
	t.Helper()
	var msg string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := n.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Reason == reason && strings.Contains(e.Message, text) {
				msg = e.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event for %s/%s saying %q: %v; its events: %s", reason, ns, name, text, err, n.Events(ctx, ns, name))
	}
	return msg
}

// TestBrokenRuntimeHandler: a pod whose RuntimeClass names a handler the
// node's containerd lacks fails as on a K3s without the NVIDIA runtime, and
// gpuslice doctor names the cause from the kubelet's real event.
func TestBrokenRuntimeHandler(t *testing.T) {
	n := realNode(t)
	installChart(t)
	ctx := testContext(t, 4*time.Minute)
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "nvidia-legacy"}, Handler: "nvidia-legacy"}
	if _, err := n.Client.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := n.TestboxPod("default", "broken-runtime")
	p.Spec.RuntimeClassName = &rc.Name
	if _, err := n.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}) })
	event := waitEvent(ctx, t, n, p.Namespace, p.Name, "FailedCreatePodSandBox", `no runtime for "nvidia-legacy" is configured`)
	t.Logf("the kubelet's event: %s", event)
	out, err := gpuslice(ctx, t, n, "doctor", "pod/"+p.Name, "-n", p.Namespace)
	if err == nil {
		t.Errorf("gpuslice doctor exited 0 on a pod that cannot start:\n%s", out)
	}
	for _, want := range []string{"no handler nvidia-legacy", `no runtime for \"nvidia-legacy\" is configured`, "NVIDIA container toolkit"} {
		if !strings.Contains(out, want) && !strings.Contains(out, strings.ReplaceAll(want, `\"`, `"`)) {
			t.Errorf("gpuslice doctor does not say %q:\n%s", want, out)
		}
	}
}
