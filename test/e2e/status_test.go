package e2e

import (
	"bytes"
	"context"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gpuslice/gpuslice/internal/testutil/golden"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func statusTable(ctx context.Context, t *testing.T, cs kubernetes.Interface, opt ledger.Options) []byte {
	t.Helper()
	report, err := snapshot.Ledger(ctx, cs, opt)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := ledger.WriteTable(&b, report, false); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestStatusSeedCluster: the seed's workloads, deployed as Deployments that
// kube-controller-manager turns into pods and kube-scheduler binds, give the
// seed's "Before" and "After AI-dev Deployment" tables.
func TestStatusSeedCluster(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, seed.SeedWorkloads()...); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/status-before.golden", statusTable(ctx, t, cs, ledger.Options{}))
	if err := demo.Deploy(ctx, env.Cluster, seed.VLLMWorkload()); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/status-after.golden", statusTable(ctx, t, cs, ledger.Options{}))
	golden.Check(t, "testdata/status-after-ai.golden", statusTable(ctx, t, cs, ledger.Options{Namespace: "ai"}))

	// Pods that finished or failed hold no share. (A Deployment's pod would
	// just be replaced by kube-controller-manager, so use bare pods.)
	for _, phase := range []corev1.PodPhase{corev1.PodSucceeded, corev1.PodFailed} {
		pod := plainPod("ai", "batch-"+strings.ToLower(string(phase)))
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
		pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "homelabai"}
		one := resource.MustParse("1")
		pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"nvidia.com/gpu.shared": one}
		if _, err := cs.CoreV1().Pods("ai").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := demo.WaitBound(ctx, cs, "ai", pod.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Cluster.SetPodRunning(ctx, "ai", pod.Name, true); err != nil {
			t.Fatal(err)
		}
		report, err := snapshot.Ledger(ctx, cs, ledger.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if u := sharedUsage(t, report, "homelabai"); u.Allocated != 7 {
			t.Errorf("running %s: allocated %d, want 7", pod.Name, u.Allocated)
		}
		if _, err := env.Cluster.SetPodStatus(ctx, "ai", pod.Name, func(p *corev1.Pod) { p.Status.Phase = phase }); err != nil {
			t.Fatal(err)
		}
		// The earlier batch pod finished too: back to the seed's 6.
		if report, err = snapshot.Ledger(ctx, cs, ledger.Options{}); err != nil {
			t.Fatal(err)
		}
		if u := sharedUsage(t, report, "homelabai"); u.Allocated != 6 || u.Free != 2 {
			t.Errorf("after %s %s: allocated %d free %d, want 6 and 2", pod.Name, phase, u.Allocated, u.Free)
		}
	}
}

// TestStatusListsOwnersAsMetadata: the ledger reads only a ReplicaSet's or
// Job's controller, so status asks for their metadata, not their pod
// templates, and still names pods by their Deployment.
func TestStatusListsOwnersAsMetadata(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	if err := demo.Deploy(ctx, env.Cluster, seed.VLLMWorkload()); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Cluster.Config)
	var mu sync.Mutex
	asked := map[string]string{} // resource -> the request's Accept
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			asked[path.Base(req.URL.Path)] = req.Header.Get("Accept")
			mu.Unlock()
			return rt.RoundTrip(req)
		})
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	report, err := snapshot.Ledger(ctx, cs, ledger.Options{Namespace: "ai-dev"})
	if err != nil {
		t.Fatal(err)
	}
	for _, resource := range []string{"replicasets", "jobs"} {
		if accept := asked[resource]; !strings.Contains(accept, "as=PartialObjectMetadataList") {
			t.Errorf("%s asked for %q, want metadata only (as=PartialObjectMetadataList)", resource, accept)
		}
	}
	var kinds []string
	for _, n := range report.Nodes {
		for _, w := range n.Workloads {
			kinds = append(kinds, w.Kind+"/"+w.Name)
		}
	}
	if !slices.Contains(kinds, "Deployment/vllm-server") {
		t.Errorf("workloads %v: want vLLM's pods named by their Deployment, found through its ReplicaSet", kinds)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestStatusTwoGPUNode: a node with two GPUs time-sliced 4 ways each
// advertises 8 shares; the scheduler fills it and refuses the ninth.
func TestStatusTwoGPUNode(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	node := seed.Node{
		Name: "gpubox",
		Labels: map[string]string{
			"nvidia.com/gpu.product": "NVIDIA-RTX-A4000-SHARED", "nvidia.com/gpu.count": "2",
			"nvidia.com/gpu.memory": "16376", "nvidia.com/gpu.replicas": "4",
		},
		Resources: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("0"), "nvidia.com/gpu.shared": resource.MustParse("8")},
	}
	if _, err := env.Cluster.AddNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	var workloads []seed.Workload
	for _, w := range []struct {
		name   string
		shares int64
	}{{"trainer", 4}, {"embedder", 3}} {
		wl := seed.Workload{Deployment: seed.SharesDeployment("lab", w.name, w.shares)}
		wl.Deployment.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "gpubox"}
		workloads = append(workloads, wl)
	}
	if err := demo.Deploy(ctx, env.Cluster, workloads...); err != nil {
		t.Fatal(err)
	}
	report, err := snapshot.Ledger(ctx, cs, ledger.Options{Node: "gpubox"})
	if err != nil {
		t.Fatal(err)
	}
	n := report.Nodes[0]
	if n.GPUCount != 2 || n.GPUReplicas != 4 || n.VRAM.AvailableBytes != 2*16376<<20 {
		t.Errorf("node info: %d GPUs, %d replicas, %d bytes", n.GPUCount, n.GPUReplicas, n.VRAM.AvailableBytes)
	}
	if u := sharedUsage(t, report, "gpubox"); u.Allocatable != 8 || u.Allocated != 7 || u.Free != 1 {
		t.Errorf("gpubox shares: %+v, want 7 of 8 allocated", u)
	}
	golden.Check(t, "testdata/status-gpubox.golden", statusTable(ctx, t, cs, ledger.Options{Node: "gpubox"}))
}

