package top

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/standin/proctest"
	"github.com/gpuslice/gpuslice/internal/testutil/golden"
	"github.com/gpuslice/gpuslice/internal/testutil/podsource"
	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/gpu"
)

const mib = int64(1) << 20

// podOf is the pod a Deployment's ReplicaSet would make, bound to homelabai
// and running, with a container ID.
func podOf(d *appsv1.Deployment, suffix string, seed uint32) *corev1.Pod {
	t := d.Spec.Template.DeepCopy()
	p := &corev1.Pod{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
	p.Namespace, p.Name = d.Namespace, d.Name+"-"+suffix
	p.UID = types.UID(strings.Replace("00000000-0000-4000-8000-0000000000xx", "xx", strings.Repeat(string(rune('a'+seed)), 2), 1))
	p.Spec.NodeName = "homelabai"
	p.Status.Phase = corev1.PodRunning
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, ContainerID: "containerd://" + proctest.ContainerID(seed)})
	}
	return p
}

func homelabNode() *corev1.Node {
	n := seed.HomelabAI()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels},
		Status:     corev1.NodeStatus{Capacity: n.Resources, Allocatable: n.Resources},
	}
}

type cluster struct {
	objects []runtime.Object
	pods    map[string]*corev1.Pod // by Deployment name
}

// seedCluster is the reference cluster after the AI-dev deployment, as a
// fake API server would list it.
func seedCluster() *cluster {
	c := &cluster{objects: []runtime.Object{homelabNode()}, pods: map[string]*corev1.Pod{}}
	for i, w := range append(seed.SeedWorkloads(), seed.VLLMWorkload()) {
		p := podOf(w.Deployment, "7d9f8c6b5-x2x9q", uint32(i+1))
		c.pods[w.Deployment.Name] = p
		c.objects = append(c.objects, p)
		if w.ConfigMap != nil {
			c.objects = append(c.objects, w.ConfigMap)
		}
	}
	return c
}

