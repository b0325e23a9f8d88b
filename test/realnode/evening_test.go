package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/chart"
	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// eveningHoldDown is the arbiter's hold-down in the evening test: short,
// so the way back is part of the test.
const eveningHoldDown = "5s"

// policy are the arbiter's annotations on the seed's Deployments, as
// seed.ArbitratedWorkloads gives them (priorities as annotations: the
// seed's Deployments here have no PriorityClass). Ollama becomes
// preemptible for the memory-pressure step only: a transcode would
// otherwise preempt it before vLLM, being lower.
var policy = map[string]map[string]any{
	"media/plex":         {workload.AnnotationProtected: "true", workload.AnnotationPriority: "1000000"},
	"ai-dev/vllm-server": {workload.AnnotationPreemptible: "true", workload.AnnotationPriority: "1000"},
	"ai/ollama":          {workload.AnnotationPriority: "500"},
}

// annotate merges annotations into a Deployment's metadata (nil values
// remove them).
func annotate(ctx context.Context, t *testing.T, n *rn.RealNode, ns, name string, a map[string]any) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": a}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("annotating Deployment %s/%s: %v", ns, name, err)
	}
}

// waitReplicas waits for the arbiter to set a Deployment's spec.replicas.
func waitReplicas(ctx context.Context, t *testing.T, n *rn.RealNode, ns, name string, want int32) {
	t.Helper()
	var got int32
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := n.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = *d.Spec.Replicas
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("Deployment %s/%s: spec.replicas %d, want %d: %v; its events: %s", ns, name, got, want, err, n.Events(ctx, ns, name))
	}
}

// waitDeployment waits for a Deployment's pods to settle and returns one.
func waitDeployment(ctx context.Context, t *testing.T, n *rn.RealNode, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := n.WaitDeployment(ctx, ns, name, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitMetrics scrapes the agent until check says nothing differs.
func waitMetrics(ctx context.Context, t *testing.T, n *rn.RealNode, agentPod *corev1.Pod, what string, check func(map[string]*dto.MetricFamily) string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		families, err := n.AgentMetrics(ctx, agentPod)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = check(families)
		return last == "", nil
	})
	if err != nil {
		t.Fatalf("%s: the agent's metrics never showed it: %v: %s", what, err, last)
	}
}

// memoryIs checks the MiB the agent attributes to vLLM's pod (-1: no
// series) and the GPU's used memory.
func memoryIs(vllm *corev1.Pod, vllmMiB, usedMiB int64) func(map[string]*dto.MetricFamily) string {
	return func(families map[string]*dto.MetricFamily) string {
		var diffs string
		if vllm != nil {
			if got := podMemoryMiB(families, vllm, "vllm"); got != vllmMiB {
				diffs += fmt.Sprintf("vLLM pod %s: %d MiB, want %d; ", vllm.Name, got, vllmMiB)
			}
		}
		used, _ := rn.Sample(families, agent.MetricGPUMemoryUsed, map[string]string{agent.LabelGPU: "0"})
		if int64(used)/mib != usedMiB {
			diffs += fmt.Sprintf("GPU 0 used %d MiB, want %d", int64(used)/mib, usedMiB)
		}
		return diffs
	}
}

