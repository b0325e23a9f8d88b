// Package podsource is a pod source for the node agent's unit tests and
// benchmark: a cache.ListerWatcher that lists a fixed set of pods and
// reports no change, in place of agent.NodePods and an API server. Tests
// of the agent against a real API server (test/e2e, test/realnode) use
// agent.NodePods itself.
package podsource

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Fixed lists the pods among objs (other kinds are skipped) and then
// watches forever without an event.
func Fixed(objs ...runtime.Object) cache.ListerWatcher {
	return listOnly{fixed(objs)}
}

// listOnly tells the reflector to list, not to stream the initial state
// over the watch (client-go's watch-list), which a fixed source cannot.
type listOnly struct{ *cache.ListWatch }

func (listOnly) IsWatchListSemanticsUnSupported() bool { return true }

func fixed(objs []runtime.Object) *cache.ListWatch {
	list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			list.Items = append(list.Items, *p.DeepCopy())
		}
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return list.DeepCopy(), nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return watch.NewFake(), nil
		},
	}
}
