package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/standin/proctest"
	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/gpu"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/top"
)

const (
	mib          = uint64(1) << 20
	pidStale     = 52001 // a pod deleted since its process started
	pidOtherNode = 52002 // a pod on another node: not this agent's
)

// TestAgentTopSeedCluster runs the agent in-process on the recorded RTX
// 3080 Ti, with a proc root naming the UIDs and container IDs of the
// seed's pods as the API server created them, and reads it back with
// gpuslice top through the API server's pods proxy.
func TestAgentTopSeedCluster(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, append(seed.SeedWorkloads(), seed.VLLMWorkload())...); err != nil {
		t.Fatal(err)
	}

	// Play the kubelet: container IDs in the status, as containerd reports them.
	seedPods := map[string]*corev1.Pod{}
	for i, w := range []struct{ ns, app string }{{"media", "plex"}, {"ai", "ollama"}, {"ai", "tts"}, {"ai", "whisper"}, {"ai-dev", "vllm"}} {
		p := onlyPod(ctx, t, env.Cluster, w.ns, w.app)
		p, err := env.Cluster.SetPodStatus(ctx, w.ns, p.Name, func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].ContainerID = "containerd://" + proctest.ContainerID(uint32(i+1))
		})
		if err != nil {
			t.Fatal(err)
		}
		seedPods[w.app] = p
	}
	// A pod on another node, whose process this agent must not claim.
	other := seed.Node{Name: "gpubox", Resources: corev1.ResourceList{}}
	if _, err := env.Cluster.AddNode(ctx, other); err != nil {
		t.Fatal(err)
	}
	elsewhere := plainPod("ai", "batch-on-gpubox")
	elsewhere.Spec.NodeName = "gpubox"
	elsewhere, err := cs.CoreV1().Pods("ai").Create(ctx, elsewhere, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	proc := t.TempDir()
	containerOf := func(app string) string {
		p := seedPods[app]
		return proctest.Container(string(p.UID), strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://"))
	}
	for pid, content := range map[uint32]string{
		gpu.RecordedPIDVLLM: containerOf("vllm"),
		gpu.RecordedPIDTTS:  containerOf("tts"),
		gpu.RecordedPIDPlex: containerOf("plex"),
		gpu.RecordedPIDXorg: proctest.Host("display-manager.service"),
		pidStale:            proctest.Container("deadbeef-0000-4000-8000-000000000000", proctest.ContainerID(9)),
		pidOtherNode:        proctest.Container(string(elsewhere.UID), proctest.ContainerID(10)),
	} {
		if err := proctest.Write(proc, pid, content); err != nil {
			t.Fatal(err)
		}
	}
	nvml := gpu.RecordedRTX3080Ti()
	nvml.Devices[0].Compute = append(nvml.Devices[0].Compute,
		gpu.ProcessInfo{Pid: pidStale, UsedGpuMemory: 256 * mib},
		gpu.ProcessInfo{Pid: pidOtherNode, UsedGpuMemory: 128 * mib})

	// The agent listens where the API server can proxy to: it refuses
	// loopback pod IPs, so a non-loopback address of this machine if any.
	hostIP := nonLoopbackIP()
	listenIP := hostIP
	if listenIP == "" {
		listenIP = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(listenIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	pods, err := agent.NodePods(env.Cluster.Config, "homelabai")
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{
		NodeName: "homelabai", Pods: pods, NVML: nvml, ProcRoot: proc,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(actx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		ok, _ := a.Readiness()
		return ok, nil
	})
	if err != nil {
		_, why := a.Readiness()
		t.Fatalf("agent not ready: %v (%s)", err, why)
	}

	// The agent's own pod, as the DaemonSet would make it.
	if err := demo.EnsureNamespace(ctx, cs, top.DefaultAgentNamespace); err != nil {
		t.Fatal(err)
	}
	agentPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gpuslice-agent-x7k2p", Namespace: top.DefaultAgentNamespace, Labels: map[string]string{
			"app.kubernetes.io/name": "gpuslice", "app.kubernetes.io/component": "agent",
		}},
		Spec: corev1.PodSpec{NodeName: "homelabai", Containers: []corev1.Container{{
			Name: "agent", Image: "gpuslice:dev", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: int32(port)}},
		}}},
	}
	if _, err := cs.CoreV1().Pods(top.DefaultAgentNamespace).Create(ctx, agentPod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setPodIP := func(ip string) {
		t.Helper()
		if _, err := env.Cluster.SetPodRunning(ctx, agentPod.Namespace, agentPod.Name, true); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Cluster.SetPodStatus(ctx, agentPod.Namespace, agentPod.Name, func(p *corev1.Pod) {
			p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		}); err != nil {
			t.Fatal(err)
		}
	}
	opts := top.Options{AgentNamespace: top.DefaultAgentNamespace, AgentSelector: top.DefaultAgentSelector, AgentPort: port}

	// kube-apiserver refuses to proxy to a pod IP that is not global
	// unicast (pkg/registry/core/pod ResourceLocation): 127.0.0.1 fails.
	setPodIP("127.0.0.1")
	if _, err := top.Collect(ctx, cs, opts); err == nil || !strings.Contains(err.Error(), "address not allowed") || !strings.Contains(err.Error(), "--agent-url") {
		t.Errorf("proxy to 127.0.0.1: %v, want the API server's refusal and the --agent-url fix", err)
	} else {
		t.Logf("pod IP 127.0.0.1: %v", err)
	}

	var report *top.Report
	if hostIP != "" {
		setPodIP(hostIP)
		report, err = top.Collect(ctx, cs, opts)
	} else {
		t.Logf("no non-loopback address on this machine: scraping the agent directly (--agent-url), not through the pods proxy")
		opts.AgentURLs = []string{"http://" + ln.Addr().String() + "/metrics"}
		report, err = top.Collect(ctx, cs, opts)
	}
	if err != nil {
		t.Fatal(err)
	}

	type row struct {
		app, status string
		bytes       int64
		over        int64
	}
	want := []row{
		{"vllm", top.StatusOK, int64(gpu.RecordedVLLMBytes), 0},
		{"tts", top.StatusOverBudget, int64(gpu.RecordedTTSBytes), int64(156 * mib)},
		{"plex", top.StatusOK, int64(gpu.RecordedPlexBytes), 0},
		{"ollama", top.StatusIdle, 0, 0},
		{"whisper", top.StatusIdle, 0, 0},
	}
	if len(report.Pods) != len(want) {
		t.Fatalf("%d pods in top, want %d: %+v", len(report.Pods), len(want), report.Pods)
	}
	for i, w := range want {
		got := report.Pods[i]
		if got.Name != seedPods[w.app].Name || got.Status != w.status || got.MemoryBytes != w.bytes || got.OverBytes != w.over || got.Budget == nil {
			t.Errorf("row %d: %s %s %d over %d budget %v, want %s %s %d over %d", i, got.Name, got.Status, got.MemoryBytes, got.OverBytes, got.Budget, seedPods[w.app].Name, w.status, w.bytes, w.over)
		}
	}
	if vllm := report.Pods[0]; vllm.Budget.Max.Value() != 8602<<20 || !strings.Contains(vllm.BudgetSource, "GPU_MEMORY_UTILIZATION=0.70") {
		t.Errorf("vLLM budget %v from %q, want 8602Mi from GPU_MEMORY_UTILIZATION", vllm.Budget, vllm.BudgetSource)
	}
	unattributed := map[string]int64{}
	for _, u := range report.Unattributed {
		unattributed[u.Reason] += u.MemoryBytes
	}
	if unattributed[agent.ReasonHostProcess] != int64(gpu.RecordedXorgBytes) || unattributed[agent.ReasonUnknownPod] != int64((256+128)*mib) {
		t.Errorf("unattributed %v: want Xorg's 4Mi as host-process, the stale and the other node's pods' 384Mi as unknown-pod", unattributed)
	}
	if len(report.Agents) != 1 || !report.Agents[0].NVMLAvailable || report.Agents[0].Pod != agentPod.Name || len(report.Warnings) > 0 {
		t.Errorf("agents %+v warnings %v", report.Agents, report.Warnings)
	}

	// The arbiter's memory source reads the same agent the same way.
	if hostIP != "" {
		mem, err := (&signals.Agents{Client: cs, Namespace: top.DefaultAgentNamespace, Selector: top.DefaultAgentSelector, Port: port}).GPUMemory(ctx)
		if err != nil || len(mem) != 1 || len(report.GPUs) != 1 {
			t.Fatalf("arbiter's agents source: %+v, %v", mem, err)
		}
		if g, want := mem[0], report.GPUs[0]; g.Node != "homelabai" || g.GPU != want.Index || g.UUID != want.UUID || g.Used != want.UsedBytes || g.Free != want.FreeBytes {
			t.Errorf("arbiter's agents source read %+v, top read %+v", g, want)
		}
	}

	var table bytes.Buffer
	if err := top.WriteTable(&table, report); err != nil {
		t.Fatal(err)
	}
	t.Logf("gpuslice top:\n%s", table.String())
	for _, fields := range []string{
		"ai-dev " + seedPods["vllm"].Name + " homelabai 0 8.4Gi 8.4Gi ok",
		"ai " + seedPods["tts"].Name + " homelabai 0 1.2Gi 512Mi-1Gi over budget by 156Mi",
		"- <unknown pods> homelabai 0 384Mi - pod not listed on this node",
		"ai " + seedPods["whisper"].Name + " homelabai - 0 2Gi-3Gi idle",
		"homelabai 0 NVIDIA GeForce RTX 3080 Ti 10.9Gi 1.1Gi 12Gi 37% 61C",
	} {
		if !hasRow(table.String(), fields) {
			t.Errorf("top lacks the row %q:\n%s", fields, table.String())
		}
	}

	// -n ai-dev and --node.
	opts.Namespace = "ai-dev"
	nsReport, err := top.Collect(ctx, cs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(nsReport.Pods) != 1 || nsReport.Pods[0].Namespace != "ai-dev" || len(nsReport.Unattributed) != 0 {
		t.Errorf("-n ai-dev: %+v, unattributed %+v", nsReport.Pods, nsReport.Unattributed)
	}
	opts.Namespace, opts.Node = "", "gpubox"
	if _, err := top.Collect(ctx, cs, opts); err == nil || !strings.Contains(err.Error(), "no gpuslice agent pod on node gpubox") {
		t.Errorf("--node gpubox: %v", err)
	}
}

// hasRow says whether a line of a table has these space-separated fields.
func hasRow(table, fields string) bool {
	for _, line := range strings.Split(table, "\n") {
		if strings.Join(strings.Fields(line), " ") == fields {
			return true
		}
	}
	return false
}

func onlyPod(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns, app string) *corev1.Pod {
	t.Helper()
	list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{"app": app}).String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("%d pods with app=%s in %s, want 1", len(list.Items), app, ns)
	}
	return &list.Items[0]
}

// nonLoopbackIP is an IPv4 address of this machine that kube-apiserver
// will proxy to (global unicast), or "" when there is none.
func nonLoopbackIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
			// Check it is usable for a listener before offering it.
			ln, err := net.Listen("tcp", net.JoinHostPort(ipn.IP.String(), "0"))
			if err != nil {
				continue
			}
			ln.Close()
			return ipn.IP.String()
		}
	}
	return ""
}
