package doctor

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/testutil/golden"
	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// seedEvidence is the seed cluster with the node full (a 4-share filler)
// and the webhook down: vLLM pending, Plex fine.
func seedEvidence(t *testing.T) *Evidence {
	t.Helper()
	memory := func(m string) podOpt {
		return func(p *corev1.Pod) { p.Annotations[workload.AnnotationMemory] = m }
	}
	plex := pod("media", "plex", "homelabai", 0, annotated, withDevices, withRuntimeClass, memory("1Gi-2Gi"),
		withEnv(EnvVisibleDevices, "all", EnvDriverCapabilities, "compute,video,utility"),
		status(corev1.ContainerStatus{Name: "plex", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}))
	vllm := pod("ai-dev", "vllm-server", "", 2, annotated, withDevices, withRuntimeClass,
		withEnv(EnvVisibleDevices, "all", EnvDriverCapabilities, "compute,utility", workload.EnvGPUMemoryUtilization, "0.70"))
	holders := []*corev1.Pod{
		plex,
		pod("ai", "ollama", "homelabai", 1, memory("2Gi-4Gi")), pod("ai", "tts", "homelabai", 1, memory("512Mi-1Gi")),
		pod("ai", "whisper", "homelabai", 2, memory("2Gi-3Gi")), pod("ai", "filler", "homelabai", 4),
	}
	nodes := []corev1.Node{homelabai()}
	webhook := urlWebhook([]byte("unused: no certificate was seen"))
	webhook.Handshake = &Handshake{Address: "127.0.0.1:8443", Err: "dial tcp 127.0.0.1:8443: connect: connection refused", Unreachable: true}
	webhook.DryRun = DryRun{Namespace: "ai-dev", Profile: inject.DefaultConfig("").Profiles[0],
		Err: `Internal error occurred: failed calling webhook "gpu-directory-injector.gpuslice.io": failed to call webhook: Post "https://127.0.0.1:8443/mutate?timeout=5s": dial tcp 127.0.0.1:8443: connect: connection refused`}
	vllmWorkload := workloadEvidence(KindDeployment, nil, vllm)
	vllmWorkload.Template = &corev1.PodTemplateSpec{}
	vllmWorkload.Template.Annotations, vllmWorkload.Template.Spec = vllm.Annotations, vllm.Spec
	vllmWorkload.Desired = ptr.To[int32](1)
	vllmWorkload.Pods[0].Events = []Event{{Type: "Warning", Reason: "FailedScheduling", Count: 2,
		Message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.shared. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."}}
	plexWorkload := workloadEvidence(KindDeployment, nil, plex)
	plexWorkload.Desired = ptr.To[int32](1)
	plexWorkload.Pods[0].Logs = []ContainerLog{{Container: "plex", Lines: []string{"Starting Plex Media Server."}}}
	return &Evidence{
		Now:            time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC),
		Nodes:          nodes,
		Ledger:         ledgerOf(t, nodes, append(holders, vllm)...),
		RuntimeClasses: RuntimeClasses{Handlers: map[string]string{"nvidia": "nvidia"}},
		Webhook:        webhook,
		// Out of order: the report sorts them.
		Workloads: []WorkloadEvidence{*plexWorkload, *vllmWorkload},
	}
}

func TestDoctorJudgeReport(t *testing.T) {
	r := Judge(seedEvidence(t))
	var titles []string
	for _, s := range r.Sections {
		titles = append(titles, s.Title()+":"+string(s.Verdict))
	}
	want := "Cluster:fail Deployment ai-dev/vllm-server:fail Deployment media/plex:ok"
	if got := strings.Join(titles, " "); got != want {
		t.Errorf("sections %q, want %q", got, want)
	}
	if !r.Failed() || r.Summary.Workloads != 2 || r.Summary.Fail != 3 {
		t.Errorf("summary %+v, want 3 failures (dry run, shares, scheduling) in 2 workloads", r.Summary)
	}
	for _, c := range []struct{ title, check string }{
		{title: "Cluster", check: CheckWebhookDryRun},
		{title: "Deployment ai-dev/vllm-server", check: CheckShares},
		{title: "Deployment ai-dev/vllm-server", check: CheckScheduling},
	} {
		if got := r.Find(c.title, c.check); len(got) != 1 || got[0].Verdict != Fail {
			t.Errorf("%s %s: %+v, want one fail", c.title, c.check, got)
		}
	}
	// vLLM is not scheduled, so its 8.4Gi is not expected on the node yet.
	if got := r.Find("Cluster", CheckVRAM); len(got) != 1 || got[0].Verdict != OK || !strings.Contains(got[0].Evidence, "no estimate for ai/filler") {
		t.Errorf("VRAM: %+v", got)
	}
	b, err := json.Marshal(r)
	if err != nil || !bytes.Contains(b, []byte(`"verdict":"fail"`)) || !bytes.Contains(b, []byte(`"check":"gpu-shares"`)) {
		t.Errorf("JSON: %v %s", err, b)
	}
}

// TestDoctorJudgeTarget: a target gets the VRAM of its own nodes, and no
// webhook rows when none were gathered.
func TestDoctorJudgeTarget(t *testing.T) {
	ev := seedEvidence(t)
	ev.Target, ev.Webhook = "deployment/plex", nil
	ev.Nodes = append(ev.Nodes, gpuNode("gpubox", 4))
	ev.Ledger = ledgerOf(t, ev.Nodes, ev.Workloads[0].Pods[0].Pod)
	ev.Workloads = ev.Workloads[:1]
	r := Judge(ev)
	if len(r.Sections) != 2 || r.Failed() {
		t.Fatalf("report: %+v", r)
	}
	cluster := r.Sections[0].Results
	if len(cluster) != 1 || cluster[0].Check != CheckVRAM || cluster[0].Object != "node/homelabai" {
		t.Errorf("cluster checks of a target on homelabai: %+v", cluster)
	}
}

func TestDoctorJudgeWorkloadWithoutPods(t *testing.T) {
	// A Deployment whose pods the webhook refused: only what the template
	// tells can be judged.
	w := workloadEvidence(KindDeployment, pod("ai-dev", "vllm-server", "", 2, annotated))
	w.CreateFailures = []string{`ReplicaSet vllm-server-5d8: Internal error occurred: failed calling webhook "gpu-directory-injector.gpuslice.io"`}
	ev := &Evidence{Nodes: []corev1.Node{homelabai()}, RuntimeClasses: RuntimeClasses{Handlers: map[string]string{}}, Workloads: []WorkloadEvidence{*w}}
	ev.Ledger = ledgerOf(t, ev.Nodes)
	var checks []string
	for _, res := range Judge(ev).Sections[1].Results {
		checks = append(checks, res.Check+":"+string(res.Verdict))
	}
	want := "pods:fail annotation:ok gpu-shares:ok placement:ok runtime-class:ok"
	if got := strings.Join(checks, " "); got != want {
		t.Errorf("checks %q, want %q", got, want)
	}
}

func TestDoctorMergePodResults(t *testing.T) {
	running := corev1.ContainerStatus{Name: "whisper", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	crashing := corev1.ContainerStatus{Name: "whisper", RestartCount: 4, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}
	tmpl := pod("ai", "whisper", "", 1)
	w := workloadEvidence(KindDeployment, tmpl,
		pod("ai", "whisper", "homelabai", 1, status(running)),
		pod("ai", "whisper", "homelabai", 1, status(crashing)),
		pod("ai", "whisper", "homelabai", 1, status(running)))
	w.Desired = ptr.To[int32](3)
	ev := &Evidence{Nodes: []corev1.Node{homelabai()}, Workloads: []WorkloadEvidence{*w}}
	ev.Ledger = ledgerOf(t, ev.Nodes)
	r := Judge(ev)
	crash := r.Find("Deployment ai/whisper", CheckCrash)
	if len(crash) != 1 {
		t.Fatalf("crash rows: %+v", crash)
	}
	expect(t, crash[0], Fail, "CrashLoopBackOff", "(1 of 3 pods fail)")
	sched := r.Find("Deployment ai/whisper", CheckScheduling)
	expect(t, sched[0], OK, "(3 of 3 pods ok)")
}

func TestDoctorWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, Judge(seedEvidence(t))); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/table.golden", b.Bytes())

	b.Reset()
	if err := WriteTable(&b, &Report{}); err != nil || !strings.Contains(b.String(), "No GPU workloads found.") {
		t.Errorf("empty report: %v %q", err, b.String())
	}
}
