package arbiter

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/gpuslice/gpuslice/pkg/policy"
)

// Informers keep the objects the arbiter (and the admission gate) read in
// memory, so a round costs no API call.
type Informers struct {
	factory informers.SharedInformerFactory
	synced  []cache.InformerSynced
}

// NewInformers watches nodes, pods, ReplicaSets, Deployments,
// StatefulSets, ConfigMaps (GPU_MEMORY_UTILIZATION) and PriorityClasses.
// onChange, when not nil, is called after any of them changes.
func NewInformers(cs kubernetes.Interface, onChange func()) *Informers {
	f := informers.NewSharedInformerFactory(cs, 10*time.Minute)
	i := &Informers{factory: f}
	for _, inf := range []cache.SharedIndexInformer{
		f.Core().V1().Nodes().Informer(),
		f.Core().V1().Pods().Informer(),
		f.Core().V1().ConfigMaps().Informer(),
		f.Apps().V1().ReplicaSets().Informer(),
		f.Apps().V1().Deployments().Informer(),
		f.Apps().V1().StatefulSets().Informer(),
		f.Scheduling().V1().PriorityClasses().Informer(),
	} {
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

// Synced says whether every informer has its first list.
func (i *Informers) Synced() bool {
	for _, s := range i.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Cluster copies the informers' objects out (the ledger keeps pointers
// into its input, so it must not share the cache's objects).
func (i *Informers) Cluster() (*Cluster, error) {
	c := &Cluster{Classes: policy.PriorityClasses{}}
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
	pcs, err := i.factory.Scheduling().V1().PriorityClasses().Lister().List(all)
	if err != nil {
		return nil, err
	}
	for _, pc := range pcs {
		c.Classes[pc.Name] = pc
	}
	return c, nil
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
