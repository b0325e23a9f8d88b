package plexhealth

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/standin/plextest"
	"github.com/gpuslice/gpuslice/pkg/podenv"
)

// plexPod is the seed's Plex pod as the webhook leaves it, running and
// ready on homelabai.
func plexPod() *corev1.Pod {
	pod := seed.PlexPod()
	pod.Spec.NodeName = "homelabai"
	pod.Spec.RuntimeClassName = ptr.To("nvidia")
	for _, dev := range []string{"nvidia0", "nvidiactl", "nvidia-uvm"} {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "gpu-" + dev, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/" + dev}}})
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "gpu-" + dev, MountPath: "/dev/" + dev})
	}
	pod.Status = corev1.PodStatus{
		Phase:             corev1.PodRunning,
		Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "plex", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
	}
	return pod
}

func TestPodChecks(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*corev1.Pod)
		want map[string]Status // check -> status; others must be OK
		text string
		// configMaps are the namespace's ConfigMaps; none when nil.
		configMaps []corev1.ConfigMap
	}{
		{name: "healthy"},
		{
			name: "crash looping",
			edit: func(p *corev1.Pod) {
				p.Status.Conditions[0].Status = corev1.ConditionFalse
				p.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "plex", RestartCount: 4,
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s"}}}
			},
			want: map[string]Status{CheckPod: Fail},
			text: "media/plex on homelabai: phase Running, not Ready, container plex waiting: CrashLoopBackOff back-off 40s, container plex restarted 4 times; kubectl describe pod -n media plex says why",
		},
		{
			name: "pending",
			edit: func(p *corev1.Pod) { p.Spec.NodeName = ""; p.Status = corev1.PodStatus{Phase: corev1.PodPending} },
			want: map[string]Status{CheckPod: Fail}, text: "media/plex: phase Pending, not Ready",
		},
		{
			name: "annotated but the webhook did not run",
			edit: func(p *corev1.Pod) { p.Spec.Volumes = nil; p.Spec.Containers[0].VolumeMounts = nil },
			want: map[string]Status{CheckDevices: Warn}, text: "the gpu-directory-injector webhook did not mutate it",
		},
		{
			name: "devices from a share request instead",
			edit: func(p *corev1.Pod) {
				p.Spec.Volumes, p.Spec.Containers[0].VolumeMounts = nil, nil
				p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"nvidia.com/gpu.shared": resource.MustParse("1")}
			},
			text: "media/plex: plex: nvidia.com/gpu.shared: 1",
		},
		{
			name: "no runtime class",
			edit: func(p *corev1.Pod) { p.Spec.RuntimeClassName = nil },
			want: map[string]Status{CheckRuntime: Warn}, text: "set runtimeClassName: nvidia",
		},
		{
			name: "Intel Quick Sync: no NVIDIA warnings",
			edit: func(p *corev1.Pod) {
				p.Annotations = map[string]string{"gpu-directories": "dri"}
				p.Spec.RuntimeClassName = nil
				p.Spec.Containers[0].Env = nil
				p.Spec.Volumes = []corev1.Volume{{Name: "dri", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/dri"}}}}
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "dri", MountPath: "/dev/dri"}}
			},
			want: map[string]Status{CheckRuntime: Skip},
			text: "media/plex uses Intel Quick Sync, not an NVIDIA GPU: plex: /dev/dri",
		},
		{
			name: "capabilities without video",
			edit: func(p *corev1.Pod) { p.Spec.Containers[0].Env[1].Value = "compute,utility" },
			want: map[string]Status{CheckCapabilities: Warn}, text: `plex sets "compute,utility"; hardware transcoding needs video`,
		},
		{
			name:       "capabilities from an envFrom ConfigMap",
			edit:       func(p *corev1.Pod) { capabilitiesFrom(p, envFromConfigMap("plex-env")) },
			configMaps: []corev1.ConfigMap{plexEnv("plex-env", "compute,video,utility")},
			text:       "plex: compute,video,utility (from configmap media/plex-env)",
		},
		{
			name:       "capabilities without video from a ConfigMap key",
			edit:       func(p *corev1.Pod) { capabilitiesFrom(p, corev1.EnvFromSource{}, configMapKey("plex-env")) },
			configMaps: []corev1.ConfigMap{plexEnv("plex-env", "compute,utility")},
			want:       map[string]Status{CheckCapabilities: Warn}, text: `plex sets "compute,utility" (from configmap media/plex-env)`,
		},
		{
			name: "capabilities from a missing ConfigMap",
			edit: func(p *corev1.Pod) { capabilitiesFrom(p, envFromConfigMap("plex-env")) },
			want: map[string]Status{CheckCapabilities: Warn}, text: "plex does not set it that gpuslice can read: configmap media/plex-env not found",
		},
		{
			name: "capabilities maybe from a Secret",
			edit: func(p *corev1.Pod) {
				capabilitiesFrom(p, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "plex-secrets"}}})
			},
			want: map[string]Status{CheckCapabilities: Warn}, text: "it may come from secret plex-secrets, which gpuslice does not read",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := plexPod()
			if tc.edit != nil {
				tc.edit(pod)
			}
			var all []string
			for _, f := range podChecks(pod, podenv.InList(pod.Namespace, tc.configMaps)) {
				want := OK
				if s, ok := tc.want[f.Check]; ok {
					want = s
				}
				if f.Status != want {
					t.Errorf("%s: %s (%s), want %s", f.Check, f.Status, f.Message, want)
				}
				all = append(all, f.Message)
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.text) {
				t.Errorf("findings lack %q:\n%s", tc.text, strings.Join(all, "\n"))
			}
		})
	}
}

