package doctor

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/inject"
)

func TestDoctorJudgeAnnotation(t *testing.T) {
	profiles := inject.DefaultConfig("").Profiles
	misplaced := workload(KindDeployment, pod("ai-dev", "vllm-server", "", 2))
	misplaced.Annotations = map[string]string{inject.AnnotationProfiles: "nvidia"}
	tests := []struct {
		name     string
		w        *WorkloadEvidence
		verdict  Verdict
		contains []string
	}{
		{"hybrid", workload(KindDeployment, pod("ai-dev", "vllm-server", "", 2, annotated)), OK,
			[]string{"gpu-directories: nvidia with 2 nvidia.com/gpu.shared (hybrid method)"}},
		{"webhook method", workload(KindDeployment, nil, pod("media", "plex", "homelabai", 0, annotated)), OK,
			[]string{"webhook method, no share request"}},
		{"shares without annotation: the seed recommends hybrid", workload(KindDeployment, pod("ai", "ollama", "", 1)), Warn,
			[]string{"requests 1 nvidia.com/gpu.shared without gpu-directories", "add gpu-directories: nvidia to spec.template.metadata.annotations"}},
		{"bare pod", workload(KindPod, nil, pod("ai", "ollama", "", 1)), Warn, []string{"add gpu-directories: nvidia to the pod"}},
		{"on the Deployment, not its template", misplaced, Fail,
			[]string{"annotation gpu-directories is on the Deployment itself", "move it to spec.template.metadata.annotations", "kubectl edit deployment -n ai-dev vllm-server"}},
		{"nothing GPU at all", workload(KindDeployment, pod("web", "nginx", "", 0)), Fail, []string{"gets no GPU", "seed Method 3"}},
		{"empty annotation", workload(KindDeployment, pod("media", "plex", "", 0, func(p *corev1.Pod) { p.Annotations[inject.AnnotationProfiles] = " " })), Fail,
			[]string{"is empty: the webhook refuses the pod"}},
		{"profile doctor does not know", workload(KindDeployment, pod("media", "plex", "", 0, func(p *corev1.Pod) { p.Annotations[inject.AnnotationProfiles] = "nvidia,intel-qsv" })), Warn,
			[]string{"intel-qsv are not among those doctor knows (nvidia)", "--injector-config"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, JudgeAnnotation(tc.w, profiles), tc.verdict, tc.contains...) })
	}
}

func TestDoctorJudgeRuntimeClass(t *testing.T) {
	rcs := RuntimeClasses{Handlers: map[string]string{"nvidia": "nvidia"}}
	tests := []struct {
		name               string
		pod                *corev1.Pod
		rcs                RuntimeClasses
		annotated, created bool
		verdict            Verdict
		contains           []string
	}{
		{"set and exists", pod("ai-dev", "vllm", "homelabai", 2, annotated, withRuntimeClass), rcs, true, true, OK, []string{"runtimeClassName nvidia (handler nvidia)"}},
		{"RuntimeClass missing", pod("ai-dev", "vllm", "homelabai", 2, annotated, withRuntimeClass), RuntimeClasses{Handlers: map[string]string{}}, true, true, Fail,
			[]string{"RuntimeClass nvidia does not exist", `"kind":"RuntimeClass"`}},
		{"cannot list", pod("ai-dev", "vllm", "homelabai", 2, withRuntimeClass), RuntimeClasses{Err: "forbidden"}, false, true, Warn, []string{"could not be read: forbidden"}},
		{"annotated but not mutated", pod("media", "plex", "homelabai", 0, annotated), rcs, true, true, Fail,
			[]string{"the webhook did not mutate it", "kubectl delete pod -n media plex-abc12"}},
		{"template: the webhook will set it", pod("media", "plex", "", 0, annotated), rcs, true, false, OK, []string{"sets runtimeClassName at admission"}},
		{"shares only, unset", pod("ai", "ollama", "homelabai", 1), rcs, false, true, Warn, []string{"default container runtime", "runtimeClassName: nvidia"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeRuntimeClass(tc.pod, tc.rcs, tc.annotated, tc.created), tc.verdict, tc.contains...)
		})
	}
}

// TestDoctorJudgeRuntimeHandler: the kubelet's event when containerd has
// no runtime for the RuntimeClass's handler, as the real node produces it.
func TestDoctorJudgeRuntimeHandler(t *testing.T) {
	rcs := RuntimeClasses{Handlers: map[string]string{"nvidia": "nvidia"}}
	p := pod("ai-dev", "vllm", "homelabai", 2, annotated, withRuntimeClass)
	failed := Event{Type: "Warning", Reason: "FailedCreatePodSandBox", Count: 3,
		Message: `Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: no runtime for "nvidia" is configured`}
	expect(t, JudgeRuntimeHandler(JudgeRuntimeClass(p, rcs, true, true), &PodEvidence{Pod: p, Events: []Event{failed}}), Fail,
		"has no handler nvidia", `no runtime for "nvidia" is configured`, "NVIDIA container toolkit", "restart k3s")
	expect(t, JudgeRuntimeHandler(JudgeRuntimeClass(p, rcs, true, true), &PodEvidence{Pod: p}), OK, "runtimeClassName nvidia (handler nvidia)")
	missing := JudgeRuntimeClass(p, RuntimeClasses{Handlers: map[string]string{}}, true, true)
	expect(t, JudgeRuntimeHandler(missing, &PodEvidence{Pod: p, Events: []Event{failed}}), Fail, "RuntimeClass nvidia does not exist")
}

