package ledger

import (
	corev1 "k8s.io/api/core/v1"
)

// PodRequests is the pod's effective request of each GPU resource the
// ledger counts under opt (every "nvidia.com/..." resource and
// opt.SharedResources), as Build adds it up: the way the scheduler
// computes it, init containers and overhead included. Zero requests are
// left out.
func PodRequests(pod *corev1.Pod, opt Options) map[string]int64 {
	return podRequests(pod, newBuilder(Input{}, opt).isGPUResource)
}

// ContainerRequest is the container's request of one resource, falling
// back to its limit, as PodRequests reads each container.
func ContainerRequest(c corev1.Container, name corev1.ResourceName) int64 {
	return containerRequests(c, func(n corev1.ResourceName) bool { return n == name })[string(name)]
}

// podRequests returns the pod's effective request of each wanted resource
// the way the scheduler computes it (k8s.io/component-helpers resource
// PodRequests): regular containers and restartable (sidecar) init
// containers add up, a plain init container needs its own request plus the
// sidecars started before it, the pod needs the larger of the two, plus
// overhead. Zero requests are left out.
func podRequests(pod *corev1.Pod, want func(corev1.ResourceName) bool) map[string]int64 {
	total := map[string]int64{}
	for _, c := range pod.Spec.Containers {
		addInto(total, containerRequests(c, want))
	}

	initPeak := map[string]int64{}
	sidecars := map[string]int64{}
	for _, c := range pod.Spec.InitContainers {
		reqs := containerRequests(c, want)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addInto(total, reqs)
			addInto(sidecars, reqs)
			reqs = copyOf(sidecars)
		} else {
			addInto(reqs, sidecars)
		}
		for name, v := range reqs {
			initPeak[name] = max(initPeak[name], v)
		}
	}
	for name, v := range initPeak {
		total[name] = max(total[name], v)
	}
	addInto(total, quantities(pod.Spec.Overhead, want))

	for name, v := range total {
		if v == 0 {
			delete(total, name)
		}
	}
	return total
}

// containerRequests reads requests, falling back to limits: the API server
// defaults an extended resource's request to its limit, and pods built by
// hand (tests, dry runs) may not have been defaulted.
func containerRequests(c corev1.Container, want func(corev1.ResourceName) bool) map[string]int64 {
	reqs := quantities(c.Resources.Limits, want)
	for name, v := range quantities(c.Resources.Requests, want) {
		reqs[name] = v
	}
	return reqs
}

func quantities(list corev1.ResourceList, want func(corev1.ResourceName) bool) map[string]int64 {
	out := map[string]int64{}
	for name, q := range list {
		if want(name) {
			out[string(name)] = q.Value()
		}
	}
	return out
}

func addInto(dst, src map[string]int64) {
	for name, v := range src {
		dst[name] += v
	}
}

func copyOf(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	addInto(out, m)
	return out
}