// TestStatusErrors: an unreachable cluster and a user without RBAC get
// errors that say what to do.
func TestStatusErrors(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cfg := rest.CopyConfig(env.Cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "jane"}
	forbidden, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Ledger(ctx, forbidden, ledger.Options{}); err == nil || !strings.Contains(err.Error(), "grant get and list on nodes") {
		t.Errorf("without RBAC: %v", err)
	}
	down := rest.CopyConfig(env.Cluster.Config)
	down.Host = "https://127.0.0.1:1"
	unreachable, err := kubernetes.NewForConfig(down)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Ledger(ctx, unreachable, ledger.Options{}); err == nil || !strings.Contains(err.Error(), "cannot reach the Kubernetes API server") {
		t.Errorf("unreachable: %v", err)
	}
}

func sharedUsage(t *testing.T, r *ledger.Report, node string) ledger.ResourceUsage {
	t.Helper()
	for _, n := range r.Nodes {
		if n.Name != node {
			continue
		}
		for _, u := range n.Resources {
			if u.Name == "nvidia.com/gpu.shared" {
				return u
			}
		}
	}
	t.Fatalf("node %s has no nvidia.com/gpu.shared in %+v", node, r)
	return ledger.ResourceUsage{}
}

// TestStatusReleasedAndLowered: a workload released (it has no pods left)
// and one lowered are listed with who, when, why and the undo, instead of
// vanishing from the share table; restore takes the release off the list.
func TestStatusReleasedAndLowered(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, append(seed.SeedWorkloads(), seed.VLLMWorkload())...); err != nil {
		t.Fatal(err)
	}
	whisper := workload.Ref{Kind: workload.KindDeployment, Namespace: "ai", Name: "whisper"}
	if _, err := ops.Release(ctx, cs, whisper, ops.ReleaseOptions{By: "alice", Reason: "movie night"}); err != nil {
		t.Fatal(err)
	}
	vllm := workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}
	if _, err := ops.Lower(ctx, cs, vllm, ops.LowerOptions{Fraction: "0.30", Node: "homelabai", Reason: "free GPU memory low"}); err != nil {
		t.Fatal(err)
	}
	playKubeletDeletions(ctx, t, cs, "ai", "app=whisper")
	table := string(statusTable(ctx, t, cs, ledger.Options{}))
	if strings.Contains(table, "whisper       ai          shares") {
		t.Errorf("whisper's pod still counted:\n%s", table)
	}
	for _, want := range []string{
		"RELEASED OR LOWERED",
		"deployment/whisper       ai          released   1 → 0 replicas",
		"alice", "movie night", "gpuslice restore deployment/whisper -n ai",
		"deployment/vllm-server   ai-dev      lowered    GPU_MEMORY_UTILIZATION 0.70 → 0.30   gpuslice arbiter",
		"free GPU memory low", "gpuslice restore deployment/vllm-server -n ai-dev (or wait: the arbiter raises it after its hold-down)",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("status lacks %q:\n%s", want, table)
		}
	}
	if _, err := ops.Restore(ctx, cs, whisper, ops.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := snapshot.Ledger(ctx, cs, ledger.Options{Namespace: "ai"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Interventions) != 0 {
		t.Errorf("after restore, -n ai: %+v", r.Interventions)
	}
}
