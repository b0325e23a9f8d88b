package policy

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestTrustApply(t *testing.T) {
	classes := PriorityClasses{"ai-dev-gpu": {ObjectMeta: metav1.ObjectMeta{Name: "ai-dev-gpu"}, Value: 1000}}
	ref := func(ns, name string) workload.Ref {
		return workload.Ref{Kind: workload.KindDeployment, Namespace: ns, Name: name}
	}
	trust := NewTrust([]workload.Ref{ref("media", "plex")}, []string{"platform"})
	for _, tc := range []struct {
		name      string
		trust     *Trust
		ref       workload.Ref
		ann       map[string]string
		class     string
		protected bool
		priority  int32
		note      string // part of the one note, "" for none
	}{
		{name: "a tenant cannot protect itself", trust: trust, ref: ref("tenant", "squatter"),
			ann: map[string]string{workload.AnnotationProtected: "true"}, note: "gpuslice.io/protected ignored"},
		{name: "nor raise its priority above its class", trust: trust, ref: ref("tenant", "squatter"), class: "ai-dev-gpu",
			ann: map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPriority: "2147483647"}, priority: 1000, note: "gpuslice.io/priority=2147483647 ignored"},
		{name: "lowering is believed", trust: trust, ref: ref("ai", "ollama"), class: "ai-dev-gpu",
			ann: map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPriority: "500"}, priority: 500},
		{name: "the configuration protects without an annotation", trust: trust, ref: ref("media", "plex"), protected: true},
		{name: "a configured workload's priority annotation is vouched for", trust: trust, ref: ref("media", "plex"),
			ann: map[string]string{workload.AnnotationPriority: "1000000"}, protected: true, priority: 1000000},
		{name: "preemptible on a configured workload lowers it", trust: trust, ref: ref("media", "plex"),
			ann: map[string]string{workload.AnnotationPreemptible: "true"}},
		{name: "a trusted namespace is believed", trust: trust, ref: ref("platform", "triton"),
			ann: map[string]string{workload.AnnotationProtected: "true", workload.AnnotationPriority: "5000"}, protected: true, priority: 5000},
		{name: "no trust believes everything", ref: ref("tenant", "squatter"),
			ann: map[string]string{workload.AnnotationProtected: "true", workload.AnnotationPriority: "7"}, protected: true, priority: 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.ann, tc.class, classes, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, notes := tc.trust.Apply(tc.ref, p, tc.class, classes)
			if got.Protected != tc.protected || got.Priority != tc.priority {
				t.Errorf("protected %v priority %d, want %v %d", got.Protected, got.Priority, tc.protected, tc.priority)
			}
			if tc.note == "" && len(notes) > 0 || tc.note != "" && (len(notes) != 1 || !strings.Contains(notes[0], tc.note)) {
				t.Errorf("notes %q, want one saying %q", notes, tc.note)
			}
		})
	}
}
