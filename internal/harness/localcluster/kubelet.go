package localcluster

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/pkg/podstatus"
)

// Kubelet plays every simulated node's kubelet for pods that come and go
// while a test or the demo runs (Deployments scaled by the arbiter): a
// bound pod becomes Running and Ready, and a pod being deleted is
// confirmed gone, as the kubelet does once its containers stop.
type Kubelet struct {
	c  *Cluster
	mu sync.Mutex
	// notReady pods run but do not pass readiness (a broken Plex).
	notReady func(*corev1.Pod) bool
	// onStop sees each pod's containers stop, before the pod goes.
	onStop func(*corev1.Pod)
}

// OnStop calls f for each pod whose containers stop, before its deletion
// is confirmed: the moment a real GPU gets its memory back.
func (k *Kubelet) OnStop(f func(*corev1.Pod)) {
	k.mu.Lock()
	k.onStop = f
	k.mu.Unlock()
}

// StartKubelet runs the simulated kubelets until ctx ends.
func (c *Cluster) StartKubelet(ctx context.Context) *Kubelet {
	k := &Kubelet{c: c, notReady: func(*corev1.Pod) bool { return false }}
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[cache.ObjectName]())
	f := informers.NewSharedInformerFactory(c.Client, 0)
	inf := f.Core().V1().Pods().Informer()
	enqueue := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			queue.Add(cache.MetaObjectToName(p))
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }})
	f.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	go func() {
		for {
			key, shutdown := queue.Get()
			if shutdown {
				return
			}
			if err := k.sync(ctx, inf.GetIndexer(), key); err != nil && ctx.Err() == nil {
				queue.AddRateLimited(key)
			} else {
				queue.Forget(key)
			}
			queue.Done(key)
		}
	}()
	return k
}

// SetNotReady decides which pods fail readiness from now on; pods already
// running are updated too.
func (k *Kubelet) SetNotReady(ctx context.Context, notReady func(*corev1.Pod) bool) error {
	k.mu.Lock()
	k.notReady = notReady
	k.mu.Unlock()
	pods, err := k.c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && podstatus.Ready(p) == notReady(p) {
			if _, err := k.c.SetPodRunning(ctx, p.Namespace, p.Name, !notReady(p)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *Kubelet) sync(ctx context.Context, store cache.Indexer, key cache.ObjectName) error {
	obj, exists, err := store.GetByKey(key.String())
	if err != nil || !exists {
		return err
	}
	p := obj.(*corev1.Pod)
	switch {
	case p.DeletionTimestamp != nil:
		k.mu.Lock()
		onStop := k.onStop
		k.mu.Unlock()
		if onStop != nil {
			onStop(p)
		}
		err := k.c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	case p.Spec.NodeName != "" && p.Status.Phase == corev1.PodPending:
		k.mu.Lock()
		ready := !k.notReady(p)
		k.mu.Unlock()
		_, err := k.c.SetPodRunning(ctx, p.Namespace, p.Name, ready)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	return nil
}
