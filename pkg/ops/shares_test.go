package ops

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const shared = "nvidia.com/gpu.shared"

// seedLedger is the seed's "After AI-dev Deployment" table on homelabai,
// with vllm-server running pods pods of perPod shares.
func seedLedger(pods int, perPod int64) *ledger.Report {
	wl := func(ns, name string, shares int64, pods int) ledger.Workload {
		w := ledger.Workload{Namespace: ns, Kind: workload.KindDeployment, Name: name, Shares: shares, Pods: pods, Method: ledger.MethodShares, Resource: shared}
		if shares == 0 {
			w.Method, w.Resource = ledger.MethodWebhook, ""
		}
		return w
	}
	alloc := 4 + perPod*int64(pods)
	return &ledger.Report{Nodes: []ledger.NodeReport{{
		Name: "homelabai", GPUCount: 1, GPUMemoryBytes: 12 << 30,
		Resources: []ledger.ResourceUsage{{Name: shared, Capacity: 8, Allocatable: 8, Allocated: alloc, Free: 8 - alloc}},
		Workloads: []ledger.Workload{
			wl("media", "plex", 0, 1), wl("ai", "ollama", 1, 1), wl("ai", "tts", 1, 1), wl("ai", "whisper", 2, 1),
			wl("ai-dev", "vllm-server", perPod*int64(pods), pods),
		},
	}}}
}

