package gate

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/internal/seed/gatecluster"
	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func decide(t *testing.T, c *gatecluster.Cluster, pod *corev1.Pod) Decision {
	t.Helper()
	v, err := clusterview.Read(&c.Cluster, clusterview.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return Decide(v, pod, Options{Nodes: c.Nodes, Classes: c.Classes})
}

func TestDecide(t *testing.T) {
	vllm := workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}
	tests := []struct {
		name string
		// setup changes the cluster; pod returns the pod to admit.
		setup       func(c *gatecluster.Cluster)
		pod         func(c *gatecluster.Cluster) *corev1.Pod
		wantAllowed bool
		wantBreak   string
		wantRef     workload.Ref
		// want are substrings of the message.
		want []string
	}{
		{
			name:        "Plex healthy and shares free",
			pod:         func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai-dev", "vllm-server") },
			wantAllowed: true, wantRef: vllm,
		},
		{
			name:    "Plex running but not Ready",
			setup:   (*gatecluster.Cluster).PlexNotReady,
			pod:     func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai-dev", "vllm-server") },
			wantRef: vllm,
			want: []string{"preemptible deployment ai-dev/vllm-server", "protected deployment media/plex is unhealthy on homelabai (0 of 1 pod(s) Ready)",
				"repair media/plex first", "gpuslice plex-health", "gpuslice doctor deployment/plex -n media", "gpuslice.io/break-glass=REASON on its pod template"},
		},
		{
			name: "Plex pod gone",
			setup: func(c *gatecluster.Cluster) {
				c.Pods = c.Pods[1:]
			},
			pod:     func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai-dev", "vllm-server") },
			wantRef: vllm,
			want:    []string{"media/plex is unhealthy on homelabai (0 of 1 pod(s) Running)"},
		},
		{
			name:  "break-glass lets it in",
			setup: (*gatecluster.Cluster).PlexNotReady,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Annotations[workload.AnnotationBreakGlass] = "  demo for the board, Plex is idle  "
				return p
			},
			wantAllowed: true, wantBreak: "demo for the board, Plex is idle", wantRef: vllm,
			want: []string{"media/plex is unhealthy"},
		},
		{
			name:  "empty break-glass is no reason",
			setup: (*gatecluster.Cluster).PlexNotReady,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Annotations[workload.AnnotationBreakGlass] = " "
				return p
			},
			wantRef: vllm,
			want:    []string{"media/plex is unhealthy", "is set but empty"},
		},
		{
			name:    "shares short",
			setup:   func(c *gatecluster.Cluster) { c.Hog("homelabai", 3) },
			pod:     func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai-dev", "vllm-server") },
			wantRef: vllm,
			want: []string{"it requests 2 nvidia.com/gpu.shared; free: homelabai 1 of 8 (held by ai/hog-homelabai 3, ai/whisper 2, ai/ollama 1, 1 more)",
				"gpuslice release", "wait for the arbiter"},
		},
		{
			name:  "shares short and Plex broken: both said",
			setup: func(c *gatecluster.Cluster) { c.PlexNotReady(); c.Hog("homelabai", 4) },
			pod:   func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai-dev", "vllm-server") },
			want:  []string{"media/plex is unhealthy", "free: homelabai 0 of 8"},
		},
		{
			name:  "shares short on homelabai, free on gpu2, no nodeSelector",
			setup: func(c *gatecluster.Cluster) { c.Hog("homelabai", 4) },
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Spec.NodeSelector = nil
				return p
			},
			wantAllowed: true,
		},
		{
			name:  "shares short everywhere",
			setup: func(c *gatecluster.Cluster) { c.Hog("homelabai", 4); c.Hog("gpu2", 3) },
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Spec.NodeSelector = map[string]string{"nvidia.com/gpu.present": "true"}
				return p
			},
			want: []string{"free: gpu2 1 of 4 (held by ai/hog-gpu2 3), homelabai 0 of 8"},
		},
		{
			name:  "nodeSelector away from broken Plex",
			setup: (*gatecluster.Cluster).PlexNotReady,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "gpu2"}
				return p
			},
			wantAllowed: true, wantRef: vllm,
		},
		{
			name:  "nodeName away from broken Plex, but full",
			setup: func(c *gatecluster.Cluster) { c.PlexNotReady(); c.Hog("gpu2", 4) },
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Spec.NodeSelector, p.Spec.NodeName = nil, "gpu2"
				return p
			},
			want: []string{"free: gpu2 0 of 4"},
		},
		{
			name:  "no nodeSelector: Plex's node is a candidate",
			setup: (*gatecluster.Cluster).PlexNotReady,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Spec.NodeSelector = nil
				return p
			},
			want: []string{"media/plex is unhealthy on homelabai"},
		},
		{
			name:  "nodeSelector matching no GPU node",
			setup: (*gatecluster.Cluster).PlexNotReady,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "nas"}
				return p
			},
			want: []string{"it requests 2 nvidia.com/gpu.shared and no GPU node matches its nodeName and nodeSelector"},
		},
		{
			name:        "not preemptible",
			setup:       func(c *gatecluster.Cluster) { c.PlexNotReady(); c.Hog("homelabai", 4) },
			pod:         func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai", "ollama") },
			wantAllowed: true, wantRef: workload.Ref{Kind: workload.KindDeployment, Namespace: "ai", Name: "ollama"},
		},
		{
			name:        "Plex's own new pod",
			setup:       (*gatecluster.Cluster).PlexNotReady,
			pod:         func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("media", "plex") },
			wantAllowed: true, wantRef: workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"},
		},
		{
			name:  "not a GPU pod",
			setup: (*gatecluster.Cluster).PlexNotReady,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				p := c.NewPod("ai-dev", "vllm-server")
				p.Annotations = nil
				p.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
				return p
			},
			wantAllowed: true,
		},
		{
			name:  "pod without a controller says it is preemptible",
			setup: (*gatecluster.Cluster).PlexNotReady,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				return &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: "ai-dev", Name: "scratch", Annotations: map[string]string{workload.AnnotationPreemptible: "true"}},
					Spec:       gatecluster.PodSpec("", 1, ""),
				}
			},
			wantRef: workload.Ref{Kind: KindPod, Namespace: "ai-dev", Name: "scratch"},
			want:    []string{"preemptible pod ai-dev/scratch", "media/plex is unhealthy", "break-glass=REASON on the pod"},
		},
		{
			name:  "pod without a controller or policy",
			setup: (*gatecluster.Cluster).PlexNotReady,
			pod: func(c *gatecluster.Cluster) *corev1.Pod {
				return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ai-dev", GenerateName: "scratch-"}, Spec: gatecluster.PodSpec("", 1, "")}
			},
			wantAllowed: true, wantRef: workload.Ref{Kind: KindPod, Namespace: "ai-dev", Name: "scratch-*"},
		},
		{
			name: "preemptible workload with an invalid policy is not gated",
			setup: func(c *gatecluster.Cluster) {
				c.PlexNotReady()
				c.Deployments[len(c.Deployments)-1].Annotations[workload.AnnotationHoldDown] = "soon"
			},
			pod:         func(c *gatecluster.Cluster) *corev1.Pod { return c.NewPod("ai-dev", "vllm-server") },
			wantAllowed: true, wantRef: vllm, want: []string{"is not gated: its policy is invalid", "gpuslice.io/hold-down"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := gatecluster.Homelab()
			if tt.setup != nil {
				tt.setup(c)
			}
			d := decide(t, c, tt.pod(c))
			if d.Allowed != tt.wantAllowed || d.BreakGlass != tt.wantBreak {
				t.Errorf("allowed %v, break-glass %q, want %v, %q: %s", d.Allowed, d.BreakGlass, tt.wantAllowed, tt.wantBreak, d.Message)
			}
			if tt.wantRef != (workload.Ref{}) && d.Workload != tt.wantRef {
				t.Errorf("workload %+v, want %+v", d.Workload, tt.wantRef)
			}
			for _, w := range tt.want {
				if !strings.Contains(d.Message, w) {
					t.Errorf("message lacks %q:\n%s", w, d.Message)
				}
			}
		})
	}
}

