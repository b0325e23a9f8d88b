package e2e

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/internal/standin/plextest"
	"github.com/gpuslice/gpuslice/pkg/plexhealth"
)

// cleanLogs stands in for the kubelet, which the local control plane lacks.
type cleanLogs struct{}

func (cleanLogs) Logs(context.Context, string, string, string, int64) (string, error) {
	return "Starting Plex Media Server.\nPlex Media Server is running.\n", nil
}

// TestPlexHealth: the seed's Plex Deployment, given its devices by the
// webhook and marked Running and Ready, against a stand-in Plex server.
func TestPlexHealth(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, seed.SeedWorkloads()...); err != nil {
		t.Fatal(err)
	}
	plex := plextest.Start("plex-token", plextest.HardwareTranscode("Dune", "jane"), plextest.DirectPlay("Heat", "alex"))
	defer plex.Close()
	opts := plexhealth.Options{Logs: cleanLogs{}, URL: plex.URL, Token: "plex-token"}

	check := func(name string, opts plexhealth.Options, healthy bool, warnings int, want ...string) {
		t.Helper()
		r, err := plexhealth.Check(ctx, cs, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var b strings.Builder
		if err := plexhealth.WriteTable(&b, r); err != nil {
			t.Fatal(err)
		}
		if r.Healthy != healthy || r.Warnings != warnings {
			t.Errorf("%s: healthy %v with %d warning(s), want %v with %d:\n%s", name, r.Healthy, r.Warnings, healthy, warnings, b.String())
		}
		for _, w := range want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: report lacks %q:\n%s", name, w, b.String())
			}
		}
	}

	check("healthy, hardware transcode", opts, true, 0,
		"devices        ok       media/plex-", ": plex: /dev/nvidia-uvm, /dev/nvidia0, /dev/nvidiactl",
		"runtimeClassName nvidia",
		"transcode      ok       jane: Dune on Living Room TV: hardware nvdec → nvenc, speed 3.2",
		"sessions       ok       2 session(s), 1 transcode(s), 1 of them on the NVIDIA GPU",
		"Plex is healthy: 0 failure(s), 0 warning(s)")

	// The real log reader: without a kubelet the API server cannot fetch
	// logs, which is a warning that says so, not a pass.
	kubeLogs := opts
	kubeLogs.Logs = plexhealth.KubeLogs{Client: cs}
	check("logs unreadable", kubeLogs, true, 1, "logs           warn     could not read the log of media/plex-")

	plex.Lock()
	plex.Sessions = append(plex.Sessions, plextest.SoftwareFallback("Alien", "sam"))
	plex.Unlock()
	check("software fallback", opts, true, 1,
		"transcode      warn     sam: Alien on iPad: software transcode, speed 0.8: video encoded in software although hardware was requested: it fell back to the CPU",
		"1 of them on the NVIDIA GPU, 1 fell back to the CPU")

	plex.SetSessions(plextest.HardwareTranscode("Dune", "jane"), plextest.SlowHardware("Heat", "alex"), plextest.QuickSync("Up", "kim"), plextest.MusicTranscode("One More Time", "lee"))
	check("slow hardware beside Quick Sync and music", opts, true, 1,
		"transcode      warn     alex: Heat on Living Room TV: hardware nvdec → nvenc, speed 0.7: transcoding slower than real time",
		"transcode      ok       kim: Up on Roku: hardware vaapi → vaapi, speed 2.4 (not an NVIDIA GPU",
		"4 session(s), 3 transcode(s), 2 of them on the NVIDIA GPU, 1 on another GPU")

	wrongToken := opts
	wrongToken.Token = "expired"
	check("wrong token", wrongToken, false, 0, "sessions       fail", "token rejected by Plex (401 Unauthorized): check --token or PLEX_TOKEN")

	down := plextest.Start("")
	down.Close()
	serverDown := opts
	serverDown.URL = down.URL
	check("server down", serverDown, false, 0, "server         fail     no answer from Plex at "+down.URL)

	// NVIDIA_DRIVER_CAPABILITIES through envFrom: read from the ConfigMap,
	// as the kubelet would set it, not reported as unset.
	fromConfigMap := plexWithEnvFrom(t, ctx, env, "media-envfrom", map[string]string{"NVIDIA_DRIVER_CAPABILITIES": "compute,video,utility"})
	check("capabilities from an envFrom ConfigMap", plexhealth.Options{Namespace: fromConfigMap, Logs: cleanLogs{}}, false, 0,
		"capabilities   ok       "+fromConfigMap+"/plex: NVIDIA_DRIVER_CAPABILITIES plex: compute,video,utility (from configmap "+fromConfigMap+"/plex-env)")

	// The command line: exit 0 when healthy, non-zero once the pod is not
	// Ready.
	args := []string{"plex-health", "--url", plex.URL, "--plex-token", "plex-token"}
	if out, err := gpuslice(t, env, args...); err != nil || !strings.Contains(out, "Plex is healthy") {
		t.Errorf("gpuslice plex-health, healthy: %v\n%s", err, out)
	}
	pods, err := cs.CoreV1().Pods("media").List(ctx, metav1.ListOptions{LabelSelector: "app=plex"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("Plex pods: %v %v", pods, err)
	}
	if _, err := env.Cluster.SetPodRunning(ctx, "media", pods.Items[0].Name, false); err != nil {
		t.Fatal(err)
	}
	check("pod not ready", opts, false, 1, "pod            fail     media/plex-", "not Ready")
	out, err := gpuslice(t, env, args...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "error: plex-health: 1 failure(s), Plex is not healthy") {
		t.Errorf("gpuslice plex-health, pod not ready: %v\n%s", err, out)
	}
}

// plexWithEnvFrom creates namespace ns holding a ConfigMap plex-env with
// data and a Pending Plex pod with the NVIDIA devices that takes its
// environment from it.
func plexWithEnvFrom(t *testing.T, ctx context.Context, env *demo.Env, ns string, data map[string]string) string {
	t.Helper()
	cs := env.Cluster.Client
	if err := demo.EnsureNamespace(ctx, cs, ns); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "plex-env", Namespace: ns}, Data: data}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := seed.PlexPod()
	pod.Namespace, pod.Name, pod.Annotations = ns, "plex", nil
	pod.Spec.NodeName = "no-such-node" // stays Pending: only the spec is checked
	pod.Spec.RuntimeClassName = ptr.To("nvidia")
	c := &pod.Spec.Containers[0]
	c.Env = nil
	c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}}}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "nvidia0", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/nvidia0"}}})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "nvidia0", MountPath: "/dev/nvidia0"})
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}
