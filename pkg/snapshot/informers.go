package snapshot

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/policy"
)

// Informers keep the objects the arbiter and the admission gate read (a
// clusterview.Cluster) in memory, so a round or an admission costs no API
// call.
type Informers struct {
	factory informers.SharedInformerFactory
	synced  []cache.InformerSynced
	// lastErr is the latest list or watch failure, for /readyz.
	lastErr atomic.Pointer[string]
}

// NewInformers watches nodes, pods, ReplicaSets, Deployments,
// StatefulSets, CronJobs and their Jobs, ConfigMaps
// (GPU_MEMORY_UTILIZATION) and PriorityClasses. onChange, when not nil,
// is called after any of them changes.
func NewInformers(cs kubernetes.Interface, onChange func()) *Informers {
	f := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	i := &Informers{factory: f}
	// Jobs and CronJobs keep only what the view reads: a Job's pod
	// template is most of its bytes and nobody here reads it.
	_ = f.Batch().V1().Jobs().Informer().SetTransform(trimJob)
	_ = f.Batch().V1().CronJobs().Informer().SetTransform(trimCronJob)
	for resource, inf := range map[string]cache.SharedIndexInformer{
		"nodes":                             f.Core().V1().Nodes().Informer(),
		"pods":                              f.Core().V1().Pods().Informer(),
		"configmaps":                        f.Core().V1().ConfigMaps().Informer(),
		"replicasets.apps":                  f.Apps().V1().ReplicaSets().Informer(),
		"deployments.apps":                  f.Apps().V1().Deployments().Informer(),
		"statefulsets.apps":                 f.Apps().V1().StatefulSets().Informer(),
		"cronjobs.batch":                    f.Batch().V1().CronJobs().Informer(),
		"jobs.batch":                        f.Batch().V1().Jobs().Informer(),
		"priorityclasses.scheduling.k8s.io": f.Scheduling().V1().PriorityClasses().Informer(),
	} {
		_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			msg := fmt.Sprintf("listing %s failed: %v", resource, err)
			if apierrors.IsForbidden(err) {
				msg = fmt.Sprintf("may not list and watch %s cluster-wide: grant list and watch on %s to this ServiceAccount (the Helm chart's arbiter ClusterRole does)", resource, resource)
			}
			i.lastErr.Store(&msg)
		})
		if onChange != nil {
			poke := func(any) { onChange() }
			_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, o any) { onChange() }})
		}
		i.synced = append(i.synced, inf.HasSynced)
	}
	return i
}

// Start runs the informers until ctx ends and waits for their first list.
func (i *Informers) Start(ctx context.Context) error {
	i.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), i.synced...) {
		return fmt.Errorf("listing the cluster's nodes, pods and workloads did not finish: check the API server and this service account's list and watch permissions")
	}
	return nil
}

// Synced says whether every informer has its first list, and if not,
// the latest failure to get it.
func (i *Informers) Synced() (bool, string) {
	for _, s := range i.synced {
		if !s() {
			if msg := i.lastErr.Load(); msg != nil {
				return false, *msg
			}
			return false, "still listing the cluster's nodes, pods and workloads"
		}
	}
	return true, ""
}

// Cluster copies the informers' objects out (the ledger keeps pointers
// into its input, so it must not share the cache's objects).
func (i *Informers) Cluster() (*clusterview.Cluster, error) {
	c := &clusterview.Cluster{Classes: policy.PriorityClasses{}}
	all := labels.Everything()
	nodes, err := i.factory.Core().V1().Nodes().Lister().List(all)
	if err != nil {
		return nil, err
	}
	c.Nodes = copyAll[corev1.Node](nodes)
	pods, err := i.factory.Core().V1().Pods().Lister().List(all)
	if err != nil {
		return nil, err
	}
	c.Pods = copyAll[corev1.Pod](pods)
	cms, err := i.factory.Core().V1().ConfigMaps().Lister().List(all)
	if err != nil {
		return nil, err
	}
	c.ConfigMaps = copyAll[corev1.ConfigMap](cms)
	rss, err := i.factory.Apps().V1().ReplicaSets().Lister().List(all)
	if err != nil {
		return nil, err
	}
	c.ReplicaSets = copyAll[appsv1.ReplicaSet](rss)
	deps, err := i.factory.Apps().V1().Deployments().Lister().List(all)
	if err != nil {
		return nil, err
	}
	c.Deployments = copyAll[appsv1.Deployment](deps)
	sts, err := i.factory.Apps().V1().StatefulSets().Lister().List(all)
	if err != nil {
		return nil, err
	}
	c.StatefulSets = copyAll[appsv1.StatefulSet](sts)
	cjs, err := i.factory.Batch().V1().CronJobs().Lister().List(all)
	if err != nil {
		return nil, err
	}
	c.CronJobs = copyAll[batchv1.CronJob](cjs)
	jobs, err := i.factory.Batch().V1().Jobs().Lister().List(all)
	if err != nil {
		return nil, err
	}
	c.Jobs = copyAll[batchv1.Job](jobs)
	pcs, err := i.factory.Scheduling().V1().PriorityClasses().Lister().List(all)
	if err != nil {
		return nil, err
	}
	for _, pc := range pcs {
		c.Classes[pc.Name] = pc
	}
	return c, nil
}

// trimJob keeps of a Job its metadata without managedFields, the spec
// fields that say how many pods it wants and whether it is suspended, and
// the status' conditions (finished) and succeeded count.
func trimJob(obj any) (any, error) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return obj, nil // a tombstone
	}
	j.ManagedFields = nil
	j.Spec = batchv1.JobSpec{Parallelism: j.Spec.Parallelism, Completions: j.Spec.Completions, Suspend: j.Spec.Suspend}
	j.Status = batchv1.JobStatus{Conditions: j.Status.Conditions, Succeeded: j.Status.Succeeded}
	return j, nil
}

// trimCronJob drops a CronJob's managedFields and status; its job
// template carries the pods' policy, shares and node selector.
func trimCronJob(obj any) (any, error) {
	cj, ok := obj.(*batchv1.CronJob)
	if !ok {
		return obj, nil
	}
	cj.ManagedFields = nil
	cj.Status = batchv1.CronJobStatus{}
	return cj, nil
}

// copyAll dereferences the cache's pointers into a slice of values. The
// values share maps and slices with the cache, which nobody here writes.
func copyAll[T any](in []*T) []T {
	out := make([]T, len(in))
	for i, p := range in {
		out[i] = *p
	}
	return out
}