// TestDecideTrust: a tenant that marks its own workload protected, with
// the highest priority, and keeps it unhealthy holds back nobody's pods
// once the gate is told who is protected (the webhook's --protected);
// without that (a nil Trust) the annotation is believed.
func TestDecideTrust(t *testing.T) {
	plex := workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}
	for _, tc := range []struct {
		name        string
		trust       *policy.Trust
		wantAllowed bool
	}{
		{name: "annotations believed", trust: nil},
		{name: "protection from the admin only", trust: policy.NewTrust([]workload.Ref{plex}, nil), wantAllowed: true},
		{name: "tenant namespace trusted", trust: policy.NewTrust([]workload.Ref{plex}, []string{"tenant"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gatecluster.Homelab()
			c.Workload("tenant", "squatter", map[string]string{workload.AnnotationProtected: "true", workload.AnnotationPriority: "2147483647"}, "", 0, "homelabai", false)
			v, err := clusterview.Read(&c.Cluster, clusterview.Options{Trust: tc.trust})
			if err != nil {
				t.Fatal(err)
			}
			d := Decide(v, c.NewPod("ai-dev", "vllm-server"), Options{Nodes: c.Nodes, Classes: c.Classes})
			if d.Allowed != tc.wantAllowed {
				t.Errorf("allowed %v, want %v: %s", d.Allowed, tc.wantAllowed, d.Message)
			}
			if !tc.wantAllowed && !strings.Contains(d.Message, "tenant/squatter") {
				t.Errorf("refusal does not name tenant/squatter: %s", d.Message)
			}
		})
	}
}