func TestDecideShares(t *testing.T) {
	recreate := func(w *appsWorkload) {
		w.obj.(*appsv1.Deployment).Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	}
	for _, tc := range []struct {
		name   string
		edit   func(*appsWorkload)
		report *ledger.Report
		opts   SharesOptions
		want   SharesResult // checked: Container, Resource, Old, New, Replicas, Free, Held, Needed, Rolling, Changed
		msg    string
		err    string
	}{
		{
			name: "seed: 4 does not fit beside the running pod", report: seedLedger(1, 2), opts: SharesOptions{Shares: 4},
			err: "homelabai has 2 free of 8 nvidia.com/gpu.shared; vllm-server holds 2; asking 4 needs 2 more: free them first (ollama 1, tts 1, whisper 2 hold the rest); " +
				"its rolling update starts each new pod before stopping an old one, with strategy Recreate it would need 4",
		},
		{
			name: "seed with Recreate: 4 fits, the old pod stops first", edit: recreate, report: seedLedger(1, 2), opts: SharesOptions{Shares: 4},
			want: SharesResult{Container: "vllm", Resource: shared, Old: 2, New: 4, Replicas: 1, Free: 2, Held: 2, Needed: 4, Changed: true},
			msg:  "deployment ai-dev/vllm-server container vllm: nvidia.com/gpu.shared 2 → 4 per pod, 1 replica(s); homelabai: 2 free + 2 held, 4 needed",
		},
		{
			name: "seed: 3 needs 1 more while rolling", report: seedLedger(1, 2), opts: SharesOptions{Shares: 3},
			err: "asking 3 needs 1 more",
		},
		{
			name: "fewer shares still need room for the new pod while rolling", report: seedLedger(1, 2), opts: SharesOptions{Shares: 1},
			want: SharesResult{Container: "vllm", Resource: shared, Old: 2, New: 1, Replicas: 1, Free: 2, Held: 2, Needed: 3, Rolling: true, Changed: true},
		},
		{
			name:   "three replicas of 1 asking 2: at the last step all new pods run beside one old",
			edit:   func(w *appsWorkload) { w.setReplicas(3); setRequest(&w.template.Spec.Containers[0], shared, 1) },
			report: seedLedger(3, 1), opts: SharesOptions{Shares: 2},
			err: "homelabai has 1 free of 8 nvidia.com/gpu.shared; vllm-server holds 3; asking 2 × 3 replicas needs 3 more: free them first (ollama 1, tts 1, whisper 2 hold the rest); " +
				"its rolling update starts each new pod before stopping an old one, with strategy Recreate it would need 6",
		},
		{
			name:   "three replicas of 1 asking 2 with room: peak 7",
			edit:   func(w *appsWorkload) { w.setReplicas(3); setRequest(&w.template.Spec.Containers[0], shared, 1) },
			report: func() *ledger.Report { r := seedLedger(3, 1); r.Nodes[0].Resources[0].Free += 3; return r }(), opts: SharesOptions{Shares: 2},
			want: SharesResult{Container: "vllm", Resource: shared, Old: 1, New: 2, Replicas: 3, Free: 4, Held: 3, Needed: 7, Rolling: true, Changed: true},
		},
		{
			name: "released: counts the replicas restore brings back", report: seedLedger(0, 0), opts: SharesOptions{Shares: 3},
			edit: func(w *appsWorkload) { w.setReplicas(0); w.annotate(workload.AnnotationReleasedReplicas, "2") },
			err:  "homelabai has 4 free of 8 nvidia.com/gpu.shared; vllm-server holds 0; asking 3 × 2 replicas needs 2 more: free them first (ollama 1, tts 1, whisper 2 hold the rest) (released; counting the 2 replica(s) restore brings back)",
		},
		{
			name: "same count: nothing to do", report: seedLedger(1, 2), opts: SharesOptions{Shares: 2},
			want: SharesResult{Container: "vllm", Resource: shared, Old: 2, New: 2, Replicas: 1},
			msg:  "already requests 2 nvidia.com/gpu.shared",
		},
		{
			name: "no GPU request yet: the only container gets nvidia.com/gpu.shared", report: seedLedger(1, 2), opts: SharesOptions{Shares: 1},
			edit: func(w *appsWorkload) { w.template.Spec.Containers[0].Resources = corev1.ResourceRequirements{} },
			want: SharesResult{Container: "vllm", Resource: shared, Old: 0, New: 1, Replicas: 1, Free: 2, Held: 2, Needed: 3, Rolling: true, Changed: true},
		},
		{
			name: "the GPU resource the container already has", report: &ledger.Report{Nodes: []ledger.NodeReport{{Name: "gpubox",
				Resources: []ledger.ResourceUsage{{Name: "nvidia.com/gpu", Allocatable: 2, Free: 2}}}}},
			opts: SharesOptions{Shares: 2},
			edit: func(w *appsWorkload) {
				w.template.Spec.NodeSelector = nil
				w.template.Spec.Containers[0].Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}}
			},
			want: SharesResult{Container: "vllm", Resource: "nvidia.com/gpu", Old: 1, New: 2, Replicas: 1, Free: 2, Needed: 2, Changed: true},
		},
		{
			name: "two GPU containers: ask which", report: seedLedger(1, 2), opts: SharesOptions{Shares: 1},
			edit: func(w *appsWorkload) {
				c := w.template.Spec.Containers[0]
				c.Name = "sidecar"
				w.template.Spec.Containers = append(w.template.Spec.Containers, c)
			},
			err: "containers vllm, sidecar of deployment ai-dev/vllm-server all request GPU resources: pick one with --container",
		},
		{
			name: "unknown container", report: seedLedger(1, 2), opts: SharesOptions{Shares: 1, Container: "web"},
			err: `deployment ai-dev/vllm-server has no container "web": it has vllm`,
		},
		{
			name: "gpu-shares annotation: the same count changes nothing (examples/vllm.yaml)", report: seedLedger(1, 2), opts: SharesOptions{Shares: 2},
			edit: viaAnnotation("2"),
			want: SharesResult{Container: "vllm", Resource: shared, Old: 2, New: 2, Replicas: 1},
			msg:  `already has gpu-shares: "2"`,
		},
		{
			name: "gpu-shares annotation: fewer shares change the annotation, not the container", report: seedLedger(1, 2), opts: SharesOptions{Shares: 1},
			edit: viaAnnotation("2"),
			want: SharesResult{Container: "vllm", Resource: shared, Old: 2, New: 1, Replicas: 1, Free: 2, Held: 2, Needed: 3, Rolling: true, Changed: true},
			msg:  "annotation gpu-shares: nvidia.com/gpu.shared 2 → 1 per pod",
		},
		{
			name: "gpu-shares annotation counts what the pods hold: 4 does not fit while rolling", report: seedLedger(1, 2), opts: SharesOptions{Shares: 4},
			edit: viaAnnotation("2"),
			err:  "asking 4 needs 2 more",
		},
		{
			name: "gpu-shares annotation that is not a count", report: seedLedger(1, 2), opts: SharesOptions{Shares: 1},
			edit: viaAnnotation("two"),
			err:  `deployment ai-dev/vllm-server: pod template annotation gpu-shares="two" is not a share count`,
		},
		{
			name: "more shares: the note says they are not more GPU time", edit: recreate, report: seedLedger(1, 2), opts: SharesOptions{Shares: 4},
			want: SharesResult{Container: "vllm", Resource: shared, Old: 2, New: 4, Replicas: 1, Free: 2, Held: 2, Needed: 4, Changed: true},
			msg:  "4 shares reserve 4 of the node's time-slicing replicas, not more GPU time",
		},
		{
			name: "resource no node offers", report: seedLedger(1, 2), opts: SharesOptions{Shares: 1, Resource: "nvidia.com/gpu.shard"},
			err: "no GPU node offers nvidia.com/gpu.shard to deployment ai-dev/vllm-server",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := wrapDeployment(seed.VLLMWorkload().Deployment)
			if tc.edit != nil {
				tc.edit(w)
			}
			res, err := decideShares(w, tc.report, tc.opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v\nwant %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := SharesResult{Container: res.Container, Resource: res.Resource, Old: res.Old, New: res.New, Replicas: res.Replicas,
				Free: res.Free, Held: res.Held, Needed: res.Needed, Rolling: res.Rolling, Changed: res.Changed}
			if got.Container != tc.want.Container || got.Resource != tc.want.Resource || got.Old != tc.want.Old || got.New != tc.want.New ||
				got.Replicas != tc.want.Replicas || got.Free != tc.want.Free || got.Held != tc.want.Held || got.Needed != tc.want.Needed ||
				got.Rolling != tc.want.Rolling || got.Changed != tc.want.Changed {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if !strings.Contains(res.Message, tc.msg) {
				t.Errorf("message %q lacks %q", res.Message, tc.msg)
			}
			c := w.template.Spec.Containers[0]
			name := corev1.ResourceName(res.Resource)
			if res.Annotation {
				if got := w.template.Annotations[workload.AnnotationShares]; res.Changed && got != fmt.Sprint(tc.opts.Shares) || len(c.Resources.Requests) != 0 {
					t.Errorf("annotation %q, requests %v: want the annotation %d and no request", got, c.Resources.Requests, tc.opts.Shares)
				}
				return
			}
			if q := c.Resources.Requests[name]; res.Changed && (q.Value() != tc.opts.Shares || c.Resources.Limits[name] != q) {
				t.Errorf("requests %v limits %v, want %d", c.Resources.Requests, c.Resources.Limits, tc.opts.Shares)
			}
		})
	}
}

