// Package realevening plays the seed's evening on the real node
// (internal/harness/localcluster/realnode: kubelet, containerd, runc and the
// stand-in NVML whose processes are real) and times what a Plex viewer
// waits for: from a hardware transcode appearing in the stand-in Plex's
// /status/sessions to
//
//	(a) vLLM's spec.replicas 0 (the arbiter's decision),
//	(b) the vLLM container's process gone from the host (ReplicaSet
//	    controller, kubelet, termination, runtime),
//	(c) its memory free in the agent's metrics (read through the API
//	    server's pods proxy, as the arbiter reads them),
//
// and, the transcode over, to (d) vLLM Ready again (hold-down included).
// The chart runs the agent and the arbiter (1 s interval, the agents as
// memory source) from the image hack/image builds; vLLM keeps the seed's
// termination grace period (unset: Kubernetes' 30 s).
//
// bench/realnode repeats the cycle; gpuslice demo --real-node (built with
// -tags realnode) plays it once.
package realevening

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/chart"
	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const mib = 1 << 20

// Stages are the times a cycle measures, in the order a viewer lives them.
var Stages = []string{"replicas 0", "process gone", "memory free", "Ready again"}

// Grace is vLLM's termination grace period in the evening: the seed's,
// which leaves it unset.
const Grace = "30s (the seed's: unset)"

// vllmName is the seed's vLLM Deployment.
const vllmName = "vllm-server"

// Evening is the seed's Plex and vLLM on the real node, with the chart's
// agent and arbiter watching them.
type Evening struct {
	node  *rn.RealNode
	plex  *corev1.Pod
	vllm  *corev1.Pod
	agent *corev1.Pod
}

// Setup installs the chart, the stand-in Plex and vLLM (the seed's, with
// its grace period) and the arbiter with holdDown, and waits for vLLM's
// memory in the agent's metrics.
func Setup(ctx context.Context, n *rn.RealNode, holdDown string) (*Evening, error) {
	if _, err := n.InstallChart(ctx, nil); err != nil {
		return nil, err
	}
	var plexW seed.Workload
	for _, w := range seed.SeedWorkloads() {
		if w.Deployment.Name == "plex" {
			plexW = w
		}
	}
	if plexW.Deployment == nil {
		return nil, errors.New("the seed has no plex Deployment")
	}
	vllmW := seed.VLLMWorkload()
	plexW.Deployment.Annotations = map[string]string{workload.AnnotationProtected: "true", workload.AnnotationPriority: "1000000"}
	vllmW.Deployment.Annotations = map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPriority: "1000"}
	pods, err := n.DeployWorkloads(ctx, []seed.Workload{plexW, vllmW}, rn.Standins{GPU: map[string]string{"vllm": ""}, Plex: "plex"})
	if err != nil {
		return nil, err
	}
	e := &Evening{node: n, plex: pods["plex"], vllm: pods[vllmName]}
	r, err := n.RenderChart(rn.ArbiterValues(rn.PlexURL(e.plex), holdDown))
	if err != nil {
		return nil, err
	}
	if err := n.Apply(ctx, r.Objects()); err != nil {
		return nil, err
	}
	if _, err := n.WaitDeployment(ctx, chart.DefaultNamespace, rn.ArbiterDeployment, 3*time.Minute); err != nil {
		return nil, err
	}
	if e.agent, err = n.WaitAgentReady(ctx, true); err != nil {
		return nil, err
	}
	return e, e.waitVLLMMemory(ctx)
}

// Cycle times one transcode and its end: the four Stages. beforeFlip runs
// before the transcode starts and before it ends (bench/realnode waits a
// random phase of the arbiter's interval there); nil waits nothing.
func (e *Evening) Cycle(ctx context.Context, beforeFlip func(context.Context) error) ([]time.Duration, error) {
	if beforeFlip == nil {
		beforeFlip = func(context.Context) error { return nil }
	}
	n, ns := e.node, e.vllm.Namespace
	pid, err := n.HostPID(ctx, e.vllm)
	if err != nil {
		return nil, err
	}
	times := make([]time.Duration, len(Stages))
	var wg sync.WaitGroup
	errs := make([]error, 3)
	if err := beforeFlip(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := n.SetTranscoding(ctx, e.plex, true); err != nil {
		return nil, err
	}
	watch := func(i int, interval time.Duration, done func(context.Context) bool) {
		defer wg.Done()
		errs[i] = wait.PollUntilContextTimeout(ctx, interval, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			return done(ctx), nil
		})
		times[i] = time.Since(start)
	}
	wg.Add(3)
	go watch(0, 10*time.Millisecond, func(ctx context.Context) bool {
		d, err := n.Client.AppsV1().Deployments(ns).Get(ctx, vllmName, metav1.GetOptions{})
		return err == nil && *d.Spec.Replicas == 0
	})
	go watch(1, 5*time.Millisecond, func(context.Context) bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return errors.Is(err, os.ErrNotExist)
	})
	go watch(2, 20*time.Millisecond, func(ctx context.Context) bool {
		used, ok := e.usedMiB(ctx)
		return ok && used == 0
	})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w", Stages[i], err)
		}
	}
	// The arbiter waits for the pods to be gone before it counts the
	// preemption done; let it see that, then end the transcode.
	if _, err := n.WaitDeployment(ctx, ns, vllmName, 3*time.Minute); err != nil {
		return nil, err
	}
	if err := beforeFlip(ctx); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := n.SetTranscoding(ctx, e.plex, false); err != nil {
		return nil, err
	}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := n.Client.AppsV1().Deployments(ns).Get(ctx, vllmName, metav1.GetOptions{})
		return err == nil && *d.Spec.Replicas == 1 && d.Status.ReadyReplicas == 1 && d.Status.Replicas == 1, nil
	})
	times[3] = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("waiting for vLLM Ready again: %w", err)
	}
	if e.vllm, err = n.WaitDeployment(ctx, ns, vllmName, 3*time.Minute); err != nil {
		return nil, err
	}
	return times, e.waitVLLMMemory(ctx)
}

// usedMiB is GPU 0's used memory in the agent's metrics.
func (e *Evening) usedMiB(ctx context.Context) (int64, bool) {
	families, err := e.node.AgentMetrics(ctx, e.agent)
	if err != nil {
		return 0, false
	}
	v, ok := rn.Sample(families, agent.MetricGPUMemoryUsed, map[string]string{agent.LabelGPU: "0"})
	return int64(v) / mib, ok
}

// waitVLLMMemory waits until the agent attributes memory to vLLM's pod:
// the steady state each cycle starts from.
func (e *Evening) waitVLLMMemory(ctx context.Context) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		families, err := e.node.AgentMetrics(ctx, e.agent)
		if err != nil {
			return false, nil
		}
		v, ok := rn.Sample(families, agent.MetricPodGPUMemory, map[string]string{agent.LabelNamespace: e.vllm.Namespace, agent.LabelPod: e.vllm.Name})
		return ok && v > 0, nil
	})
}