// A homelab-sized cluster: reading the view and deciding must stay well
// under a millisecond, since the webhook does it per admission.
func BenchmarkReadAndDecide(b *testing.B) {
	c := gatecluster.Homelab()
	for i := range 40 {
		c.Workload(fmt.Sprintf("apps-%d", i%8), fmt.Sprintf("app-%d", i), nil, "", 0, "nas", true)
	}
	c.PlexNotReady()
	pod := c.NewPod("ai-dev", "vllm-server")
	b.ResetTimer()
	for b.Loop() {
		v, err := clusterview.Read(&c.Cluster, clusterview.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if d := Decide(v, pod, Options{Nodes: c.Nodes, Classes: c.Classes}); d.Allowed {
			b.Fatal("allowed")
		}
	}
}

// TestDecideForCodes: the problems `gpuslice admit` turns into exit codes,
// for any workload, whatever the gate's answer.
func TestDecideForCodes(t *testing.T) {
	preemptible := &policy.Policy{Preemptible: true}
	tests := []struct {
		name  string
		setup func(c *gatecluster.Cluster)
		// subject is vLLM's next pod unless changed here.
		subject      func(c *gatecluster.Cluster, s *Subject)
		wantCode     Code
		wantAllowed  bool
		wantProblems []string
	}{{
		name:        "room and Plex serving",
		wantCode:    CodeOK,
		wantAllowed: true,
	}, {
		name:         "shares short",
		setup:        func(c *gatecluster.Cluster) { c.Hog("homelabai", 3) },
		wantCode:     CodeSharesShort,
		wantProblems: []string{"free: homelabai 1 of 8"},
	}, {
		name:         "more than any node advertises",
		subject:      func(_ *gatecluster.Cluster, s *Subject) { s.Pod.Spec = gatecluster.PodSpec("", 9, "homelabai") },
		wantCode:     CodeNeverFits,
		wantProblems: []string{"requests 9 nvidia.com/gpu.shared per pod and the most any of its GPU nodes advertises is 8", "can never start"},
	}, {
		name:         "Plex not Ready",
		setup:        (*gatecluster.Cluster).PlexNotReady,
		wantCode:     CodeProtectedUnhealthy,
		wantProblems: []string{"media/plex is unhealthy on homelabai"},
	}, {
		name:         "Plex not Ready and shares short: Plex is said first",
		setup:        func(c *gatecluster.Cluster) { c.PlexNotReady(); c.Hog("homelabai", 4) },
		wantCode:     CodeProtectedUnhealthy,
		wantProblems: []string{"media/plex is unhealthy", "free: homelabai 0 of 8"},
	}, {
		name:         "target node NotReady: no free shares there",
		setup:        func(c *gatecluster.Cluster) { c.NodeNotReady("homelabai") },
		wantCode:     CodeNodeUnavailable,
		wantProblems: []string{"homelabai is NotReady (status Unknown", "Kubelet stopped posting node status", "bring the GPU node back"},
	}, {
		name:  "one candidate NotReady, the other has room",
		setup: func(c *gatecluster.Cluster) { c.NodeNotReady("gpu2") },
		subject: func(_ *gatecluster.Cluster, s *Subject) {
			s.Pod.Spec.NodeSelector = map[string]string{"nvidia.com/gpu.present": "true"}
		},
		wantCode:    CodeOK,
		wantAllowed: true,
	}, {
		name:  "the only candidate with room is NotReady",
		setup: func(c *gatecluster.Cluster) { c.Hog("homelabai", 4); c.NodeNotReady("gpu2") },
		subject: func(_ *gatecluster.Cluster, s *Subject) {
			s.Pod.Spec.NodeSelector = map[string]string{"nvidia.com/gpu.present": "true"}
		},
		wantCode:     CodeSharesShort,
		wantProblems: []string{"gpu2 0 of 4 (node NotReady", "homelabai 0 of 8 (held by"},
	}, {
		name:         "NotReady and too big: the request is said first",
		setup:        func(c *gatecluster.Cluster) { c.NodeNotReady("homelabai") },
		subject:      func(_ *gatecluster.Cluster, s *Subject) { s.Pod.Spec = gatecluster.PodSpec("", 9, "homelabai") },
		wantCode:     CodeNeverFits,
		wantProblems: []string{"can never start", "homelabai is NotReady"},
	}, {
		name: "no GPU node matches",
		subject: func(_ *gatecluster.Cluster, s *Subject) {
			s.Pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "nas"}
		},
		wantCode:     CodeNodeUnavailable,
		wantProblems: []string{"no GPU node matches its nodeName and nodeSelector"},
	}, {
		name:         "three pods of 2 shares, room for 2",
		subject:      func(_ *gatecluster.Cluster, s *Subject) { s.Pods = 3 },
		wantCode:     CodeSharesShort,
		wantProblems: []string{"2 nvidia.com/gpu.shared for each of 3 pods (room for 2)"},
	}, {
		name:  "applied again: the shares its own pods hold count as free",
		setup: func(c *gatecluster.Cluster) { c.Hog("homelabai", 4) },
		subject: func(c *gatecluster.Cluster, s *Subject) {
			s.Pod, s.Replaces = c.NewPod("ai", "hog-homelabai"), true
			s.Workload = workload.Ref{Kind: workload.KindDeployment, Namespace: "ai", Name: "hog-homelabai"}
		},
		wantCode:    CodeOK,
		wantAllowed: true,
	}, {
		name:  "Plex's own pod is not held back by Plex",
		setup: (*gatecluster.Cluster).PlexNotReady,
		subject: func(c *gatecluster.Cluster, s *Subject) {
			s.Pod, s.Policy = c.NewPod("media", "plex"), &policy.Policy{Protected: true}
			s.Workload = workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}
		},
		wantCode:    CodeOK,
		wantAllowed: true,
	}, {
		name:  "not preemptible: the gate lets it in, the problem stays",
		setup: func(c *gatecluster.Cluster) { c.Hog("homelabai", 4) },
		subject: func(_ *gatecluster.Cluster, s *Subject) {
			s.Policy = &policy.Policy{}
		},
		wantCode:     CodeSharesShort,
		wantAllowed:  true,
		wantProblems: []string{"free: homelabai 0 of 8"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := gatecluster.Homelab()
			if tt.setup != nil {
				tt.setup(c)
			}
			s := Subject{Pod: c.NewPod("ai-dev", "vllm-server"), Policy: preemptible,
				Workload: workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}}
			if tt.subject != nil {
				tt.subject(c, &s)
			}
			v, err := clusterview.Read(&c.Cluster, clusterview.Options{})
			if err != nil {
				t.Fatal(err)
			}
			d := DecideFor(v, s, Options{Nodes: c.Nodes, Classes: c.Classes})
			if d.Code() != tt.wantCode || d.Allowed != tt.wantAllowed {
				t.Errorf("code %d, allowed %v; want %d, %v: %+v", d.Code(), d.Allowed, tt.wantCode, tt.wantAllowed, d.Problems)
			}
			var all []string
			for _, p := range d.Problems {
				all = append(all, p.Message)
			}
			for _, w := range tt.wantProblems {
				if !strings.Contains(strings.Join(all, "\n"), w) {
					t.Errorf("problems lack %q:\n%s", w, strings.Join(all, "\n"))
				}
			}
		})
	}
}
