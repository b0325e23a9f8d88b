// Package podstatus reads what a pod's status says, the way kubectl does.
package podstatus

import corev1 "k8s.io/api/core/v1"

// Ready says whether the pod's Ready condition is True (its containers
// pass readiness); it says nothing of the phase or a deletion under way.
func Ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
