package realnode

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	rn "github.com/gpuslice/gpuslice/internal/harness/localcluster/realnode"
	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/top"
)

const (
	mib = 1 << 20
	// vllmMiB is GPU_MEMORY_UTILIZATION 0.70 of the stand-in's 12288 MiB.
	vllmMiB = 8602
	// hostProcessMiB is a process outside any pod (Xorg's share on the
	// seed's desktop GPU, rounded up).
	hostProcessMiB = 243
)

// waitAgentReady waits until the node's one agent pod is Ready with
// hostPID as asked.
func waitAgentReady(ctx context.Context, t *testing.T, n *rn.RealNode, hostPID bool) *corev1.Pod {
	t.Helper()
	p, err := n.WaitAgentReady(ctx, hostPID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// podMemoryMiB is what the agent attributes to one container, in MiB, -1
// when it has no series.
func podMemoryMiB(families map[string]*dto.MetricFamily, pod *corev1.Pod, container string) int64 {
	v, ok := rn.Sample(families, agent.MetricPodGPUMemory, map[string]string{
		agent.LabelNamespace: pod.Namespace, agent.LabelPod: pod.Name, agent.LabelContainer: container, agent.LabelGPU: "0",
	})
	if !ok {
		return -1
	}
	return int64(v) / mib
}

// expectedAttribution is what the agent must report: MiB by container of
// the seed's GPU workloads, and the host process's.
type expectedAttribution struct {
	vllm, ollama *corev1.Pod
	hostMiB      int64
}

// check compares one scrape with the expectation and says what differs.
func (e expectedAttribution) check(families map[string]*dto.MetricFamily) string {
	var diffs []string
	for _, c := range []struct {
		pod       *corev1.Pod
		container string
		want      int64
	}{{e.vllm, "vllm", vllmMiB}, {e.ollama, "ollama", 1180}} {
		if got := podMemoryMiB(families, c.pod, c.container); got != c.want {
			diffs = append(diffs, fmt.Sprintf("%s/%s container %s: %d MiB, want %d", c.pod.Namespace, c.pod.Name, c.container, got, c.want))
		}
	}
	host, _ := rn.Sample(families, agent.MetricUnattributedMemory, map[string]string{agent.LabelReason: agent.ReasonHostProcess, agent.LabelGPU: "0"})
	if int64(host)/mib != e.hostMiB {
		diffs = append(diffs, fmt.Sprintf("unattributed %s: %d MiB, want %d", agent.ReasonHostProcess, int64(host)/mib, e.hostMiB))
	}
	for _, r := range []string{agent.ReasonPIDNotFound, agent.ReasonUnknownPod, agent.ReasonProcUnreadable} {
		if v, _ := rn.Sample(families, agent.MetricUnattributedMemory, map[string]string{agent.LabelReason: r}); v != 0 {
			diffs = append(diffs, fmt.Sprintf("unattributed %s: %d MiB, want 0", r, int64(v)/mib))
		}
	}
	used, _ := rn.Sample(families, agent.MetricGPUMemoryUsed, map[string]string{agent.LabelGPU: "0"})
	if want := vllmMiB + 1180 + e.hostMiB; int64(used)/mib != want {
		diffs = append(diffs, fmt.Sprintf("GPU 0 used: %d MiB, want %d", int64(used)/mib, want))
	}
	return strings.Join(diffs, "; ")
}

// waitAttribution scrapes until the agent reports e.
func waitAttribution(ctx context.Context, t *testing.T, n *rn.RealNode, agentPod *corev1.Pod, e expectedAttribution) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		families, err := n.AgentMetrics(ctx, agentPod)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = e.check(families)
		return last == "", nil
	})
	if err != nil {
		t.Fatalf("the agent %s (hostPID=%v) never attributed the real processes: %v: %s", agentPod.Name, agentPod.Spec.HostPID, err, last)
	}
}

// hostProcess starts a process on the host, outside any pod, and
// registers it with the stand-in NVML.
func hostProcess(t *testing.T, n *rn.RealNode) {
	t.Helper()
	p := exec.Command("sleep", "600")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Process.Kill()
		_ = p.Wait()
		_ = n.NVML.State.Remove(p.Process.Pid)
	})
	if err := n.NVML.State.Set(p.Process.Pid, hostProcessMiB); err != nil {
		t.Fatal(err)
	}
}