// TestEveningOnRealNode: the arbiter as the chart runs it, with the
// stand-in Plex in the seed's media/plex pod and the agents as its memory
// source, on the seed's workloads (real containers whose processes hold
// the stand-in GPU's memory):
//   - a hardware transcode scales vLLM to zero, the kubelet stops its
//     container and the agent sees its memory free; the transcode over,
//     vLLM comes back after the hold-down and is Ready again;
//   - preempt-action lower-memory=0.30 restarts vLLM with
//     GPU_MEMORY_UTILIZATION 0.30, which the stand-in reads and holds, and
//     the transcode over, 0.70 again;
//   - memory pressure (Ollama's process grows) preempts Ollama, the lowest
//     priority, and leaves vLLM running.
func TestEveningOnRealNode(t *testing.T) {
	n := realNode(t)
	installChart(t)
	ctx := testContext(t, 8*time.Minute)
	pods := deploySeed(ctx, t, n)
	agentPod := waitAgentReady(ctx, t, n, true)
	const ollamaMiB = 1180
	vllm := waitDeployment(ctx, t, n, "ai-dev", "vllm-server")
	waitMetrics(ctx, t, n, agentPod, "the seed's evening before Plex", memoryIs(vllm, vllmMiB, vllmMiB+ollamaMiB))

	for key, a := range policy {
		ns, name, _ := strings.Cut(key, "/")
		annotate(ctx, t, n, ns, name, a)
	}
	r, err := n.RenderChart(rn.ArbiterValues(rn.PlexURL(pods["plex"]), eveningHoldDown))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the arbiter's log:\n%s", podLogs(t, n, chart.DefaultNamespace, "app.kubernetes.io/component=arbiter"))
		}
		removeArbiter(t, n)
	})
	if err := n.Apply(ctx, r.Objects()); err != nil {
		t.Fatal(err)
	}
	waitDeployment(ctx, t, n, chart.DefaultNamespace, rn.ArbiterDeployment)

	// A transcode: vLLM scaled to zero, its container stopped, its memory
	// free in the agent's metrics.
	start := time.Now()
	if err := n.SetTranscoding(ctx, pods["plex"], true); err != nil {
		t.Fatal(err)
	}
	waitReplicas(ctx, t, n, "ai-dev", "vllm-server", 0)
	scaled := time.Since(start)
	waitDeployment(ctx, t, n, "ai-dev", "vllm-server")
	stopped := time.Since(start)
	waitMetrics(ctx, t, n, agentPod, "vLLM's memory released", memoryIs(vllm, -1, ollamaMiB))
	t.Logf("transcode -> vLLM replicas 0 in %s, pods gone in %s, memory free in %s", scaled.Round(time.Millisecond), stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// Over: after the hold-down vLLM is back, Ready, holding its memory.
	start = time.Now()
	if err := n.SetTranscoding(ctx, pods["plex"], false); err != nil {
		t.Fatal(err)
	}
	waitReplicas(ctx, t, n, "ai-dev", "vllm-server", 1)
	vllm = waitDeployment(ctx, t, n, "ai-dev", "vllm-server")
	waitMetrics(ctx, t, n, agentPod, "vLLM back", memoryIs(vllm, vllmMiB, vllmMiB+ollamaMiB))
	t.Logf("transcode over -> vLLM Ready and holding its memory in %s (hold-down %s)", time.Since(start).Round(time.Millisecond), eveningHoldDown)

	// lower-memory=0.30: the transcode restarts vLLM with the new value,
	// which the stand-in reads and holds.
	//
	// With the Deployment's default RollingUpdate the restarted pod starts
	// beside the old one, both processes hold memory (0.70 + 0.30 of the
	// GPU beside Ollama: more than there is), the agents report 0 free,
	// the arbiter lowers again, and the restore and the lowering take
	// turns for ever (seen here first; docs/arbiter.md). Recreate, which a
	// GPU workload taking a fixed fraction needs anyway (a real vLLM would
	// fail to start beside its old self), stops the old pod first.
	setStrategy(ctx, t, n, "ai-dev", "vllm-server", appsv1.RecreateDeploymentStrategyType)
	annotate(ctx, t, n, "ai-dev", "vllm-server", map[string]any{workload.AnnotationPreemptAction: "lower-memory=0.30"})
	arbiterSees(ctx, t, n)
	if err := n.SetTranscoding(ctx, pods["plex"], true); err != nil {
		t.Fatal(err)
	}
	const loweredMiB = 3686 // 0.30 of 12288 MiB
	lowered := waitNewPod(ctx, t, n, "ai-dev", "vllm-server", vllm.UID)
	if got, err := n.GPUMemory(ctx, lowered); err != nil || got != loweredMiB {
		t.Errorf("the restarted vLLM holds %d MiB (%v), want %d: GPU_MEMORY_UTILIZATION 0.30 of 12288", got, err, loweredMiB)
	}
	waitMetrics(ctx, t, n, agentPod, "vLLM lowered", memoryIs(lowered, loweredMiB, loweredMiB+ollamaMiB))
	if err := n.SetTranscoding(ctx, pods["plex"], false); err != nil {
		t.Fatal(err)
	}
	raised := waitNewPod(ctx, t, n, "ai-dev", "vllm-server", lowered.UID)
	waitMetrics(ctx, t, n, agentPod, "vLLM raised again", memoryIs(raised, vllmMiB, vllmMiB+ollamaMiB))
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := n.Client.AppsV1().Deployments("ai-dev").Get(ctx, "vllm-server", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		_, recorded := d.Annotations[workload.AnnotationLoweredFrom]
		return !recorded, nil
	})
	if err != nil {
		t.Errorf("the lower record stayed on vllm-server after the raise: %v", err)
	}

	// Memory pressure: Ollama's process grows until less than the
	// arbiter's 1 GiB is free; Ollama, the lowest priority, goes first and
	// vLLM keeps running. Ollama stays down: its budget (2Gi-4Gi) would
	// not leave the 2 GiB the arbiter keeps free beside vLLM.
	vllm = raised
	annotate(ctx, t, n, "ai", "ollama", map[string]any{workload.AnnotationPreemptible: "true"})
	arbiterSees(ctx, t, n)
	ollama := waitDeployment(ctx, t, n, "ai", "ollama")
	if err := n.SetGPUMemory(ctx, ollama, 3000); err != nil {
		t.Fatal(err)
	}
	waitMetrics(ctx, t, n, agentPod, "Ollama grown", memoryIs(vllm, vllmMiB, vllmMiB+3000))
	waitReplicas(ctx, t, n, "ai", "ollama", 0)
	waitDeployment(ctx, t, n, "ai", "ollama")
	waitMetrics(ctx, t, n, agentPod, "Ollama's memory released", memoryIs(vllm, vllmMiB, vllmMiB))
	if p := waitDeployment(ctx, t, n, "ai-dev", "vllm-server"); p.UID != vllm.UID {
		t.Errorf("vLLM's pod was replaced (%s -> %s) under memory pressure that preempting Ollama relieved", vllm.Name, p.Name)
	}
}