func TestDoctorJudgeDevices(t *testing.T) {
	profiles := inject.DefaultConfig("").Profiles
	withInit := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "download-model", Image: "busybox"}}
	}
	ownVolumeName := func(p *corev1.Pod) {
		p.Spec.Volumes[0].Name = "gpu" // the webhook reuses a pod's own volume for a device
		p.Spec.Containers[0].VolumeMounts[0].Name = "gpu"
	}
	tests := []struct {
		name     string
		pod      *corev1.Pod
		verdict  Verdict
		contains []string
	}{
		{"injected", pod("media", "plex", "homelabai", 0, annotated, withDevices), OK,
			[]string{"/dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm mounted in 1 container(s)"}},
		{"injected under the pod's own volume name", pod("media", "plex", "homelabai", 0, annotated, withDevices, ownVolumeName), OK, nil},
		{"not injected", pod("media", "plex", "homelabai", 0, annotated), Fail,
			[]string{"no hostPath volume for /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm", "container plex has no mount at /dev/nvidia0", "kubectl delete pod -n media plex-abc12"}},
		{"init container added after injection", pod("ai-dev", "vllm", "homelabai", 2, annotated, withDevices, withInit), Fail,
			[]string{"container download-model has no mount at /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm"}},
		{"device plugin method", pod("ai", "ollama", "homelabai", 1), OK, []string{"NVIDIA device plugin"}},
		{"unknown profile", pod("media", "plex", "homelabai", 0, func(p *corev1.Pod) { p.Annotations[inject.AnnotationProfiles] = "intel-qsv" }), Warn,
			[]string{"--injector-config"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, JudgeDevices(tc.pod, profiles), tc.verdict, tc.contains...) })
	}
}

func TestDoctorJudgeNvidiaEnv(t *testing.T) {
	cm := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "gpu-env", Namespace: "media"}, Data: map[string]string{
		EnvVisibleDevices: "all", EnvDriverCapabilities: "compute,video,utility",
	}}
	fromConfigMap := func(p *corev1.Pod) {
		p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "gpu-env"}}}}
	}
	fromSecret := func(p *corev1.Pod) {
		p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "plex-env"}}}}
	}
	fromKeyRef := func(p *corev1.Pod) {
		p.Spec.Containers[0].Env = []corev1.EnvVar{
			{Name: EnvVisibleDevices, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "gpu-env"}, Key: EnvVisibleDevices}}},
			{Name: EnvDriverCapabilities, Value: "compute,utility"},
		}
	}
	tests := []struct {
		name     string
		pod      *corev1.Pod
		verdict  Verdict
		contains []string
	}{
		{"seed's Plex", pod("media", "plex", "homelabai", 0, annotated, withEnv(EnvVisibleDevices, "all", EnvDriverCapabilities, "compute,video,utility")), OK,
			[]string{"plex: NVIDIA_VISIBLE_DEVICES=all, NVIDIA_DRIVER_CAPABILITIES=compute,video,utility"}},
		{"from a ConfigMap", pod("media", "plex", "homelabai", 0, annotated, fromConfigMap), OK, []string{"NVIDIA_VISIBLE_DEVICES=all"}},
		{"from a ConfigMap key", pod("media", "plex", "homelabai", 0, annotated, fromKeyRef), OK, []string{"NVIDIA_VISIBLE_DEVICES=all"}},
		{"webhook-only without it: no GPU", pod("media", "plex", "homelabai", 0, annotated), Fail,
			[]string{"NVIDIA_VISIBLE_DEVICES unset", "exposes no GPU", "set NVIDIA_VISIBLE_DEVICES=all in container plex"}},
		{"webhook-only without capabilities", pod("media", "plex", "homelabai", 0, annotated, withEnv(EnvVisibleDevices, "all")), Warn,
			[]string{"without video", "compute,video,utility"}},
		{"hidden", pod("media", "plex", "homelabai", 0, annotated, withEnv(EnvVisibleDevices, "void", EnvDriverCapabilities, "all")), Fail,
			[]string{`NVIDIA_VISIBLE_DEVICES="void" hides the GPU`}},
		{"maybe in a Secret", pod("media", "plex", "homelabai", 0, annotated, fromSecret), Warn, []string{"Secret plex-env not read"}},
		{"shares: the device plugin sets it", pod("ai", "ollama", "homelabai", 1), OK, []string{"the device plugin sets it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeNvidiaEnv(tc.pod, []corev1.ConfigMap{cm}), tc.verdict, tc.contains...)
		})
	}
}

func TestDoctorJudgeNvidiaEnvSidecar(t *testing.T) {
	// Only the container with the share request is judged: a sidecar
	// without the variables is fine.
	p := pod("ai-dev", "vllm", "homelabai", 2, withEnv(EnvVisibleDevices, "all"))
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "proxy", Image: "envoy"})
	got := JudgeNvidiaEnv(p, nil)
	expect(t, got, OK, "vllm: NVIDIA_VISIBLE_DEVICES=all")
	if strings.Contains(got.Evidence, "proxy") {
		t.Errorf("sidecar judged: %s", got.Evidence)
	}
}
