// Command realnode measures what a Plex viewer waits for on the real node
// (internal/harness/localcluster/realnode: kubelet, containerd, runc, the
// stand-in NVML whose processes are real): from a hardware transcode
// appearing in the stand-in Plex's /status/sessions to
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
// termination grace period (unset: Kubernetes' 30 s). It needs root.
//
//	go run ./bench/realnode [-cycles 30] [-hold-down 5s] [-seed 1] [-json]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/bench/internal/benchstat"
	"github.com/gpuslice/gpuslice/internal/chart"
	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const mib = 1 << 20

// Stage names, in the order a viewer lives them.
var stages = []string{"replicas 0", "process gone", "memory free", "Ready again"}

// phase draws the wait before each flip, uniform over one arbiter
// interval (1 s), so flips land at random phases of its ticker, as in
// bench/arbiter; without it the numbers depend on where a cycle starts.
var phase *rand.Rand

func randomPhase(ctx context.Context) error {
	t := time.NewTimer(time.Duration(phase.Int64N(int64(time.Second))))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

type result struct {
	Cycles   int                `json:"cycles"`
	HoldDown string             `json:"holdDown"`
	Grace    string             `json:"terminationGracePeriod"`
	Stages   map[string][]int64 `json:"stagesMillis"`
	Machine  map[string]string  `json:"machine"`
}

func main() {
	cycles := flag.Int("cycles", 30, "transcodes to time")
	holdDown := flag.String("hold-down", "5s", "the arbiter's --hold-down")
	asJSON := flag.Bool("json", false, "print the samples as JSON")
	seedFlag := flag.Uint64("seed", 1, "seed of the random phase before each flip")
	flag.Parse()
	phase = rand.New(rand.NewPCG(*seedFlag, 0))
	if err := run(*cycles, *holdDown, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "bench/realnode:", err)
		os.Exit(1)
	}
}