// arbiterSees returns once the arbiter has seen the Deployment changes
// made so far: its informer delivers them in order, so once it reports an
// invalid policy set after them (a Warning event InvalidPolicy), it has
// the earlier ones too. Without this a transcode can reach the arbiter
// before a policy change does.
func arbiterSees(ctx context.Context, t *testing.T, n *rn.RealNode) {
	t.Helper()
	barrier := fmt.Sprintf("barrier-%d", time.Now().UnixNano())
	annotate(ctx, t, n, "ai", "tts", map[string]any{workload.AnnotationPreemptible: barrier})
	waitEvent(ctx, t, n, "ai", "tts", "InvalidPolicy", barrier)
	annotate(ctx, t, n, "ai", "tts", map[string]any{workload.AnnotationPreemptible: nil})
}

// setStrategy sets a Deployment's update strategy.
func setStrategy(ctx context.Context, t *testing.T, n *rn.RealNode, ns, name string, strategy appsv1.DeploymentStrategyType) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"strategy":{"type":%q,"rollingUpdate":null}}}`, strategy)
	if _, err := n.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("setting Deployment %s/%s's strategy to %s: %v", ns, name, strategy, err)
	}
}

// waitNewPod waits until a Deployment settles on a pod other than old.
func waitNewPod(ctx context.Context, t *testing.T, n *rn.RealNode, ns, name string, old types.UID) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := n.WaitDeployment(ctx, ns, name, 2*time.Minute)
		if err != nil {
			return false, err
		}
		pod = p
		return p != nil && p.UID != old, nil
	})
	if err != nil {
		t.Fatalf("Deployment %s/%s was never restarted: %v; its events: %s", ns, name, err, n.Events(ctx, ns, name))
	}
	return pod
}

// removeArbiter deletes the arbiter and takes the policy off the seed's
// Deployments, leaving them as deploySeed made them (one replica each,
// GPU_MEMORY_UTILIZATION 0.70) for the other tests.
func removeArbiter(t *testing.T, n *rn.RealNode) {
	ctx := testContext(t, 3*time.Minute)
	fg := metav1.DeletePropagationForeground
	if err := n.Client.AppsV1().Deployments(chart.DefaultNamespace).Delete(ctx, rn.ArbiterDeployment, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting the arbiter: %v", err)
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := n.Client.AppsV1().Deployments(chart.DefaultNamespace).Get(ctx, rn.ArbiterDeployment, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("the arbiter Deployment was not deleted: %v", err)
	}
	for key, a := range policy {
		ns, name, _ := strings.Cut(key, "/")
		remove := map[string]any{workload.AnnotationPreemptAction: nil, workload.AnnotationPreemptible: nil}
		for k := range a {
			remove[k] = nil
		}
		for _, k := range append(workload.LowerAnnotations, workload.ReleaseAnnotations...) {
			remove[k] = nil
		}
		annotate(ctx, t, n, ns, name, remove)
		one := []byte(`{"spec":{"replicas":1}}`)
		if _, err := n.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, one, metav1.PatchOptions{}); err != nil {
			t.Errorf("scaling %s back to 1: %v", key, err)
		}
	}
	setStrategy(ctx, t, n, "ai-dev", "vllm-server", appsv1.RollingUpdateDeploymentStrategyType)
	cm := []byte(`{"data":{"` + workload.EnvGPUMemoryUtilization + `":"0.70"}}`)
	if _, err := n.Client.CoreV1().ConfigMaps("ai-dev").Patch(ctx, "vllm-config", types.MergePatchType, cm, metav1.PatchOptions{}); err != nil {
		t.Errorf("restoring vllm-config: %v", err)
	}
	for key := range policy {
		ns, name, _ := strings.Cut(key, "/")
		if _, err := n.WaitDeployment(ctx, ns, name, 2*time.Minute); err != nil {
			t.Error(err)
		}
	}
}

// podLogs is the last lines of the logs of the pods selected, for failure
// messages.
func podLogs(t *testing.T, n *rn.RealNode, ns, selector string) string {
	ctx := testContext(t, 30*time.Second)
	list, err := n.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	tail := int64(60)
	for _, p := range list.Items {
		body, err := n.Client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		fmt.Fprintf(&b, "--- %s (%v)\n%s\n", p.Name, err, body)
	}
	return b.String()
}