// viaAnnotation makes vLLM's template as examples/vllm.yaml writes it: no
// request on the container, gpu-shares for the webhook to add it.
func viaAnnotation(shares string) func(*appsWorkload) {
	return func(w *appsWorkload) {
		w.template.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
		if w.template.Annotations == nil {
			w.template.Annotations = map[string]string{}
		}
		w.template.Annotations[workload.AnnotationShares] = shares
	}
}

func TestRollingKeepsOld(t *testing.T) {
	maxUnavailable := func(v intstr.IntOrString) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: &v}
		}
	}
	for _, tc := range []struct {
		name     string
		edit     func(*appsv1.Deployment)
		replicas int32
		want     bool
	}{
		{"default 25% of 1 is 0", nil, 1, true},
		{"default 25% of 3 is 0", nil, 3, true},
		{"default 25% of 4 is 1", nil, 4, false},
		{"50% of 1 rounds down to 0", maxUnavailable(intstr.FromString("50%")), 1, true},
		{"explicit 0", maxUnavailable(intstr.FromInt32(0)), 10, true},
		{"explicit 1", maxUnavailable(intstr.FromInt32(1)), 1, false},
		{"Recreate", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType }, 1, false},
	} {
		d := seed.VLLMWorkload().Deployment
		if tc.edit != nil {
			tc.edit(d)
		}
		if got := wrapDeployment(d).rollingKeepsOld(tc.replicas); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
	sts := &appsv1.StatefulSet{}
	if wrapStatefulSet(sts).rollingKeepsOld(1) {
		t.Error("a StatefulSet deletes a pod before creating its replacement")
	}
}
