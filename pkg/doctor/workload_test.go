package doctor

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestDoctorShareRequests(t *testing.T) {
	p := pod("ai-dev", "vllm", "", 2)
	if got := shareRequests(p); got[shared] != 2 || len(got) != 1 {
		t.Errorf("2-share pod: %v", got)
	}
	// The webhook adds gpu-shares' request at admission.
	tmpl := pod("ai-dev", "vllm", "", 0, func(p *corev1.Pod) { p.Annotations["gpu-shares"] = "3" })
	if got := shareRequests(tmpl); got[shared] != 3 {
		t.Errorf("gpu-shares template: %v", got)
	}
	if got := shareRequests(pod("media", "plex", "", 0, annotated)); len(got) != 0 {
		t.Errorf("webhook-only pod: %v", got)
	}
	// Bound pods count the same: the node is cleared first.
	if got := shareRequests(pod("ai", "whisper", "homelabai", 2)); got[shared] != 2 {
		t.Errorf("bound pod: %v", got)
	}
}

func TestDoctorJudgeShares(t *testing.T) {
	nodes := []corev1.Node{homelabai()}
	seed := []*corev1.Pod{
		pod("media", "plex", "homelabai", 0, annotated),
		pod("ai", "ollama", "homelabai", 1), pod("ai", "tts", "homelabai", 1), pod("ai", "whisper", "homelabai", 2),
	}
	filler := pod("ai", "filler", "homelabai", 4)
	vllmPending := pod("ai-dev", "vllm-server", "", 2, annotated)
	vllmBound := pod("ai-dev", "vllm-server", "homelabai", 2, annotated)
	tests := []struct {
		name     string
		w        *WorkloadEvidence
		cluster  []*corev1.Pod
		verdict  Verdict
		contains []string
	}{
		{name: "webhook-only", w: workloadEvidence(KindDeployment, nil, seed[0]), cluster: seed, verdict: OK, contains: []string{"no GPU share request"}},
		{name: "scheduled holds its shares", w: workloadEvidence(KindDeployment, nil, vllmBound), cluster: append(seed, vllmBound), verdict: OK,
			contains: []string{"holds 2 nvidia.com/gpu.shared on homelabai (2 of 8 free)", "note: 2 shares are 2 places in the scheduler, not more GPU time", "failRequestsGreaterThanOne: true"}},
		{name: "pending, enough free: another reason", w: workloadEvidence(KindDeployment, nil, vllmPending), cluster: append(seed, vllmPending), verdict: OK,
			contains: []string{"homelabai has 4 of 8 free", "still pending for another reason"}},
		{name: "pending, node full: who holds them", w: workloadEvidence(KindDeployment, nil, vllmPending), cluster: append(seed, filler, vllmPending), verdict: Fail,
			contains: []string{"needs 2 nvidia.com/gpu.shared per pod", "homelabai has 0 of 8 free", "held by ai/filler 4, ai/whisper 2, ai/ollama 1, ai/tts 1",
				"free 2 more", "kubectl scale deployment -n ai whisper --replicas=0 (frees 2)", "--replicas 10"}},
		{name: "no pod yet, would not fit: warn", w: workloadEvidence(KindDeployment, vllmPending), cluster: append(seed, filler), verdict: Warn,
			contains: []string{"0 of 8 free"}},
		{name: "more than the node has", w: workloadEvidence(KindDeployment, nil, pod("ai", "big", "", 10)), cluster: seed, verdict: Fail,
			contains: []string{"advertises only 8 in all", "can never be scheduled", "at most 8"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ledgerOf(t, nodes, tc.cluster...)
			expect(t, JudgeShares(tc.w, r, nodes), tc.verdict, tc.contains...)
		})
	}
}

func TestDoctorJudgeSharesNotReadyNode(t *testing.T) {
	down := homelabai()
	down.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"}}
	nodes := []corev1.Node{down}
	ollama := pod("ai", "ollama", "homelabai", 1)
	vllm := pod("ai-dev", "vllm-server", "", 2, annotated)
	expect(t, JudgeShares(workloadEvidence(KindDeployment, nil, vllm), ledgerOf(t, nodes, ollama, vllm), nodes), Fail,
		"homelabai has 0 of 8 free, node NotReady", "bring homelabai back")
	expect(t, JudgeShares(workloadEvidence(KindDeployment, nil, ollama), ledgerOf(t, nodes, ollama, vllm), nodes), OK,
		"holds 1 nvidia.com/gpu.shared on homelabai (0 of 8 free, node NotReady")
}

func TestDoctorJudgeSharesNoGPUNode(t *testing.T) {
	nodes := []corev1.Node{plainNode("pi")}
	w := workloadEvidence(KindPod, nil, pod("ai", "x", "", 1))
	expect(t, JudgeShares(w, ledgerOf(t, nodes), nodes), Fail, "no node advertises nvidia.com/gpu.shared")
}

