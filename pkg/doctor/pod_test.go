package doctor

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gpuslice/gpuslice/pkg/inject"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

func TestDoctorJudgeAnnotation(t *testing.T) {
	profiles := inject.DefaultConfig("").Profiles
	misplaced := workloadEvidence(KindDeployment, pod("ai-dev", "vllm-server", "", 2))
	misplaced.Annotations = map[string]string{workload.AnnotationProfiles: "nvidia"}
	tests := []struct {
		name     string
		w        *WorkloadEvidence
		verdict  Verdict
		contains []string
	}{
		{name: "hybrid", w: workloadEvidence(KindDeployment, pod("ai-dev", "vllm-server", "", 2, annotated)), verdict: OK,
			contains: []string{"gpu-directories: nvidia with 2 nvidia.com/gpu.shared (hybrid method)"}},
		{name: "webhook method", w: workloadEvidence(KindDeployment, nil, pod("media", "plex", "homelabai", 0, annotated)), verdict: OK,
			contains: []string{"webhook method, no share request"}},
		{name: "shares without annotation: the seed recommends hybrid", w: workloadEvidence(KindDeployment, pod("ai", "ollama", "", 1)), verdict: Warn,
			contains: []string{"requests 1 nvidia.com/gpu.shared without gpu-directories", "add gpu-directories: nvidia to spec.template.metadata.annotations"}},
		{name: "bare pod", w: workloadEvidence(KindPod, nil, pod("ai", "ollama", "", 1)), verdict: Warn, contains: []string{"add gpu-directories: nvidia to the pod"}},
		{name: "on the Deployment, not its template", w: misplaced, verdict: Fail,
			contains: []string{"annotation gpu-directories is on the Deployment itself", "move it to spec.template.metadata.annotations", "kubectl edit deployment -n ai-dev vllm-server"}},
		{name: "nothing GPU at all", w: workloadEvidence(KindDeployment, pod("web", "nginx", "", 0)), verdict: Fail, contains: []string{"gets no GPU", "seed Method 3"}},
		{name: "empty annotation", w: workloadEvidence(KindDeployment, pod("media", "plex", "", 0, func(p *corev1.Pod) { p.Annotations[workload.AnnotationProfiles] = " " })), verdict: Fail,
			contains: []string{"is empty: the webhook refuses the pod"}},
		{name: "profile doctor does not know", w: workloadEvidence(KindDeployment, pod("media", "plex", "", 0, func(p *corev1.Pod) { p.Annotations[workload.AnnotationProfiles] = "nvidia,intel-qsv" })), verdict: Warn,
			contains: []string{"intel-qsv are not among those doctor knows (nvidia)", "--injector-config"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { expect(t, JudgeAnnotation(tc.w, profiles), tc.verdict, tc.contains...) })
	}
}

func TestDoctorJudgeRuntimeClass(t *testing.T) {
	rcs := RuntimeClasses{Handlers: map[string]string{"nvidia": "nvidia"}}
	tests := []struct {
		name     string
		pod      *corev1.Pod
		rcs      RuntimeClasses
		template bool
		verdict  Verdict
		contains []string
	}{
		{name: "set and exists", pod: pod("ai-dev", "vllm", "homelabai", 2, annotated, withRuntimeClass), rcs: rcs, verdict: OK, contains: []string{"runtimeClassName nvidia (handler nvidia)"}},
		{name: "RuntimeClass missing", pod: pod("ai-dev", "vllm", "homelabai", 2, annotated, withRuntimeClass), rcs: RuntimeClasses{Handlers: map[string]string{}}, verdict: Fail,
			contains: []string{"RuntimeClass nvidia does not exist", `"kind":"RuntimeClass"`}},
		{name: "cannot list", pod: pod("ai-dev", "vllm", "homelabai", 2, withRuntimeClass), rcs: RuntimeClasses{Err: "forbidden"}, verdict: Warn, contains: []string{"could not be read: forbidden"}},
		{name: "annotated but not mutated", pod: pod("media", "plex", "homelabai", 0, annotated), rcs: rcs, verdict: Fail,
			contains: []string{"the webhook did not mutate it", "kubectl delete pod -n media plex-abc12"}},
		{name: "template: the webhook will set it", pod: pod("media", "plex", "", 0, annotated), rcs: rcs, template: true, verdict: OK, contains: []string{"sets runtimeClassName at admission"}},
		{name: "shares only, unset", pod: pod("ai", "ollama", "homelabai", 1), rcs: rcs, verdict: Warn, contains: []string{"default container runtime", "runtimeClassName: nvidia"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeRuntimeClass(&PodInput{PodEvidence: PodEvidence{Pod: tc.pod}, RuntimeClasses: tc.rcs, Template: tc.template}), tc.verdict, tc.contains...)
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
	expect(t, JudgeRuntimeClass(&PodInput{PodEvidence: PodEvidence{Pod: p, Events: []Event{failed}}, RuntimeClasses: rcs}), Fail,
		"has no handler nvidia", `no runtime for "nvidia" is configured`, "NVIDIA container toolkit", "restart k3s")
	expect(t, JudgeRuntimeClass(&PodInput{PodEvidence: PodEvidence{Pod: p}, RuntimeClasses: rcs}), OK, "runtimeClassName nvidia (handler nvidia)")
	expect(t, JudgeRuntimeClass(&PodInput{PodEvidence: PodEvidence{Pod: p, Events: []Event{failed}}, RuntimeClasses: RuntimeClasses{Handlers: map[string]string{}}}), Fail, "RuntimeClass nvidia does not exist")
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
		{name: "injected", pod: pod("media", "plex", "homelabai", 0, annotated, withDevices), verdict: OK,
			contains: []string{"/dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm mounted in 1 container(s)"}},
		{name: "injected under the pod's own volume name", pod: pod("media", "plex", "homelabai", 0, annotated, withDevices, ownVolumeName), verdict: OK},
		{name: "not injected", pod: pod("media", "plex", "homelabai", 0, annotated), verdict: Fail,
			contains: []string{"no hostPath volume for /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm", "container plex has no mount at /dev/nvidia0", "kubectl delete pod -n media plex-abc12"}},
		{name: "init container added after injection", pod: pod("ai-dev", "vllm", "homelabai", 2, annotated, withDevices, withInit), verdict: Fail,
			contains: []string{"container download-model has no mount at /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm"}},
		{name: "device plugin method", pod: pod("ai", "ollama", "homelabai", 1), verdict: OK, contains: []string{"NVIDIA device plugin"}},
		{name: "unknown profile", pod: pod("media", "plex", "homelabai", 0, func(p *corev1.Pod) { p.Annotations[workload.AnnotationProfiles] = "intel-qsv" }), verdict: Warn,
			contains: []string{"--injector-config"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeDevices(&PodInput{PodEvidence: PodEvidence{Pod: tc.pod}, Profiles: profiles}), tc.verdict, tc.contains...)
		})
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
		{name: "seed's Plex", pod: pod("media", "plex", "homelabai", 0, annotated, withEnv(EnvVisibleDevices, "all", EnvDriverCapabilities, "compute,video,utility")), verdict: OK,
			contains: []string{"plex: NVIDIA_VISIBLE_DEVICES=all, NVIDIA_DRIVER_CAPABILITIES=compute,video,utility"}},
		{name: "from a ConfigMap", pod: pod("media", "plex", "homelabai", 0, annotated, fromConfigMap), verdict: OK, contains: []string{"NVIDIA_VISIBLE_DEVICES=all"}},
		{name: "from a ConfigMap key", pod: pod("media", "plex", "homelabai", 0, annotated, fromKeyRef), verdict: OK, contains: []string{"NVIDIA_VISIBLE_DEVICES=all"}},
		{name: "webhook-only without it: the image may set it", pod: pod("media", "plex", "homelabai", 0, annotated), verdict: Warn,
			contains: []string{"NVIDIA_VISIBLE_DEVICES not in the pod spec: unless the image sets it", "exposes no GPU",
				"kubectl exec -n media plex-abc12 -c plex -- printenv NVIDIA_VISIBLE_DEVICES", "docker image inspect busybox", "set NVIDIA_VISIBLE_DEVICES=all in container plex"}},
		{name: "webhook-only without capabilities", pod: pod("media", "plex", "homelabai", 0, annotated, withEnv(EnvVisibleDevices, "all")), verdict: Warn,
			contains: []string{"without video", "compute,video,utility"}},
		{name: "hidden", pod: pod("media", "plex", "homelabai", 0, annotated, withEnv(EnvVisibleDevices, "void", EnvDriverCapabilities, "all")), verdict: Fail,
			contains: []string{`NVIDIA_VISIBLE_DEVICES="void" hides the GPU`}},
		{name: "maybe in a Secret", pod: pod("media", "plex", "homelabai", 0, annotated, fromSecret), verdict: Warn, contains: []string{"Secret plex-env not read"}},
		{name: "shares: the device plugin sets it", pod: pod("ai", "ollama", "homelabai", 1), verdict: OK, contains: []string{"the device plugin sets it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, JudgeNvidiaEnv(&PodInput{PodEvidence: PodEvidence{Pod: tc.pod}, ConfigMaps: []corev1.ConfigMap{cm}}), tc.verdict, tc.contains...)
		})
	}
}

func TestDoctorJudgeNvidiaEnvSidecar(t *testing.T) {
	// Only the container with the share request is judged: a sidecar
	// without the variables is fine.
	p := pod("ai-dev", "vllm", "homelabai", 2, withEnv(EnvVisibleDevices, "all"))
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "proxy", Image: "envoy"})
	got := JudgeNvidiaEnv(&PodInput{PodEvidence: PodEvidence{Pod: p}})
	expect(t, got, OK, "vllm: NVIDIA_VISIBLE_DEVICES=all")
	if strings.Contains(got.Evidence, "proxy") {
		t.Errorf("sidecar judged: %s", got.Evidence)
	}
}
