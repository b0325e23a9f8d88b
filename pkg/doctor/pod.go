package doctor

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/podenv"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// NVIDIA container runtime variables (seed, "Method 1").
const (
	EnvVisibleDevices     = "NVIDIA_VISIBLE_DEVICES"
	EnvDriverCapabilities = "NVIDIA_DRIVER_CAPABILITIES"
)

// JudgeAnnotation judges the seed's "Ensure gpu-directories: nvidia
// annotation is set": on the pod template, naming a profile. A workload
// that requests shares without it is the seed's Method 2, which works
// (the device plugin mounts the devices) but is not the recommended hybrid
// method: warn.
func JudgeAnnotation(w *WorkloadEvidence, profiles []inject.Profile) Result {
	res := Result{Check: CheckAnnotation}
	ann := w.PodAnnotations()
	value, has := ann[workload.AnnotationProfiles]
	reqs := shareRequests(w.specPod())
	where := "the pod"
	if w.Template != nil {
		where = "spec.template.metadata.annotations"
	}
	switch {
	case has && strings.TrimSpace(value) == "":
		res.Verdict = Fail
		res.Evidence = workload.AnnotationProfiles + " is empty: the webhook refuses the pod"
		res.Remedy = "set " + workload.AnnotationProfiles + ": nvidia in " + where + ", or remove it"
	case has:
		names, unknown := resolveProfiles(value, profiles)
		res.Verdict = OK
		res.Evidence = fmt.Sprintf("%s: %s", workload.AnnotationProfiles, value)
		if len(reqs) > 0 {
			res.Evidence += " with " + describeRequests(reqs) + " (hybrid method)"
		} else {
			res.Evidence += " (webhook method, no share request)"
		}
		if len(unknown) > 0 {
			res.Verdict = Warn
			res.Evidence += fmt.Sprintf("; profile(s) %s are not among those doctor knows (%s)", strings.Join(unknown, ", "), strings.Join(names, ", "))
			res.Remedy = "pass the webhook's config with --injector-config so doctor knows its profiles; if the name is a typo the webhook refuses the pod"
		}
	case misplacedAnnotation(w) != "":
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("annotation %s is on the %s itself, not on its pod template: its pods never get it", misplacedAnnotation(w), w.Kind)
		res.Remedy = "move it to spec.template.metadata.annotations (kubectl edit " + strings.ToLower(w.Kind) + " -n " + w.Namespace + " " + w.Name + ")"
	case len(reqs) > 0:
		res.Verdict = Warn
		res.Evidence = fmt.Sprintf("requests %s without %s: devices come from the device plugin only (seed Method 2); the seed recommends the hybrid method", describeRequests(reqs), workload.AnnotationProfiles)
		res.Remedy = fmt.Sprintf("add %s: nvidia to %s, so the webhook mounts the devices and sets runtimeClassName", workload.AnnotationProfiles, where)
	default:
		res.Verdict = Fail
		res.Evidence = fmt.Sprintf("no %s annotation and no GPU resource request: the pod gets no GPU", workload.AnnotationProfiles)
		res.Remedy = fmt.Sprintf("add %s: nvidia to %s and request nvidia.com/gpu.shared (seed Method 3)", workload.AnnotationProfiles, where)
	}
	return res
}

// misplacedAnnotation returns the GPU annotation a controller carries on
// its own metadata while its template lacks it.
func misplacedAnnotation(w *WorkloadEvidence) string {
	if w.Template == nil {
		return ""
	}
	for _, key := range []string{workload.AnnotationProfiles, workload.AnnotationShares} {
		if _, onObject := w.Annotations[key]; onObject {
			if _, onTemplate := w.Template.Annotations[key]; !onTemplate {
				return key
			}
		}
	}
	return ""
}

func describeRequests(reqs map[string]int64) string {
	parts := make([]string, 0, len(reqs))
	for _, name := range slices.Sorted(maps.Keys(reqs)) {
		parts = append(parts, fmt.Sprintf("%d %s", reqs[name], name))
	}
	return strings.Join(parts, ", ")
}