// serveAgent runs a real agent on the recorded GPU with a proc root naming
// the cluster's pods, and returns its metrics URL.
func serveAgent(t *testing.T, c *cluster, lib gpu.NVML) string {
	t.Helper()
	proc := t.TempDir()
	for pid, p := range map[uint32]*corev1.Pod{gpu.RecordedPIDVLLM: c.pods["vllm-server"], gpu.RecordedPIDTTS: c.pods["tts"], gpu.RecordedPIDPlex: c.pods["plex"]} {
		id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
		if err := proctest.Write(proc, pid, proctest.Container(string(p.UID), id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := proctest.Write(proc, gpu.RecordedPIDXorg, proctest.Host("display-manager.service")); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{
		NodeName: "homelabai", NVML: lib, ProcRoot: proc, Pods: podsource.Fixed(c.objects...),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), RetryMin: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a.Start(ctx)
	err = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		ok, msg := a.Readiness()
		return ok || !strings.Contains(msg, "pods on node"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

func collect(t *testing.T, c *cluster, o Options) *Report {
	t.Helper()
	r, err := Collect(context.Background(), fake.NewClientset(c.objects...), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTopSeedCluster(t *testing.T) {
	c := seedCluster()
	url := serveAgent(t, c, gpu.RecordedRTX3080Ti())
	r := collect(t, c, Options{AgentURLs: []string{url}})

	type want struct {
		name, status string
		bytes        int64
		budget       string
		over         int64
	}
	wants := []want{
		{"vllm-server", StatusOK, int64(gpu.RecordedVLLMBytes), "8602Mi", 0},
		{"tts", StatusOverBudget, int64(gpu.RecordedTTSBytes), "512Mi-1Gi", 156 * mib},
		{"plex", StatusOK, int64(gpu.RecordedPlexBytes), "1Gi-2Gi", 0},
		{"ollama", StatusIdle, 0, "2Gi-4Gi", 0},
		{"whisper", StatusIdle, 0, "2Gi-3Gi", 0},
	}
	if len(r.Pods) != len(wants) {
		t.Fatalf("%d pods, want %d: %+v", len(r.Pods), len(wants), r.Pods)
	}
	for i, w := range wants {
		p := r.Pods[i]
		budget := ""
		if p.Budget != nil {
			budget = p.Budget.Min.String() + "-" + p.Budget.Max.String()
			if p.Budget.Min.Cmp(p.Budget.Max) == 0 {
				budget = p.Budget.Max.String()
			}
		}
		if p.Name != c.pods[w.name].Name || p.Status != w.status || p.MemoryBytes != w.bytes || budget != w.budget || p.OverBytes != w.over {
			t.Errorf("row %d: %s %s %d budget %s over %d, want %s %s %d budget %s over %d",
				i, p.Name, p.Status, p.MemoryBytes, budget, p.OverBytes, w.name, w.status, w.bytes, w.budget, w.over)
		}
	}
	if src := r.Pods[0].BudgetSource; !strings.Contains(src, "GPU_MEMORY_UTILIZATION=0.70 of 12Gi") {
		t.Errorf("vLLM budget source %q", src)
	}
	if len(r.Unattributed) != 1 || r.Unattributed[0].Reason != agent.ReasonHostProcess || r.Unattributed[0].MemoryBytes != int64(gpu.RecordedXorgBytes) {
		t.Errorf("unattributed %+v, want Xorg's 4Mi as host-process", r.Unattributed)
	}
	if len(r.GPUs) != 1 || r.GPUs[0].Model != gpu.RecordedModel || r.GPUs[0].Node != "homelabai" || *r.GPUs[0].Utilization != 0.37 {
		t.Errorf("GPUs %+v", r.GPUs)
	}
	if len(r.Agents) != 1 || !r.Agents[0].NVMLAvailable || r.Agents[0].Node != "homelabai" || len(r.Warnings) != 0 {
		t.Errorf("agents %+v warnings %v", r.Agents, r.Warnings)
	}

	var table bytes.Buffer
	if err := WriteTable(&table, r); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/top-seed.golden", table.Bytes())
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}

	// -n ai: only ai's pods; host processes belong to no namespace.
	ai := collect(t, c, Options{Namespace: "ai", AgentURLs: []string{url}})
	if len(ai.Pods) != 3 || len(ai.Unattributed) != 0 {
		t.Errorf("-n ai: %d pods, unattributed %+v", len(ai.Pods), ai.Unattributed)
	}
	for _, p := range ai.Pods {
		if p.Namespace != "ai" {
			t.Errorf("-n ai shows %s/%s", p.Namespace, p.Name)
		}
	}
}

// TestTopDegradedAgent: an agent without NVML still answers; top says so.
func TestTopDegradedAgent(t *testing.T) {
	c := seedCluster()
	f := gpu.RecordedRTX3080Ti()
	f.InitErrors = []error{gpu.ERROR_LIBRARY_NOT_FOUND}
	url := serveAgent(t, c, f)
	r := collect(t, c, Options{AgentURLs: []string{url}})
	if len(r.Agents) != 1 || r.Agents[0].NVMLAvailable || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "agent on node homelabai: NVML unavailable: ERROR_LIBRARY_NOT_FOUND; run the agent with runtimeClassName: nvidia") {
		t.Errorf("agents %+v warnings %v", r.Agents, r.Warnings)
	}
	// The GPU pods are still listed, holding nothing measurable.
	if len(r.Pods) != 5 || len(r.GPUs) != 0 {
		t.Errorf("%d pods, %d GPUs", len(r.Pods), len(r.GPUs))
	}
}

func TestTopNoAgent(t *testing.T) {
	c := seedCluster()
	_, err := Collect(context.Background(), fake.NewClientset(c.objects...), Options{AgentNamespace: DefaultAgentNamespace, AgentSelector: DefaultAgentSelector})
	if err == nil || !strings.Contains(err.Error(), "no gpuslice agent pod in namespace gpu-system") || !strings.Contains(err.Error(), "docs/agent.md") {
		t.Errorf("no agents: %v", err)
	}
	// An agent URL that refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Collect(context.Background(), fake.NewClientset(c.objects...), Options{AgentURLs: []string{"http://" + addr + "/metrics"}})
	if err == nil || !strings.Contains(err.Error(), "no agent answered") || !strings.Contains(err.Error(), addr) {
		t.Errorf("unreachable agent: %v", err)
	}
	// Something that is not an agent.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("up 1\n")) }))
	defer srv.Close()
	_, err = Collect(context.Background(), fake.NewClientset(c.objects...), Options{AgentURLs: []string{srv.URL}})
	if err == nil || !strings.Contains(err.Error(), "is this a gpuslice agent?") {
		t.Errorf("not an agent: %v", err)
	}
}

func TestTopParseMetricsRejectsGarbage(t *testing.T) {
	if _, err := parseMetrics([]byte("{not: metrics")); err == nil {
		t.Error("garbage parsed")
	}
}
