package ledger

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ownerRef is the controller of an intermediate owner.
type ownerRef struct{ kind, name string }

// indexOwners maps the intermediate owners a pod points at (ReplicaSet,
// Job) to their own controller (Deployment, CronJob), so a workload is
// named the way people deploy it rather than by a generated name.
func indexOwners(replicaSets []appsv1.ReplicaSet, jobs []batchv1.Job) map[string]map[string]ownerRef {
	idx := map[string]map[string]ownerRef{"ReplicaSet": {}, "Job": {}}
	add := func(kind string, obj metav1.Object) {
		if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
			idx[kind][nsName(obj.GetNamespace(), obj.GetName())] = ownerRef{ref.Kind, ref.Name}
		}
	}
	for i := range replicaSets {
		add("ReplicaSet", &replicaSets[i])
	}
	for i := range jobs {
		add("Job", &jobs[i])
	}
	return idx
}

// owner returns the workload a pod belongs to (see Owners.Of).
func (b *builder) owner(pod *corev1.Pod) (kind, name string) {
	return Owners{b.owners}.Of(pod)
}

// Owners finds the workload a pod belongs to, as the ledger names it.
type Owners struct {
	idx map[string]map[string]ownerRef
}

// Of returns the pod's controller, walked one level up for ReplicaSets
// and Jobs when their owner is known, or the pod itself when it has no
// controller.
func (o Owners) Of(pod *corev1.Pod) (kind, name string) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return "Pod", pod.Name
	}
	if up, ok := o.idx[ref.Kind][nsName(pod.Namespace, ref.Name)]; ok {
		return up.kind, up.name
	}
	return ref.Kind, ref.Name
}