// resolveProfiles reads the annotation the way the webhook does (comma
// separated, case and spaces ignored) and returns the known profile names
// and the unknown values.
func resolveProfiles(value string, profiles []inject.Profile) (known, unknown []string) {
	for _, p := range profiles {
		known = append(known, p.Name)
	}
	for _, part := range strings.Split(value, ",") {
		name := strings.TrimSpace(part)
		if name != "" && findProfile(profiles, name) == nil && !slices.Contains(unknown, name) {
			unknown = append(unknown, name)
		}
	}
	return known, unknown
}

func findProfile(profiles []inject.Profile, name string) *inject.Profile {
	for i := range profiles {
		if strings.EqualFold(profiles[i].Name, strings.TrimSpace(name)) {
			return &profiles[i]
		}
	}
	return nil
}

// annotatedProfiles are the known profiles the pod's annotation names.
func annotatedProfiles(pod *corev1.Pod, profiles []inject.Profile) []inject.Profile {
	var out []inject.Profile
	for _, part := range strings.Split(pod.Annotations[workload.AnnotationProfiles], ",") {
		if p := findProfile(profiles, part); p != nil && !slices.ContainsFunc(out, func(q inject.Profile) bool { return q.Name == p.Name }) {
			out = append(out, *p)
		}
	}
	return out
}

// JudgeRuntimeClass judges the seed's "Ensure runtimeClassName: nvidia is
// set", and that the RuntimeClass exists. A template's pod has not been
// through the webhook yet: it is fine without one when annotated.
func JudgeRuntimeClass(in *PodInput) Result {
	pod, rcs := in.Pod, in.RuntimeClasses
	annotated, admitted := pod.Annotations[workload.AnnotationProfiles] != "", !in.Template
	res := Result{Check: CheckRuntimeClass}
	if admitted {
		res.Object = "pod/" + pod.Name
	}
	name := pod.Spec.RuntimeClassName
	switch {
	case name == nil && annotated && !admitted:
		res.Verdict, res.Evidence = OK, "not set in the template: the webhook sets runtimeClassName at admission"
	case name == nil && annotated:
		res.Verdict = Fail
		res.Evidence = "runtimeClassName is not set although the pod is annotated: the webhook did not mutate it (created before the webhook was registered, or while it was bypassed)"
		res.Remedy = fmt.Sprintf("once webhook-dry-run passes, delete the pod so its controller recreates it through the webhook: kubectl delete pod -n %s %s", pod.Namespace, pod.Name)
	case name == nil:
		res.Verdict = Warn
		res.Evidence = "runtimeClassName is not set: the GPU is visible only if nvidia is the node's default container runtime"
		res.Remedy = "set runtimeClassName: nvidia in the pod template, or add the gpu-directories: nvidia annotation so the webhook sets it"
	case rcs.Err != "":
		res.Verdict = Warn
		res.Evidence = fmt.Sprintf("runtimeClassName %s; RuntimeClasses could not be read: %s", *name, rcs.Err)
		res.Remedy = "grant get and list on runtimeclasses.node.k8s.io to check it exists"
	default:
		handler, ok := rcs.Handlers[*name]
		if !ok {
			res.Verdict = Fail
			res.Evidence = fmt.Sprintf("runtimeClassName %s, but RuntimeClass %s does not exist: the pod cannot be created or started", *name, *name)
			res.Remedy = fmt.Sprintf("create it: kubectl apply -f - <<< '{\"apiVersion\":\"node.k8s.io/v1\",\"kind\":\"RuntimeClass\",\"metadata\":{\"name\":%q},\"handler\":\"nvidia\"}'", *name)
			break
		}
		res.Verdict = OK
		res.Evidence = fmt.Sprintf("runtimeClassName %s (handler %s)", *name, handler)
		if admitted {
			res = withRuntimeHandler(res, handler, in.Events)
		}
	}
	return res
}