func run(cycles int, holdDown string, asJSON bool) error {
	if cycles < 1 {
		return errors.New("-cycles must be at least 1")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	n, err := rn.StartRealNode(ctx, rn.RealNodeOptions{Labels: seed.HomelabAI().Labels, Progress: os.Stderr})
	if err != nil {
		return err
	}
	defer n.Stop()
	plex, vllm, agentPod, err := setUp(ctx, n, holdDown)
	if err != nil {
		return err
	}
	res := result{Cycles: cycles, HoldDown: holdDown, Grace: "30s (the seed's: unset)", Stages: map[string][]int64{}, Machine: benchstat.Machine()}
	for i := range cycles {
		times, next, err := cycle(ctx, n, plex, vllm, agentPod)
		if err != nil {
			return fmt.Errorf("cycle %d: %w", i+1, err)
		}
		vllm = next
		for j, s := range stages {
			res.Stages[s] = append(res.Stages[s], times[j].Milliseconds())
		}
		fmt.Fprintf(os.Stderr, "cycle %d/%d: %v\n", i+1, cycles, times)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Printf("%d cycles, hold-down %s, vLLM termination grace period %s\n", cycles, holdDown, res.Grace)
	fmt.Printf("| From the transcode appearing to | p50 | p99 | max |\n|---|---|---|---|\n")
	for _, s := range stages {
		d := make([]time.Duration, 0, len(res.Stages[s]))
		for _, ms := range res.Stages[s] {
			d = append(d, time.Duration(ms)*time.Millisecond)
		}
		slices.Sort(d)
		label := s
		if s == "Ready again" {
			label = "(the transcode ending to) vLLM Ready again"
		}
		fmt.Printf("| %s | %s | %s | %s |\n", label, benchstat.Percentile(d, 0.5), benchstat.Percentile(d, 0.99), d[len(d)-1])
	}
	fmt.Printf("machine: %v\n", res.Machine)
	return nil
}

// setUp installs the chart, the stand-in Plex and vLLM (the seed's, with
// its grace period) and the arbiter, and waits for vLLM's memory in the
// agent's metrics.
func setUp(ctx context.Context, n *rn.RealNode, holdDown string) (plex, vllm, agentPod *corev1.Pod, err error) {
	if _, err := n.InstallChart(ctx, nil); err != nil {
		return nil, nil, nil, err
	}
	var plexW seed.Workload
	for _, w := range seed.SeedWorkloads() {
		if w.Deployment.Name == "plex" {
			plexW = w
		}
	}
	if plexW.Deployment == nil {
		return nil, nil, nil, errors.New("the seed has no plex Deployment")
	}
	vllmW := seed.VLLMWorkload()
	plexW.Deployment.Annotations = map[string]string{workload.AnnotationProtected: "true", workload.AnnotationPriority: "1000000"}
	vllmW.Deployment.Annotations = map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPriority: "1000"}
	pods, err := n.DeployWorkloads(ctx, []seed.Workload{plexW, vllmW}, rn.Standins{GPU: map[string]string{"vllm": ""}, Plex: "plex"})
	if err != nil {
		return nil, nil, nil, err
	}
	plex, vllm = pods["plex"], pods["vllm-server"]
	r, err := n.RenderChart(rn.ArbiterValues(rn.PlexURL(plex), holdDown))
	if err != nil {
		return nil, nil, nil, err
	}
	if err := n.Apply(ctx, r.Objects()); err != nil {
		return nil, nil, nil, err
	}
	if _, err := n.WaitDeployment(ctx, chart.DefaultNamespace, rn.ArbiterDeployment, 3*time.Minute); err != nil {
		return nil, nil, nil, err
	}
	if agentPod, err = n.WaitAgentReady(ctx, true); err != nil {
		return nil, nil, nil, err
	}
	return plex, vllm, agentPod, waitVLLMMemory(ctx, n, agentPod, vllm)
}

// cycle times one transcode and its end; it returns the four times and
// vLLM's new pod.
func cycle(ctx context.Context, n *rn.RealNode, plex, vllm, agentPod *corev1.Pod) ([]time.Duration, *corev1.Pod, error) {
	ns, name := vllm.Namespace, "vllm-server"
	pid, err := n.HostPID(ctx, vllm)
	if err != nil {
		return nil, nil, err
	}
	times := make([]time.Duration, len(stages))
	var wg sync.WaitGroup
	errs := make([]error, 3)
	if err := randomPhase(ctx); err != nil {
		return nil, nil, err
	}
	start := time.Now()
	if err := n.SetTranscoding(ctx, plex, true); err != nil {
		return nil, nil, err
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
		d, err := n.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && *d.Spec.Replicas == 0
	})
	go watch(1, 5*time.Millisecond, func(context.Context) bool {
		_, err := os.Stat("/proc/" + strconv.Itoa(pid))
		return errors.Is(err, os.ErrNotExist)
	})
	go watch(2, 20*time.Millisecond, func(ctx context.Context) bool {
		used, ok := usedMiB(ctx, n, agentPod)
		return ok && used == 0
	})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, nil, fmt.Errorf("waiting for %s: %w", stages[i], err)
		}
	}
	// The arbiter waits for the pods to be gone before it counts the
	// preemption done; let it see that, then end the transcode.
	if _, err := n.WaitDeployment(ctx, ns, name, 3*time.Minute); err != nil {
		return nil, nil, err
	}
	if err := randomPhase(ctx); err != nil {
		return nil, nil, err
	}
	start = time.Now()
	if err := n.SetTranscoding(ctx, plex, false); err != nil {
		return nil, nil, err
	}
	var next *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := n.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && *d.Spec.Replicas == 1 && d.Status.ReadyReplicas == 1 && d.Status.Replicas == 1, nil
	})
	times[3] = time.Since(start)
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for vLLM Ready again: %w", err)
	}
	if next, err = n.WaitDeployment(ctx, ns, name, 3*time.Minute); err != nil {
		return nil, nil, err
	}
	return times, next, waitVLLMMemory(ctx, n, agentPod, next)
}

// usedMiB is GPU 0's used memory in the agent's metrics.
func usedMiB(ctx context.Context, n *rn.RealNode, agentPod *corev1.Pod) (int64, bool) {
	families, err := n.AgentMetrics(ctx, agentPod)
	if err != nil {
		return 0, false
	}
	v, ok := rn.Sample(families, agent.MetricGPUMemoryUsed, map[string]string{agent.LabelGPU: "0"})
	return int64(v) / mib, ok
}

// waitVLLMMemory waits until the agent attributes memory to vLLM's pod:
// the steady state each cycle starts from.
func waitVLLMMemory(ctx context.Context, n *rn.RealNode, agentPod, vllm *corev1.Pod) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		families, err := n.AgentMetrics(ctx, agentPod)
		if err != nil {
			return false, nil
		}
		v, ok := rn.Sample(families, agent.MetricPodGPUMemory, map[string]string{agent.LabelNamespace: vllm.Namespace, agent.LabelPod: vllm.Name})
		return ok && v > 0, nil
	})
}
