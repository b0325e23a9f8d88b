package demo

import (
	"context"
	"fmt"

	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// The reference cluster's PriorityClasses: Plex over the AI workloads.
const (
	ClassPlex = "plex-media-critical"
	ClassAI   = "ai-dev-gpu"
)

// EnsurePriorityClasses creates the reference cluster's PriorityClasses.
func EnsurePriorityClasses(ctx context.Context, cs kubernetes.Interface) error {
	for name, value := range map[string]int32{ClassPlex: 1000000, ClassAI: 1000} {
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
		if _, err := cs.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating PriorityClass %s: %w", name, err)
		}
	}
	return nil
}

// ArbitratedWorkloads are the seed's workloads with the arbiter's policy:
// Plex protected in plex-media-critical, vLLM (2 replicas, as a team runs
// it) preemptible in ai-dev-gpu, Ollama preemptible below it. Create the
// PriorityClasses first.
func ArbitratedWorkloads() []Workload {
	ws := append(SeedWorkloads(), VLLMWorkload())
	for _, w := range ws {
		d := w.Deployment
		switch d.Namespace + "/" + d.Name {
		case "media/plex":
			d.Spec.Template.Spec.PriorityClassName = ClassPlex
		case "ai-dev/vllm-server":
			d.Spec.Template.Spec.PriorityClassName = ClassAI
			d.Annotations = map[string]string{workload.AnnotationPreemptible: "true"}
			two := int32(2)
			d.Spec.Replicas = &two
			// One share each: two replicas fit beside the seed's others.
			q := d.Spec.Template.Spec.Containers[0].Resources.Requests[workload.SharedResource]
			q.Set(1)
			d.Spec.Template.Spec.Containers[0].Resources.Requests[workload.SharedResource] = q
			d.Spec.Template.Spec.Containers[0].Resources.Limits[workload.SharedResource] = q
		case "ai/ollama":
			d.Spec.Template.Spec.PriorityClassName = ClassAI
			d.Annotations = map[string]string{workload.AnnotationPreemptible: "true", workload.AnnotationPriority: "500"}
		}
	}
	return ws
}