// TestAgentOnRealNode: the agent DaemonSet as the chart runs it (hostPID,
// runtime class nvidia, the stand-in NVML passed with --nvml-library)
// attributes the memory of the stand-in vLLM and Ollama containers, real
// processes registered by their host PIDs, to their namespace, pod and
// container from the cgroup paths containerd and the kubelet made, reports
// a host process as unattributed with its reason, and gpuslice top prints
// the same beside each pod's budget. Then the chart's other mode,
// hostPID: false with the host's /proc at /host/proc, does the same.
func TestAgentOnRealNode(t *testing.T) {
	n := realNode(t)
	installChart(t)
	ctx := testContext(t, 6*time.Minute)
	pods := deploySeed(ctx, t, n)
	hostProcess(t, n)
	want := expectedAttribution{vllm: pods["vllm-server"], ollama: pods["ollama"], hostMiB: hostProcessMiB}
	agentPod := waitAgentReady(ctx, t, n, true)
	waitAttribution(ctx, t, n, agentPod, want)

	out, err := gpuslice(ctx, t, n, "top", "-o", "json")
	if err != nil {
		t.Fatalf("gpuslice top: %v\n%s", err, out)
	}
	var report top.Report
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("gpuslice top -o json: %v\n%s", err, out)
	}
	rows := map[string]top.PodUsage{}
	for _, p := range report.Pods {
		rows[p.Namespace+"/"+p.Name] = p
	}
	for _, c := range []struct {
		pod  *corev1.Pod
		want int64
	}{{want.vllm, vllmMiB}, {want.ollama, 1180}} {
		row, ok := rows[c.pod.Namespace+"/"+c.pod.Name]
		switch {
		case !ok:
			t.Errorf("gpuslice top has no row for %s/%s:\n%s", c.pod.Namespace, c.pod.Name, out)
		case row.MemoryBytes != c.want*mib || row.Budget == nil:
			t.Errorf("gpuslice top's row for %s/%s: %d bytes, budget %v (%s); want %d MiB beside a budget", c.pod.Namespace, c.pod.Name, row.MemoryBytes, row.Budget, row.BudgetSource, c.want)
		}
	}
	if len(report.Unattributed) != 1 || report.Unattributed[0].Reason != agent.ReasonHostProcess || report.Unattributed[0].MemoryBytes != hostProcessMiB*mib {
		t.Errorf("gpuslice top's unattributed memory: %+v, want %d MiB as %s", report.Unattributed, hostProcessMiB, agent.ReasonHostProcess)
	}
	table, err := gpuslice(ctx, t, n, "top")
	if err != nil {
		t.Fatalf("gpuslice top: %v\n%s", err, table)
	}
	t.Logf("gpuslice top on the real node:\n%s", table)
	for _, text := range []string{want.vllm.Name, want.ollama.Name, "<host processes>", "not in a pod"} {
		if !strings.Contains(table, text) {
			t.Errorf("gpuslice top's table does not show %q", text)
		}
	}

	// hostPID: false, --proc-root /host/proc: the host's /proc mounted
	// read-only. Put hostPID back for the other tests whatever happens.
	t.Cleanup(func() {
		ctx := testContext(t, 3*time.Minute)
		applyAgent(ctx, t, n, true)
		waitAgentReady(ctx, t, n, true)
	})
	applyAgent(ctx, t, n, false)
	agentPod = waitAgentReady(ctx, t, n, false)
	waitAttribution(ctx, t, n, agentPod, want)
	t.Logf("hostPID: false with --proc-root /host/proc attributes the same on this node (cgroup %s)", cgroupMode())
}

// applyAgent applies the chart's agent DaemonSet with hostPID as given.
func applyAgent(ctx context.Context, t *testing.T, n *rn.RealNode, hostPID bool) {
	t.Helper()
	r, err := n.RenderChart(map[string]any{"agent": map[string]any{"hostPID": hostPID}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Apply(ctx, r.OfKind("DaemonSet")); err != nil {
		t.Fatal(err)
	}
}

// cgroupMode says which cgroup hierarchy this machine runs, for the log.
func cgroupMode() string {
	out, err := exec.Command("stat", "-fc", "%T", "/sys/fs/cgroup").Output()
	if err != nil {
		return "unknown"
	}
	if strings.TrimSpace(string(out)) == "cgroup2fs" {
		return "v2"
	}
	return "v1 (" + strconv.Quote(strings.TrimSpace(string(out))) + " at /sys/fs/cgroup)"
}