// withRuntimeHandler fails a runtime class that exists when the kubelet
// reported that the node's containerd lacks its handler: every sandbox
// fails with "no runtime for \"nvidia\" is configured" (a K3s started
// before the NVIDIA container toolkit was installed).
func withRuntimeHandler(rc Result, handler string, events []Event) Result {
	for _, e := range events {
		if e.Reason != "FailedCreatePodSandBox" || !strings.Contains(e.Message, "no runtime for") {
			continue
		}
		rc.Verdict = Fail
		rc.Evidence = fmt.Sprintf("%s, but the node's container runtime has no handler %s: FailedCreatePodSandBox (x%d): %s", rc.Evidence, handler, max(e.Count, 1), strings.TrimSpace(e.Message))
		rc.Remedy = fmt.Sprintf("register the %s runtime with the node's containerd: on K3s install the NVIDIA container toolkit on the node and restart k3s, which then adds it to /var/lib/rancher/k3s/agent/etc/containerd/config.toml; elsewhere add it under [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.%s] and restart containerd", handler, handler)
		return rc
	}
	return rc
}

// missingDevices compares a pod with a profile's devices: the host paths
// without a hostPath volume, and per container the mount paths without a
// mount. Volume names do not matter: the webhook reuses a pod's own.
func missingDevices(pod *corev1.Pod, profiles []inject.Profile) (volumes []string, mounts map[string][]string) {
	mounts = map[string][]string{}
	hostPaths := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[path.Clean(v.HostPath.Path)] = true
		}
	}
	containers := append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...)
	for _, p := range profiles {
		for _, d := range p.Devices {
			host := path.Clean(d.HostPath)
			mountPath := host
			if d.MountPath != "" {
				mountPath = path.Clean(d.MountPath)
			}
			if !hostPaths[host] {
				volumes = append(volumes, host)
			}
			for _, c := range containers {
				if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return path.Clean(m.MountPath) == mountPath }) {
					mounts[c.Name] = append(mounts[c.Name], mountPath)
				}
			}
		}
	}
	return volumes, mounts
}

func devicePaths(profiles []inject.Profile) []string {
	var out []string
	for _, p := range profiles {
		for _, d := range p.Devices {
			out = append(out, d.HostPath)
		}
	}
	return out
}

// JudgeDevices judges the seed's "Check device mounts": every device of
// every annotated profile has a hostPath volume and a mount in every
// container.
func JudgeDevices(in *PodInput) Result {
	pod, profiles := in.Pod, in.Profiles
	res := Result{Check: CheckDevices, Object: "pod/" + pod.Name}
	if pod.Annotations[workload.AnnotationProfiles] == "" {
		res.Verdict = OK
		res.Evidence = "no gpu-directories annotation: device nodes come from the NVIDIA device plugin's allocation"
		return res
	}
	want := annotatedProfiles(pod, profiles)
	if len(want) == 0 {
		res.Verdict = Warn
		res.Evidence = "the annotation names no profile doctor knows: devices not checked"
		res.Remedy = "pass the webhook's config with --injector-config"
		return res
	}
	volumes, mounts := missingDevices(pod, want)
	if len(volumes) == 0 && len(mounts) == 0 {
		res.Verdict = OK
		res.Evidence = fmt.Sprintf("%s mounted in %d container(s)", strings.Join(devicePaths(want), ", "), len(pod.Spec.Containers)+len(pod.Spec.InitContainers))
		return res
	}
	var parts []string
	if len(volumes) > 0 {
		parts = append(parts, "no hostPath volume for "+strings.Join(volumes, ", "))
	}
	for _, c := range slices.Sorted(maps.Keys(mounts)) {
		parts = append(parts, fmt.Sprintf("container %s has no mount at %s", c, strings.Join(mounts[c], ", ")))
	}
	res.Verdict = Fail
	res.Evidence = strings.Join(parts, "; ") + ": the GPU is not visible in the pod"
	res.Remedy = fmt.Sprintf("the webhook did not inject them: once webhook-dry-run passes, recreate the pod (kubectl delete pod -n %s %s); a device mounted by hand must use the device's path", pod.Namespace, pod.Name)
	return res
}

