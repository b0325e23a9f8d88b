package ledger

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestInterventions(t *testing.T) {
	ref := func(kind, ns, name string) workload.Ref { return workload.Ref{Kind: kind, Namespace: ns, Name: name} }
	managed := []ManagedWorkload{
		{Ref: ref(workload.KindDeployment, "ai-dev", "vllm-server"), Replicas: 0, Annotations: map[string]string{
			workload.AnnotationReleasedReplicas: "1", workload.AnnotationReleasedAt: "2026-12-04T20:15:00Z",
			workload.AnnotationReleasedBy: "gpuslice arbiter", workload.AnnotationReleasedReason: "Plex is transcoding on homelabai",
			workload.AnnotationReleasedNode: "homelabai",
		}},
		{Ref: ref(workload.KindStatefulSet, "ai", "ollama"), Replicas: 0, Annotations: map[string]string{
			workload.AnnotationReleasedReplicas: "2", workload.AnnotationReleasedAt: "2026-12-04T19:00:00Z", workload.AnnotationReleasedBy: "alice",
		}},
		{Ref: ref(workload.KindDeployment, "ai", "comfyui"), Replicas: 1, Annotations: map[string]string{
			workload.AnnotationLoweredFrom: "0.70", workload.AnnotationLoweredTo: "0.30", workload.AnnotationLoweredAt: "2026-12-04T20:16:00Z",
			workload.AnnotationLoweredNode: "gpu2", workload.AnnotationLoweredReason: "free GPU memory 900Mi below 2Gi",
		}},
		{Ref: ref(workload.KindCronJob, "ai", "nightly-training"), Replicas: 0, Annotations: map[string]string{
			workload.AnnotationReleasedReplicas: "1", workload.AnnotationReleasedAt: "2026-12-04T05:00:00Z", workload.AnnotationReleasedBy: "gpuslice arbiter",
			workload.AnnotationReleasedReason: "outside its active hours 01:00-06:00", workload.AnnotationReleasedNode: "homelabai",
		}},
		{Ref: ref(workload.KindDeployment, "ai", "broken"), Replicas: 0, Annotations: map[string]string{workload.AnnotationReleasedReplicas: "many"}},
	}
	tests := []struct {
		name         string
		opt          Options
		want         []string // "kind/ns/name action detail | by | at | reason | undo"
		wantWarnings []string
	}{{
		name: "all of them, sorted, with who, when, why and the undo",
		want: []string{
			"Deployment/ai/comfyui lowered GPU_MEMORY_UTILIZATION 0.70 → 0.30 | gpuslice arbiter | 2026-12-04T20:16:00Z | free GPU memory 900Mi below 2Gi | gpuslice restore deployment/comfyui -n ai (or wait: the arbiter raises it after its hold-down)",
			"CronJob/ai/nightly-training suspended the CronJob and its running Jobs | gpuslice arbiter | 2026-12-04T05:00:00Z | outside its active hours 01:00-06:00 | gpuslice restore cronjob/nightly-training -n ai",
			"StatefulSet/ai/ollama released 2 → 0 replicas | alice | 2026-12-04T19:00:00Z |  | gpuslice restore statefulset/ollama -n ai",
			"Deployment/ai-dev/vllm-server released 1 → 0 replicas | gpuslice arbiter | 2026-12-04T20:15:00Z | Plex is transcoding on homelabai | gpuslice restore deployment/vllm-server -n ai-dev",
		},
		wantWarnings: []string{`deployment ai/broken has annotation gpuslice.io/released-replicas="many"`},
	}, {
		name: "namespace filter",
		opt:  Options{Namespace: "ai-dev"},
		want: []string{"Deployment/ai-dev/vllm-server released 1 → 0 replicas | gpuslice arbiter | 2026-12-04T20:15:00Z | Plex is transcoding on homelabai | gpuslice restore deployment/vllm-server -n ai-dev"},
	}, {
		name:         "node filter keeps that node's and those without a node",
		opt:          Options{Node: gpubox},
		want:         []string{"StatefulSet/ai/ollama released 2 → 0 replicas | alice | 2026-12-04T19:00:00Z |  | gpuslice restore statefulset/ollama -n ai"},
		wantWarnings: []string{"ai/broken"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := gpuboxCluster()
			c.in.Managed = managed
			r, err := Build(c.in, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, iv := range r.Interventions {
				got = append(got, strings.Join([]string{iv.Workload.Kind + "/" + iv.Workload.Namespace + "/" + iv.Workload.Name + " " + iv.Action + " " + iv.Detail, iv.By, iv.At, iv.Reason, iv.Undo}, " | "))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, w := range tt.wantWarnings {
				if !strings.Contains(strings.Join(r.Warnings, "\n"), w) {
					t.Errorf("warnings %q lack %q", r.Warnings, w)
				}
			}
		})
	}

	// The table lists them under their own heading.
	c := gpuboxCluster()
	c.in.Managed = managed[:1]
	r, err := Build(c.in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RELEASED OR LOWERED", "WORKLOAD                 NAMESPACE   ACTION", "deployment/vllm-server   ai-dev      released   1 → 0 replicas   gpuslice arbiter   2026-12-04T20:15:00Z   Plex is transcoding on homelabai   gpuslice restore deployment/vllm-server -n ai-dev"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
