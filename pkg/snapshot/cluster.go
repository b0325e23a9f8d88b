package snapshot

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/policy"
)

// Cluster lists, once, what the arbiter's informers keep (the ledger's
// input, Deployments, StatefulSets, CronJobs and PriorityClasses; Jobs
// as metadata only): for a command
// that decides as the admission gate does, without watching. Pods keep
// their status: the decision reads whether the protected workload's pods
// are Ready.
func Cluster(ctx context.Context, cs kubernetes.Interface, opt ledger.Options) (*clusterview.Cluster, error) {
	in, err := take(ctx, cs, ledger.Options{SharedResources: opt.SharedResources}, counted)
	if err != nil {
		return nil, err
	}
	c := &clusterview.Cluster{Input: in, Classes: policy.PriorityClasses{}}
	deps, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, listErr("deployments", err)
	}
	c.Deployments = deps.Items
	sts, err := cs.AppsV1().StatefulSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, listErr("statefulsets", err)
	}
	c.StatefulSets = sts.Items
	cjs, err := cs.BatchV1().CronJobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, listErr("cronjobs", err)
	}
	c.CronJobs = cjs.Items
	pcs, err := cs.SchedulingV1().PriorityClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, listErr("priorityclasses", err)
	}
	for i := range pcs.Items {
		c.Classes[pcs.Items[i].Name] = &pcs.Items[i]
	}
	return c, nil
}