// gpuContainers are the containers that use the GPU: those requesting an
// nvidia.com/ resource, else, for a webhook-only pod, all of them. shares
// says which kind they are.
func gpuContainers(pod *corev1.Pod) (containers []*corev1.Container, shares bool) {
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for name := range c.Resources.Limits {
			if strings.HasPrefix(string(name), "nvidia.com/") {
				containers = append(containers, c)
				break
			}
		}
	}
	if len(containers) > 0 {
		return containers, true
	}
	for i := range pod.Spec.Containers {
		containers = append(containers, &pod.Spec.Containers[i])
	}
	return containers, false
}

// JudgeNvidiaEnv judges the NVIDIA runtime's variables. Containers with a
// share request get NVIDIA_VISIBLE_DEVICES from the device plugin's
// allocation; webhook-only containers must set it themselves, or the
// runtime exposes no GPU.
func JudgeNvidiaEnv(in *PodInput) Result {
	pod := in.Pod
	res := Result{Check: CheckNvidiaEnv, Object: "pod/" + pod.Name, Verdict: OK}
	containers, shares := gpuContainers(pod)
	var evidence, remedies []string
	worse := func(v Verdict) {
		if v.worse(res.Verdict) {
			res.Verdict = v
		}
	}
	inList := podenv.InList(pod.Namespace, in.ConfigMaps)
	for _, c := range containers {
		var facts []string
		for _, name := range []string{EnvVisibleDevices, EnvDriverCapabilities} {
			sources := podenv.Resolve(pod.Namespace, c, inList, name)
			src, found := sources.Value()
			value, secrets := src.Value, sources.Secrets()
			switch {
			case found && name == EnvVisibleDevices && (value == "" || value == "void" || value == "none"):
				worse(Fail)
				facts = append(facts, fmt.Sprintf("%s=%q hides the GPU", name, value))
				remedies = append(remedies, fmt.Sprintf("set %s=all in container %s", name, c.Name))
			case found:
				facts = append(facts, name+"="+value)
			case len(secrets) > 0:
				worse(Warn)
				facts = append(facts, fmt.Sprintf("%s not in env or ConfigMaps (Secret %s not read)", name, strings.Join(secrets, ", ")))
				remedies = append(remedies, fmt.Sprintf("check that Secret %s sets %s", strings.Join(secrets, ", "), name))
			case shares && name == EnvVisibleDevices:
				facts = append(facts, name+" unset (the device plugin sets it for its allocation)")
			case shares:
				facts = append(facts, name+" unset (defaults to compute,utility)")
			case name == EnvVisibleDevices:
				// Images built on NVIDIA's CUDA images (and many media
				// images) set it in their config, which the pod spec
				// does not show: a warning with how to check, not a failure.
				worse(Warn)
				facts = append(facts, name+" not in the pod spec: unless the image sets it, nothing does without a share request, and the NVIDIA runtime exposes no GPU")
				remedies = append(remedies, fmt.Sprintf("check what the container sees: kubectl exec -n %s %s -c %s -- printenv %s (or the image's config: docker image inspect %s --format '{{.Config.Env}}'); if it is unset, set %s=all in container %s (seed Method 1)",
					pod.Namespace, pod.Name, c.Name, name, cmp.Or(c.Image, "IMAGE"), name, c.Name))
			default:
				worse(Warn)
				facts = append(facts, name+" unset: defaults to compute,utility, without video (NVENC/NVDEC) for transcoding")
				remedies = append(remedies, fmt.Sprintf("set %s=compute,video,utility in container %s if it transcodes", name, c.Name))
			}
		}
		evidence = append(evidence, c.Name+": "+strings.Join(facts, ", "))
	}
	res.Evidence = strings.Join(evidence, "; ")
	res.Remedy = strings.Join(remedies, "; ")
	return res
}
