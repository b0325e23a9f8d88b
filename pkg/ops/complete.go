package ops

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// CompleteOptions select what WorkloadCompletions offers.
type CompleteOptions struct {
	// Released offers only workloads gpuslice release scaled to zero
	// (for restore).
	Released bool
	// CronJobs offers CronJobs too (cj/NAME), which only release and
	// restore take.
	CronJobs bool
}

// WorkloadCompletions lists, for shell completion, the Deployments and
// StatefulSets (and with CronJobs, CronJobs) in namespace whose pods use
// the GPU (a share request or the device annotation, as the ledger counts
// them), written as the commands take them (deploy/NAME, sts/NAME,
// cj/NAME) and starting with prefix.
func WorkloadCompletions(ctx context.Context, cs kubernetes.Interface, namespace, prefix string, opt CompleteOptions) ([]string, error) {
	var out []string
	add := func(kind, name string, meta metav1.ObjectMeta, t corev1.PodTemplateSpec) {
		pod := &corev1.Pod{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
		if !ledger.IsGPUPod(pod, ledger.Options{}) && t.Annotations[workload.AnnotationShares] == "" {
			return
		}
		if _, released := meta.Annotations[workload.AnnotationReleasedReplicas]; opt.Released && !released {
			return
		}
		if s := kind + "/" + name; strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	deps, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Deployments in %s: %w", namespace, err)
	}
	for _, d := range deps.Items {
		add("deploy", d.Name, d.ObjectMeta, d.Spec.Template)
	}
	sts, err := cs.AppsV1().StatefulSets(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing StatefulSets in %s: %w", namespace, err)
	}
	for _, s := range sts.Items {
		add("sts", s.Name, s.ObjectMeta, s.Spec.Template)
	}
	if opt.CronJobs {
		cjs, err := cs.BatchV1().CronJobs(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing CronJobs in %s: %w", namespace, err)
		}
		for _, cj := range cjs.Items {
			add("cj", cj.Name, cj.ObjectMeta, cj.Spec.JobTemplate.Spec.Template)
		}
	}
	slices.Sort(out)
	return out, nil
}
