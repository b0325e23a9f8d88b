package plexhealth

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/podenv"
	"github.com/gpuslice/gpuslice/pkg/podstatus"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// LogReader reads the end of a container's log. KubeLogs reads it through
// the API server (which asks the kubelet); tests, which have no kubelet,
// give their own.
type LogReader interface {
	Logs(ctx context.Context, namespace, pod, container string, lines int64) (string, error)
}

// KubeLogs reads logs with client-go, as kubectl logs --tail does.
type KubeLogs struct{ Client kubernetes.Interface }

// Logs implements LogReader.
func (k KubeLogs) Logs(ctx context.Context, namespace, pod, container string, lines int64) (string, error) {
	b, err := k.Client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, TailLines: &lines}).DoRaw(ctx)
	return string(b), err
}

var (
	errorLine = regexp.MustCompile(`(?i)\b(error|fatal|critical|panic|failed)\b`)
	gpuWords  = regexp.MustCompile(`(?i)cuda|nvenc|nvdec|nvidia|hardware (transcod|encod|decod)`)
)

// scanLogs finds error lines: how many, how many mention the GPU, and the
// last few to show.
func scanLogs(text string, show int) (count, gpu int, last []string) {
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if !errorLine.MatchString(line) {
			continue
		}
		count++
		if gpuWords.MatchString(line) {
			gpu++
		}
		last = append(last, line)
		if len(last) > show {
			last = last[1:]
		}
	}
	return count, gpu, last
}

// podChecks are the findings about one Plex pod that need no I/O;
// configMaps are the pod namespace's, for variables set through them.
func podChecks(pod *corev1.Pod, configMaps podenv.ConfigMaps) []Finding {
	name := pod.Namespace + "/" + pod.Name
	out := []Finding{readiness(pod, name)}
	devices, withDevices := gpuAccess(pod, nvidiaGPU)
	if len(devices) == 0 {
		if intel, _ := gpuAccess(pod, intelGPU); len(intel) > 0 {
			// Quick Sync: the NVIDIA runtime and capabilities do not apply.
			return append(out,
				Finding{Check: CheckDevices, Status: OK, Message: name + " uses Intel Quick Sync, not an NVIDIA GPU: " + strings.Join(intel, "; ")},
				Finding{Check: CheckRuntime, Status: Skip, Message: name + ": no NVIDIA runtime needed for Intel Quick Sync"})
		}
	}
	switch {
	case len(devices) > 0:
		out = append(out, Finding{Check: CheckDevices, Status: OK, Message: name + ": " + strings.Join(devices, "; ")})
	case pod.Annotations[workload.AnnotationProfiles] != "":
		out = append(out, Finding{Check: CheckDevices, Status: Warn, Message: name + " is annotated gpu-directories but has no /dev/nvidia* mount: " +
			"the gpu-directory-injector webhook did not mutate it (was it down when the pod was created?); delete the pod to have it recreated"})
	default:
		out = append(out, Finding{Check: CheckDevices, Status: Warn, Message: name + " has no /dev/nvidia* mount and requests no nvidia.com/ resource: " +
			"annotate the pod template gpu-directories: nvidia so the webhook injects the devices"})
	}
	if rc := pod.Spec.RuntimeClassName; rc == nil || *rc == "" {
		out = append(out, Finding{Check: CheckRuntime, Status: Warn, Message: name + " has no runtimeClassName: unless NVIDIA's runtime is the node's default, " +
			"Plex runs without it; set runtimeClassName: nvidia (the webhook does for annotated pods)"})
	} else {
		out = append(out, Finding{Check: CheckRuntime, Status: OK, Message: name + ": runtimeClassName " + *rc})
	}
	if f, ok := capabilities(pod, name, withDevices, configMaps); ok {
		out = append(out, f)
	}
	return out
}