func TestDoctorJudgeWorkloadPods(t *testing.T) {
	running := pod("ai-dev", "vllm-server", "homelabai", 2)
	tests := []struct {
		name     string
		w        *WorkloadEvidence
		verdict  Verdict
		contains []string
	}{
		{name: "all there", w: workloadEvidence(KindDeployment, running, running), verdict: OK, contains: []string{"1 pod(s): vllm-server-abc12 Running on homelabai"}},
		{name: "scaled to zero", w: func() *WorkloadEvidence {
			w := workloadEvidence(KindDeployment, running)
			w.Desired = ptr.To[int32](0)
			return w
		}(), verdict: Warn, contains: []string{"scaled to 0", "kubectl scale deployment -n ai-dev vllm-server --replicas=1"}},
		{name: "webhook refused the pods", w: func() *WorkloadEvidence {
			w := workloadEvidence(KindDeployment, running)
			w.CreateFailures = []string{`ReplicaSet vllm-server-5d8: Internal error occurred: failed calling webhook "gpu-directory-injector.gpuslice.io": connection refused`}
			return w
		}(), verdict: Fail, contains: []string{"0 of 1 pod(s) exist", "failed calling webhook", "webhook-* checks"}},
		{name: "missing, nothing said", w: workloadEvidence(KindDeployment, running), verdict: Warn, contains: []string{"0 of 1 pod(s)", "no FailedCreate"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, JudgeWorkloadPods(tc.w), tc.verdict, tc.contains...) })
	}
}

func TestDoctorCreateFailureRemedy(t *testing.T) {
	for msg, want := range map[string]string{
		`Internal error occurred: failed calling webhook "x": tls: failed`:     "webhook-* checks",
		`admission webhook "x" denied the request: unknown profile`:            "refused the pod template",
		`pods "x" is forbidden: pod rejected: RuntimeClass "nvidia" not found`: "create the RuntimeClass",
		`pods "x" is forbidden: exceeded quota: gpu, requested: ...`:           "ResourceQuota",
		`something else`: "fix what the message says",
	} {
		if got := createFailureRemedy(msg); !strings.Contains(got, want) {
			t.Errorf("%q: remedy %q lacks %q", msg, got, want)
		}
	}
}

func TestDoctorJudgeScheduling(t *testing.T) {
	pending := pod("ai-dev", "vllm-server", "", 2)
	insufficient := "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.shared. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
	tests := []struct {
		name     string
		p        PodEvidence
		verdict  Verdict
		contains []string
	}{
		{name: "bound", p: PodEvidence{Pod: pod("ai", "x", "homelabai", 1)}, verdict: OK, contains: []string{"scheduled to homelabai"}},
		{name: "insufficient shares", p: PodEvidence{Pod: pending, Events: []Event{
			{Reason: "FailedScheduling", Message: insufficient, Count: 3, Last: time.Now()},
			{Reason: "Scheduled", Message: "older, irrelevant"},
		}}, verdict: Fail, contains: []string{"FailedScheduling (x3)", "Insufficient nvidia.com/gpu.shared", "see gpu-shares"}},
		{name: "selector", p: PodEvidence{Pod: pending, Events: []Event{
			{Reason: "FailedScheduling", Message: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."},
		}}, verdict: Fail, contains: []string{"(x1)", "see placement"}},
		{name: "taint", p: PodEvidence{Pod: pending, Events: []Event{
			{Reason: "FailedScheduling", Message: "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."},
		}}, verdict: Fail, contains: []string{"toleration"}},
		{name: "events expired, condition remains", p: PodEvidence{Pod: func() *corev1.Pod {
			p := pending.DeepCopy()
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: insufficient}}
			return p
		}()}, verdict: Fail, contains: []string{"PodScheduled=False (Unschedulable)", "see gpu-shares"}},
		{name: "nothing said", p: PodEvidence{Pod: func() *corev1.Pod {
			p := pending.DeepCopy()
			p.Spec.SchedulerName = "volcano"
			return p
		}()}, verdict: Warn, contains: []string{"scheduler has said nothing", `"volcano"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeScheduling(&PodInput{PodEvidence: tc.p}), tc.verdict, tc.contains...)
		})
	}
}

func TestDoctorParseTarget(t *testing.T) {
	for in, want := range map[string]Target{
		"deployment/vllm-server":      {Kind: KindDeployment, Name: "vllm-server"},
		"deploy/vllm-server":          {Kind: KindDeployment, Name: "vllm-server"},
		"Deployment.apps/vllm-server": {Kind: KindDeployment, Name: "vllm-server"},
		"sts/db":                      {Kind: KindStatefulSet, Name: "db"},
		"statefulsets/db":             {Kind: KindStatefulSet, Name: "db"},
		"ds/dcgm":                     {Kind: KindDaemonSet, Name: "dcgm"},
		"cj/nightly-training":         {Kind: KindCronJob, Name: "nightly-training"},
		"cronjob.batch/nightly":       {Kind: KindCronJob, Name: "nightly"},
		"po/plex-0":                   {Kind: KindPod, Name: "plex-0"},
		"pod/plex-0":                  {Kind: KindPod, Name: "plex-0"},
	} {
		got, err := ParseTarget(in)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"vllm-server":            "give KIND/NAME",
		"deployment/":            "give KIND/NAME",
		"a/b/c":                  "give KIND/NAME",
		"deplyoment/vllm-server": "did you mean deployment/vllm-server?",
		"service/gpu-webhook":    "not \"service\"",
	} {
		if _, err := ParseTarget(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTarget(%q) error %v, want %q", in, err, want)
		}
	}
	if s := (Target{Kind: KindDeployment, Name: "vllm-server"}).String(); s != "deployment/vllm-server" {
		t.Errorf("String() = %q", s)
	}
}