// capabilitiesFrom drops Plex's literal NVIDIA_DRIVER_CAPABILITIES and
// takes it from from (when it names a source) and extra env entries.
func capabilitiesFrom(p *corev1.Pod, from corev1.EnvFromSource, extra ...corev1.EnvVar) {
	c := &p.Spec.Containers[0]
	c.Env = append(slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NVIDIA_DRIVER_CAPABILITIES" }), extra...)
	if from.ConfigMapRef != nil || from.SecretRef != nil {
		c.EnvFrom = []corev1.EnvFromSource{from}
	}
}

func envFromConfigMap(name string) corev1.EnvFromSource {
	return corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}
}

func configMapKey(name string) corev1.EnvVar {
	return corev1.EnvVar{Name: "NVIDIA_DRIVER_CAPABILITIES", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "NVIDIA_DRIVER_CAPABILITIES"}}}
}

func plexEnv(name, capabilities string) corev1.ConfigMap {
	return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "media"}, Data: map[string]string{"NVIDIA_DRIVER_CAPABILITIES": capabilities}}
}

func TestScanLogs(t *testing.T) {
	log := `Starting Plex Media Server.
Critical: libusb_init failed
[Transcoder] [h264_nvenc @ 0x7f] Cannot load libcuda.so.1
INFO - Streaming Resource: 0 transcode slots
ERROR - [Transcoder] hardware transcoding: failed to open NVENC
Jobs: Exit code 0
`
	n, gpu, last := scanLogs(log, 2)
	if n != 2 || gpu != 1 || len(last) != 2 || !strings.HasPrefix(last[1], "ERROR - [Transcoder]") {
		t.Errorf("scanLogs: %d error lines, %d GPU, last %q", n, gpu, last)
	}
}

type fakeLogs map[string]string // pod/container -> log; missing = error

func (f fakeLogs) Logs(_ context.Context, _, pod, container string, _ int64) (string, error) {
	if s, ok := f[pod+"/"+container]; ok {
		return s, nil
	}
	return "", errors.New("the server could not find the requested resource")
}

func TestCheckReport(t *testing.T) {
	srv := plextest.Start("secret", plextest.HardwareTranscode("Dune", "jane"), plextest.SoftwareFallback("Alien", "sam"))
	defer srv.Close()
	cs := fake.NewClientset(plexPod())
	r, err := Check(context.Background(), cs, Options{Logs: fakeLogs{"plex/plex": "all good\n"}, URL: srv.URL, Token: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Healthy || r.Failures != 0 || r.Warnings != 1 || len(r.Sessions) != 2 {
		t.Errorf("report: healthy %v, %d failures, %d warnings, %d sessions: %+v", r.Healthy, r.Failures, r.Warnings, len(r.Sessions), r.Findings)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"pod            ok       media/plex Running and Ready on homelabai",
		"devices        ok       media/plex: plex: /dev/nvidia-uvm, /dev/nvidia0, /dev/nvidiactl",
		"logs           ok       no error lines in the last 200 of media/plex container plex",
		"server         ok       Plex Media Server 1.41.3.9314-a0bfb8370 (machine 6a646027a56abb6dbdf72484564db8567c737430) answers at " + srv.URL,
		"transcode      ok       jane: Dune on Living Room TV: hardware nvdec → nvenc, speed 3.2",
		"transcode      warn     sam: Alien on iPad: software transcode, speed 0.8: video encoded in software although hardware was requested",
		"sessions       ok       2 session(s), 2 transcode(s), 1 of them on the NVIDIA GPU, 1 fell back to the CPU",
		"jane   Dune    Living Room TV   playing   transcode   full (nvdec → nvenc)   3.2",
		"sam    Alien   iPad             playing   transcode   software               0.8",
		"Plex is healthy: 0 failure(s), 1 warning(s)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}

	// Nothing selected, a wrong token, unreadable logs.
	r, err = Check(context.Background(), cs, Options{Selector: "app=jellyfin", URL: srv.URL, Token: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Healthy || r.Failures != 2 {
		t.Errorf("want 2 failures (no pod, 401): %+v", r.Findings)
	}
	r, err = Check(context.Background(), cs, Options{Logs: fakeLogs{}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Healthy || r.Findings[len(r.Findings)-2].Status != Warn ||
		!strings.Contains(r.Findings[len(r.Findings)-2].Message, "could not read the log of media/plex container plex") ||
		r.Findings[len(r.Findings)-1].Status != Skip {
		t.Errorf("unreadable logs and no URL: %+v", r.Findings)
	}
}