// readiness is a hard check: Plex must be Running and Ready.
func readiness(pod *corev1.Pod, name string) Finding {
	ready := podstatus.Ready(pod)
	where := ""
	if pod.Spec.NodeName != "" {
		where = " on " + pod.Spec.NodeName
	}
	if pod.Status.Phase == corev1.PodRunning && ready && pod.DeletionTimestamp == nil {
		return Finding{Check: CheckPod, Status: OK, Message: name + " Running and Ready" + where}
	}
	why := []string{"phase " + orDash(string(pod.Status.Phase))}
	if pod.DeletionTimestamp != nil {
		why = append(why, "terminating")
	}
	if !ready {
		why = append(why, "not Ready")
	}
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			why = append(why, fmt.Sprintf("container %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			why = append(why, fmt.Sprintf("container %s terminated: %s (exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case !cs.Ready:
			why = append(why, "container "+cs.Name+" not ready")
		}
		if cs.RestartCount > 0 {
			why = append(why, fmt.Sprintf("container %s restarted %d times", cs.Name, cs.RestartCount))
		}
	}
	return Finding{Check: CheckPod, Status: Fail, Message: fmt.Sprintf("%s%s: %s; kubectl describe pod -n %s %s says why",
		name, where, strings.TrimSpace(strings.Join(why, ", ")), pod.Namespace, pod.Name)}
}

// gpuVendor is how a pod reaches one vendor's GPU: host paths under a
// prefix, or an extended resource of the vendor's device plugin.
type gpuVendor struct{ hostPath, resource string }

var (
	nvidiaGPU = gpuVendor{hostPath: "/dev/nvidia", resource: "nvidia.com/"}
	intelGPU  = gpuVendor{hostPath: "/dev/dri", resource: "gpu.intel.com/"}
)

// gpuAccess lists, per container, the vendor's host paths it mounts or
// the vendor's resources it requests (the device plugin mounts those).
func gpuAccess(pod *corev1.Pod, vendor gpuVendor) (devices []string, containers []string) {
	hostDev := map[string]string{} // volume name -> host path
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil && strings.HasPrefix(v.HostPath.Path, vendor.hostPath) {
			hostDev[v.Name] = v.HostPath.Path
		}
	}
	for _, c := range pod.Spec.Containers {
		var have []string
		for _, m := range c.VolumeMounts {
			if _, ok := hostDev[m.Name]; ok {
				have = append(have, m.MountPath)
			}
		}
		for name, q := range c.Resources.Limits {
			if strings.HasPrefix(string(name), vendor.resource) && !q.IsZero() {
				have = append(have, fmt.Sprintf("%s: %s", name, q.String()))
			}
		}
		if len(have) > 0 {
			slices.Sort(have)
			devices = append(devices, c.Name+": "+strings.Join(have, ", "))
			containers = append(containers, c.Name)
		}
	}
	return devices, containers
}

// capabilities checks NVIDIA_DRIVER_CAPABILITIES in the containers with a
// GPU: NVENC and NVDEC need "video", which the NVIDIA runtime's default
// (compute,utility) leaves out. The value is resolved as the kubelet does:
// env, valueFrom and envFrom ConfigMaps (a Secret is named, not read).
func capabilities(pod *corev1.Pod, name string, withDevices []string, configMaps podenv.ConfigMaps) (Finding, bool) {
	const env = "NVIDIA_DRIVER_CAPABILITIES"
	var bad, good []string
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if !slices.Contains(withDevices, c.Name) {
			continue
		}
		sources := podenv.Resolve(pod.Namespace, c, configMaps, env)
		src, set := sources.Value()
		from := ""
		if set && src.Kind != podenv.Env {
			from = " (from " + src.From + ")"
		}
		caps := strings.Split(strings.ReplaceAll(src.Value, " ", ""), ",")
		switch {
		case !set:
			bad = append(bad, c.Name+unsetReason(sources))
		case !slices.Contains(caps, "video") && !slices.Contains(caps, "all"):
			bad = append(bad, fmt.Sprintf("%s sets %q%s", c.Name, src.Value, from))
		default:
			good = append(good, c.Name+": "+src.Value+from)
		}
	}
	switch {
	case len(bad) > 0:
		return Finding{Check: CheckCapabilities, Status: Warn, Message: fmt.Sprintf("%s: %s %s; hardware transcoding needs video: set %s=compute,video,utility",
			name, env, strings.Join(bad, ", "), env)}, true
	case len(good) > 0:
		return Finding{Check: CheckCapabilities, Status: OK, Message: name + ": " + env + " " + strings.Join(good, "; ")}, true
	}
	return Finding{}, false
}

// unsetReason says why a container's variable has no value gpuslice could
// read: nothing sets it, a ConfigMap or key it names is missing, or only a
// Secret may set it.
func unsetReason(sources podenv.Sources) string {
	var why []string
	for _, src := range sources {
		switch src.State {
		case podenv.NoConfigMap:
			why = append(why, src.From+" not found")
		case podenv.NoKey:
			why = append(why, src.From+" has no key "+src.Key)
		}
	}
	if secrets := sources.Secrets(); len(secrets) > 0 {
		why = append(why, "it may come from secret "+strings.Join(secrets, ", ")+", which gpuslice does not read (check it holds video)")
	}
	if len(why) == 0 {
		return " does not set it"
	}
	return " does not set it that gpuslice can read: " + strings.Join(why, ", ")
}
