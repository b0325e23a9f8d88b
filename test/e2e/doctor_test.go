package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/certs"
	"github.com/gpuslice/gpuslice/pkg/doctor"
	"github.com/gpuslice/gpuslice/pkg/doctor/gather"
	"github.com/gpuslice/gpuslice/pkg/pluginconfig"
	"github.com/gpuslice/gpuslice/pkg/registration"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// fakeLogs stands in for the kubelet. The local control plane runs none, so
// pods/log fails there (the API server cannot resolve the simulated node);
// TestDoctorHealthySeedCluster checks that failure through the command.
// Logs are keyed by container name, "NAME --previous" for the run before a
// restart, since pod names are generated; other containers log one
// harmless line.
type fakeLogs struct {
	logs  map[string][]string
	mu    sync.Mutex
	asked []string
}

func (f *fakeLogs) TailLines(_ context.Context, _, _, container string, n int, previous bool) ([]string, error) {
	key := container
	if previous {
		key += " --previous"
	}
	f.mu.Lock()
	f.asked = append(f.asked, key)
	f.mu.Unlock()
	lines, ok := f.logs[key]
	if !ok {
		return []string{"started"}, nil
	}
	return lines[max(0, len(lines)-n):], nil
}

// runDevicePlugin plays the NVIDIA device plugin on homelabai as the
// seed's cluster runs it: its ConfigMap (8 replicas, renamed) and a pod
// of its DaemonSet mounting it, Running and Ready. It returns the pod's name.
func runDevicePlugin(ctx context.Context, t *testing.T, env *demo.Env) string {
	t.Helper()
	cs := env.Cluster.Client
	cm, err := pluginconfig.RenderConfigMap(pluginconfig.RenderOptions{Replicas: 8, Rename: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: cm.Namespace, Name: "nvidia-device-plugin-x7k2p", Labels: map[string]string{"app.kubernetes.io/name": "nvidia-device-plugin"}},
		Spec: corev1.PodSpec{NodeName: "homelabai", Containers: []corev1.Container{{Name: "nvidia-device-plugin-ctr", Image: "nvcr.io/nvidia/k8s-device-plugin:v0.17.0"}},
			Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}}}}},
	}
	if _, err := cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Cluster.SetPodRunning(ctx, pod.Namespace, pod.Name, true); err != nil {
		t.Fatal(err)
	}
	return pod.Name
}

func logFixture(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func runDoctor(ctx context.Context, t *testing.T, cs kubernetes.Interface, o gather.Options) *doctor.Report {
	t.Helper()
	ev, err := gather.Collect(ctx, cs, o)
	if err != nil {
		t.Fatalf("gathering evidence: %v", err)
	}
	return doctor.Judge(ev)
}

func target(t *testing.T, s string) *doctor.Target {
	t.Helper()
	tg, err := doctor.ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return &tg
}

// expectCheck finds the one result of check in the section titled title
// and checks its verdict and text; on a mismatch it prints the whole report.
func expectCheck(t *testing.T, r *doctor.Report, title, check string, verdict doctor.Verdict, substrings ...string) {
	t.Helper()
	found := r.Find(title, check)
	if len(found) != 1 {
		t.Errorf("%s %s: %d results, want 1\n%s", title, check, len(found), tableOf(r))
		return
	}
	res := found[0]
	text := res.Evidence + "\n" + res.Remedy
	ok := res.Verdict == verdict
	for _, s := range substrings {
		ok = ok && strings.Contains(text, s)
	}
	if !ok {
		t.Errorf("%s %s: %s %q, want %s with %q\n%s", title, check, res.Verdict, text, verdict, substrings, tableOf(r))
	}
}

func tableOf(r *doctor.Report) string {
	var b bytes.Buffer
	_ = doctor.WriteTable(&b, r)
	return b.String()
}

// waitForEvent polls until an event with reason and a message containing
// text is recorded in namespace.
func waitForEvent(ctx context.Context, t *testing.T, cs kubernetes.Interface, namespace, reason, text string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(list.Items, func(e corev1.Event) bool {
			return e.Reason == reason && strings.Contains(e.Message, text)
		}), nil
	})
	if err != nil {
		t.Fatalf("waiting for a %s event with %q in %s: %v", reason, text, namespace, err)
	}
}

// createDeployment creates a workload without waiting for its pods: the
// scenarios here are the ones whose pods never run.
func createDeployment(ctx context.Context, t *testing.T, cs kubernetes.Interface, w seed.Workload) {
	t.Helper()
	ns := w.Deployment.Namespace
	if err := demo.EnsureNamespace(ctx, cs, ns); err != nil {
		t.Fatal(err)
	}
	if w.ConfigMap != nil {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, w.ConfigMap, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, w.Deployment, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// exitStatus is the exit status of a gpuslice run (see gpuslice in
// ops_test.go, which builds the binary once per test run).
func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	t.Fatalf("running gpuslice: %v", err)
	return 0
}

// TestDoctorHealthySeedCluster: the seed's cluster after the AI-dev
// deployment has warnings (the seed's own VRAM risk, Method 2 workloads
// without the hybrid annotation, the demo's one-hour certificate) and no
// failure: exit status 0.
func TestDoctorHealthySeedCluster(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, append(seed.SeedWorkloads(), seed.VLLMWorkload())...); err != nil {
		t.Fatal(err)
	}
	plugin := runDevicePlugin(ctx, t, env)
	logs := &fakeLogs{logs: map[string][]string{"vllm": logFixture(t, "doctor-vllm-healthy.log")}}
	r := runDoctor(ctx, t, cs, gather.Options{Logs: logs})
	if r.Failed() || r.Summary.Workloads != 5 {
		t.Fatalf("healthy seed cluster: %+v\n%s", r.Summary, tableOf(r))
	}
	expectCheck(t, r, "Cluster", doctor.CheckWebhookRegistration, doctor.OK, "failurePolicy Fail")
	expectCheck(t, r, "Cluster", doctor.CheckWebhookDeployment, doctor.OK, "outside the cluster")
	expectCheck(t, r, "Cluster", doctor.CheckWebhookTLS, doctor.OK, `issued by "gpuslice demo webhook CA"`)
	expectCheck(t, r, "Cluster", doctor.CheckWebhookCABundle, doctor.OK, "verifies the webhook's certificate for 127.0.0.1")
	// The demo's fresh one-hour certificate is far from its last quarter.
	expectCheck(t, r, "Cluster", doctor.CheckWebhookCertExpiry, doctor.OK, "valid for")
	expectCheck(t, r, "Cluster", doctor.CheckWebhookDryRun, doctor.OK, "in namespace ai-dev came back with /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm and runtimeClassName nvidia")
	expectCheck(t, r, "Cluster", doctor.CheckVRAM, doctor.Warn, "Potential total 13.9Gi-18.4Gi, available 12Gi", "GPU_MEMORY_UTILIZATION of ai-dev/vllm-server")
	expectCheck(t, r, "Cluster", doctor.CheckDevicePluginPod, doctor.OK, "kube-system/"+plugin+" Running and Ready on homelabai")
	expectCheck(t, r, "Cluster", doctor.CheckDevicePluginConfig, doctor.OK, "the plugin reads ConfigMap kube-system/nvidia-device-plugin-config")
	expectCheck(t, r, "Cluster", doctor.CheckDevicePluginResources, doctor.OK, "nvidia.com/gpu.shared: 8 = 8 replicas x 1 GPU(s)", "nvidia.com/gpu: 0 (renamed)")
	vllm := "Deployment ai-dev/vllm-server"
	expectCheck(t, r, vllm, doctor.CheckShares, doctor.OK, "holds 2 nvidia.com/gpu.shared on homelabai (2 of 8 free)")
	expectCheck(t, r, vllm, doctor.CheckDevices, doctor.OK, "/dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm mounted")
	expectCheck(t, r, vllm, doctor.CheckRuntimeClass, doctor.OK, "runtimeClassName nvidia (handler nvidia)")
	expectCheck(t, r, vllm, doctor.CheckCUDAOOM, doctor.OK, "no CUDA out of memory in the last 6 line(s) of vllm")
	expectCheck(t, r, "Deployment media/plex", doctor.CheckNvidiaEnv, doctor.OK, "NVIDIA_DRIVER_CAPABILITIES=compute,video,utility")
	expectCheck(t, r, "Deployment ai/ollama", doctor.CheckAnnotation, doctor.Warn, "the seed recommends the hybrid method")

	// The command, with the real LogReader: without a kubelet the logs
	// cannot be read, which is a warning, not a failure.
	out, err := gpuslice(t, env, "doctor", "deploy/vllm-server", "-n", "ai-dev")
	if code := exitStatus(t, err); code != 0 || !strings.Contains(out, "logs unavailable: vllm:") || !strings.Contains(out, "no check failed") {
		t.Errorf("gpuslice doctor deploy/vllm-server: exit %d\n%s", code, out)
	}
	out, err = gpuslice(t, env, "doctor", "-o", "json")
	code := exitStatus(t, err)
	var decoded doctor.Report
	if err := json.Unmarshal([]byte(out), &decoded); err != nil || code != 0 || decoded.Failed() || len(decoded.Sections) != 6 {
		t.Errorf("gpuslice doctor -o json: exit %d, %v, %d sections\n%s", code, err, len(decoded.Sections), out)
	}

	// config validate --from-cluster: valid, the plugin runs it, and the
	// multi-share requests get the time-slicing note.
	out, err = gpuslice(t, env, "config", "validate", "--from-cluster")
	if code := exitStatus(t, err); code != 0 || !strings.Contains(out, "ai/whisper asks 2") || !strings.Contains(out, "failRequestsGreaterThanOne: true") || strings.Contains(out, "Drift") {
		t.Errorf("config validate --from-cluster: exit %d\n%s", code, out)
	}
	// The ConfigMap goes to 4 replicas; the running plugin still
	// advertises 8: drift, exit 1.
	cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, pluginconfig.DefaultConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	four, err := pluginconfig.RenderConfigMap(pluginconfig.RenderOptions{Replicas: 4, Rename: true})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = four.Data
	if _, err := cs.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = gpuslice(t, env, "config", "validate", "--from-cluster")
	if code := exitStatus(t, err); code != 1 || !strings.Contains(out, "Drift: node/homelabai: advertises nvidia.com/gpu.shared: 8, the config implies 4 (4 replicas x 1 GPU(s))") {
		t.Errorf("config validate --from-cluster after the ConfigMap changed: exit %d\n%s", code, out)
	}
}

// TestDoctorWebhookDown: the seed's "GPU webhook not running". The dry
// run gets failurePolicy Fail's error, and a Deployment created during the
// outage has no pod, with the reason from its ReplicaSet.
func TestDoctorWebhookDown(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, seed.SeedWorkloads()...); err != nil {
		t.Fatal(err)
	}
	if err := env.StopWebhook(); err != nil {
		t.Fatal(err)
	}
	createDeployment(ctx, t, cs, seed.VLLMWorkload())
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		rss, err := cs.AppsV1().ReplicaSets("ai-dev").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(rss.Items, func(rs appsv1.ReplicaSet) bool {
			return slices.ContainsFunc(rs.Status.Conditions, func(c appsv1.ReplicaSetCondition) bool { return c.Type == appsv1.ReplicaSetReplicaFailure })
		}), nil
	})
	if err != nil {
		t.Fatalf("waiting for vllm-server's ReplicaSet to fail creating its pod: %v", err)
	}
	r := runDoctor(ctx, t, cs, gather.Options{Logs: &fakeLogs{}})
	if !r.Failed() {
		t.Fatalf("webhook down, no failure:\n%s", tableOf(r))
	}
	expectCheck(t, r, "Cluster", doctor.CheckWebhookDryRun, doctor.Fail, "failed calling webhook", "failurePolicy Fail refuses every annotated pod")
	// Unreachable from here is a warning: the dry run is the verdict.
	expectCheck(t, r, "Cluster", doctor.CheckWebhookTLS, doctor.Warn, "could not reach 127.0.0.1:")
	expectCheck(t, r, "Deployment ai-dev/vllm-server", doctor.CheckPods, doctor.Fail, "0 of 1 pod(s) exist", "failed calling webhook", "webhook-* checks")
	// Plex was admitted before the outage and keeps running.
	expectCheck(t, r, "Deployment media/plex", doctor.CheckDevices, doctor.OK)
}

// TestDoctorCABundleMismatch: a registration whose caBundle holds another
// CA than the one that signed the serving certificate.
func TestDoctorCABundleMismatch(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.EnsureNamespace(ctx, cs, "media"); err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("someone else's CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := registration.Apply(ctx, cs, registration.Build(registration.Options{URL: env.WebhookURL, CABundle: other.CertPEM})); err != nil {
		t.Fatal(err)
	}
	// The API server picks the new registration up from its informer.
	var r *doctor.Report
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		r = runDoctor(ctx, t, cs, gather.Options{ProbeNamespace: "media", Logs: &fakeLogs{}})
		dry := r.Find("Cluster", doctor.CheckWebhookDryRun)
		return len(dry) == 1 && dry[0].Verdict == doctor.Fail, nil
	})
	if err != nil {
		t.Fatalf("the dry run never failed after the caBundle change:\n%s", tableOf(r))
	}
	expectCheck(t, r, "Cluster", doctor.CheckWebhookCABundle, doctor.Fail,
		`issued by "gpuslice demo webhook CA", which is not a CA in the caBundle ("someone else's CA")`)
	expectCheck(t, r, "Cluster", doctor.CheckWebhookDryRun, doctor.Fail, "x509", "see webhook-ca-bundle")
	expectCheck(t, r, "Cluster", doctor.CheckWebhookTLS, doctor.OK)
}

// TestDoctorNoFreeShares: the seed's "Not enough GPU shares available
// (need 2 free)". The real scheduler leaves vLLM pending.
func TestDoctorNoFreeShares(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	filler := seed.Workload{Deployment: seed.SharesDeployment("ai", "filler", 4)}
	if err := demo.Deploy(ctx, env.Cluster, append(seed.SeedWorkloads(), filler)...); err != nil {
		t.Fatal(err)
	}
	createDeployment(ctx, t, cs, seed.VLLMWorkload())
	waitForEvent(ctx, t, cs, "ai-dev", "FailedScheduling", "Insufficient nvidia.com/gpu.shared")

	r := runDoctor(ctx, t, cs, gather.Options{Target: target(t, "deploy/vllm-server"), Namespace: "ai-dev", Logs: &fakeLogs{}})
	title := "Deployment ai-dev/vllm-server"
	expectCheck(t, r, title, doctor.CheckShares, doctor.Fail,
		"needs 2 nvidia.com/gpu.shared per pod", "homelabai has 0 of 8 free", "held by ai/filler 4, ai/whisper 2, ai/ollama 1, ai/tts 1",
		"kubectl scale deployment -n ai whisper --replicas=0 (frees 2)")
	expectCheck(t, r, title, doctor.CheckScheduling, doctor.Fail, "FailedScheduling", "Insufficient nvidia.com/gpu.shared", "see gpu-shares")
	expectCheck(t, r, title, doctor.CheckPlacement, doctor.OK, "matches GPU node(s) homelabai")
	expectCheck(t, r, title, doctor.CheckPods, doctor.OK, "Pending")

	out, err := gpuslice(t, env, "doctor", "deploy/vllm-server", "-n", "ai-dev")
	code := exitStatus(t, err)
	if code != 1 || !strings.Contains(out, "gpu-shares      FAIL") || !strings.Contains(out, "2 doctor check(s) failed") {
		t.Errorf("gpuslice doctor deploy/vllm-server: exit %d, want 1\n%s", code, out)
	}
	t.Logf("gpuslice doctor deploy/vllm-server -n ai-dev (exit %d):\n%s", code, out)
}

// TestDoctorNodeSelectorMismatch: the seed's "Node selector mismatch".
func TestDoctorNodeSelectorMismatch(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	d := seed.SharesDeployment("lab", "trainer", 1)
	d.Spec.Template.Annotations[workload.AnnotationProfiles] = "nvidia"
	d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "homelab-ai"}
	createDeployment(ctx, t, cs, seed.Workload{Deployment: d})
	waitForEvent(ctx, t, cs, "lab", "FailedScheduling", "didn't match Pod's node affinity/selector")

	r := runDoctor(ctx, t, cs, gather.Options{Target: target(t, "deployment/trainer"), Namespace: "lab", Logs: &fakeLogs{}})
	if !r.Failed() {
		t.Fatalf("no failure:\n%s", tableOf(r))
	}
	title := "Deployment lab/trainer"
	expectCheck(t, r, title, doctor.CheckPlacement, doctor.Fail,
		"nodeSelector kubernetes.io/hostname=homelab-ai matches none of the 1 node(s)", `did you mean "homelabai"?`)
	expectCheck(t, r, title, doctor.CheckScheduling, doctor.Fail, "didn't match Pod's node affinity/selector", "see placement")
	// The webhook mutated the pod; only where it may run is wrong.
	expectCheck(t, r, title, doctor.CheckDevices, doctor.OK)
}

// TestDoctorMissingAnnotation: shares without gpu-directories is the
// seed's Method 2, which works but is not the hybrid method the seed
// recommends: a warning, exit status 0. The annotation put on the
// Deployment instead of its template reaches no pod: a failure.
func TestDoctorMissingAnnotation(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	misplaced := seed.SharesDeployment("ai", "sdxl", 1)
	misplaced.Annotations = map[string]string{workload.AnnotationProfiles: "nvidia"}
	if err := demo.Deploy(ctx, env.Cluster, seed.Workload{Deployment: seed.SharesDeployment("ai", "comfyui", 1)}, seed.Workload{Deployment: misplaced}); err != nil {
		t.Fatal(err)
	}
	r := runDoctor(ctx, t, cs, gather.Options{Target: target(t, "deploy/comfyui"), Namespace: "ai", Logs: &fakeLogs{}})
	if r.Failed() {
		t.Errorf("shares without annotation failed:\n%s", tableOf(r))
	}
	title := "Deployment ai/comfyui"
	expectCheck(t, r, title, doctor.CheckAnnotation, doctor.Warn,
		"requests 1 nvidia.com/gpu.shared without gpu-directories", "add gpu-directories: nvidia to spec.template.metadata.annotations")
	expectCheck(t, r, title, doctor.CheckDevices, doctor.OK, "NVIDIA device plugin")
	expectCheck(t, r, title, doctor.CheckRuntimeClass, doctor.Warn, "runtimeClassName is not set")
	if got := r.Find("Cluster", doctor.CheckWebhookDryRun); len(got) != 0 {
		t.Errorf("webhook checked for a workload that does not use it: %+v", got)
	}

	r = runDoctor(ctx, t, cs, gather.Options{Target: target(t, "deploy/sdxl"), Namespace: "ai", Logs: &fakeLogs{}})
	expectCheck(t, r, "Deployment ai/sdxl", doctor.CheckAnnotation, doctor.Fail,
		"annotation gpu-directories is on the Deployment itself, not on its pod template", "move it to spec.template.metadata.annotations")
}

// TestDoctorOOMKilled: the seed's "CUDA Out of Memory", with the container
// status a kubelet would write and the log it would serve.
func TestDoctorOOMKilled(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, seed.VLLMWorkload()); err != nil {
		t.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods("ai-dev").List(ctx, metav1.ListOptions{LabelSelector: "app=vllm"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("vLLM pods: %v %v", err, pods)
	}
	_, err = env.Cluster.SetPodStatus(ctx, "ai-dev", pods.Items[0].Name, func(p *corev1.Pod) {
		started := false
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: "vllm", Image: p.Spec.Containers[0].Image, RestartCount: 3, Started: &started,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container=vllm"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				Reason: "OOMKilled", ExitCode: 137, StartedAt: metav1.Now(), FinishedAt: metav1.Now(),
			}},
		}}
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &fakeLogs{logs: map[string][]string{"vllm --previous": logFixture(t, "doctor-vllm-cuda-oom.log")}}
	r := runDoctor(ctx, t, cs, gather.Options{Target: target(t, "deploy/vllm-server"), Namespace: "ai-dev", Logs: logs})
	if !r.Failed() {
		t.Fatalf("OOMKilled vLLM, no failure:\n%s", tableOf(r))
	}
	title := "Deployment ai-dev/vllm-server"
	expectCheck(t, r, title, doctor.CheckCrash, doctor.Fail,
		"container vllm was OOMKilled (3 restart(s), last exit OOMKilled code 137, now CrashLoopBackOff)", "not VRAM",
		"GPU_MEMORY_UTILIZATION 0.70 → 0.60 (configmap ai-dev/vllm-config)", "MAX_MODEL_LEN 8192 → 4096", "smaller or more quantized model than TheBloke/deepseek-coder-6.7B-instruct-AWQ")
	expectCheck(t, r, title, doctor.CheckCUDAOOM, doctor.Fail,
		"vllm (previous run) log: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 896.00 MiB",
		"4) check other GPU workloads' memory on homelabai: expected 8.4Gi of 12Gi")
	// A crashed container is read where the crash is: the previous run.
	if !slices.Equal(logs.asked, []string{"vllm --previous"}) {
		t.Errorf("logs read: %v, want the previous run of vllm only", logs.asked)
	}
}

// TestDoctorWebhookInCluster registers the webhook the way it runs in a
// real cluster: a Deployment in gpu-system behind a Service. Doctor dials
// the Service's ready endpoint: rerouted to the running webhook, as from
// inside the cluster, the handshake and caBundle pass; refused, as from a
// laptop outside the pod network, it is only a warning. The API server has
// no kube-proxy to reach the Service, so the dry run fails. Then the pod
// goes unready and the Deployment and endpoint checks fail too.
func TestDoctorWebhookInCluster(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	for _, ns := range []string{"gpu-system", "media"} {
		if err := demo.EnsureNamespace(ctx, cs, ns); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app.kubernetes.io/name": "gpuslice"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu-webhook", Namespace: "gpu-system"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "webhook", Image: "ghcr.io/gpuslice/gpuslice:latest", Args: []string{"webhook", "--self-signed", "--register"},
					Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}},
				}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("gpu-system").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu-webhook", Namespace: "gpu-system"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https")}}},
	}
	if _, err := cs.CoreV1().Services("gpu-system").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := demo.RunDeploymentPods(ctx, env.Cluster, d); err != nil {
		t.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods("gpu-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=gpuslice"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("webhook pods: %v %v", err, pods)
	}
	webhookPod := pods.Items[0].Name
	// A kubelet reports the pod's address; kube-controller-manager then
	// puts it in the Service's EndpointSlice.
	if _, err := env.Cluster.SetPodStatus(ctx, "gpu-system", webhookPod, func(p *corev1.Pod) {
		p.Status.PodIP, p.Status.PodIPs = "10.244.0.10", []corev1.PodIP{{IP: "10.244.0.10"}}
	}); err != nil {
		t.Fatal(err)
	}
	if err := registration.Apply(ctx, cs, registration.Build(registration.Options{
		ServiceName: "gpu-webhook", ServiceNamespace: "gpu-system", CABundle: env.CA.CertPEM,
	})); err != nil {
		t.Fatal(err)
	}
	// The running webhook serves the Service's names from now on, as it
	// would in the cluster (its files are reloaded on the next handshake).
	pair, err := env.CA.Issue(certs.LeafOptions{CommonName: "gpu-webhook.gpu-system.svc", DNSNames: registration.ServiceDNSNames("gpu-webhook", "gpu-system"), ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.WriteFiles(env.CertFile, env.KeyFile); err != nil {
		t.Fatal(err)
	}
	webhookAddr := strings.TrimSuffix(strings.TrimPrefix(env.WebhookURL, "https://"), "/mutate")
	inCluster := func(ctx context.Context, network, address string) (net.Conn, error) {
		if address != "10.244.0.10:8443" {
			return nil, fmt.Errorf("dialled %s, want the endpoint 10.244.0.10:8443", address)
		}
		return (&net.Dialer{}).DialContext(ctx, network, webhookAddr)
	}
	outside := func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("dial tcp 10.244.0.10:8443: connect: no route to host")
	}
	doctorUntil := func(dial func(context.Context, string, string) (net.Conn, error), check string, verdict doctor.Verdict) *doctor.Report {
		t.Helper()
		var r *doctor.Report
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			r = runDoctor(ctx, t, cs, gather.Options{ProbeNamespace: "media", Dial: dial, Logs: &fakeLogs{}})
			got := r.Find("Cluster", check)
			return len(got) == 1 && got[0].Verdict == verdict, nil
		})
		if err != nil {
			t.Fatalf("waiting for %s to be %s:\n%s", check, verdict, tableOf(r))
		}
		return r
	}

	r := doctorUntil(inCluster, doctor.CheckWebhookEndpoints, doctor.OK)
	expectCheck(t, r, "Cluster", doctor.CheckWebhookRegistration, doctor.OK, "calls service gpu-system/gpu-webhook:443/mutate, failurePolicy Fail")
	expectCheck(t, r, "Cluster", doctor.CheckWebhookDeployment, doctor.OK, "Deployment gpu-webhook 1/1 ready, 1 of 1 pod(s) ready")
	expectCheck(t, r, "Cluster", doctor.CheckWebhookEndpoints, doctor.OK, "Service gpu-system/gpu-webhook has 1 ready endpoint(s): 10.244.0.10")
	expectCheck(t, r, "Cluster", doctor.CheckWebhookTLS, doctor.OK, "TLS handshake with 10.244.0.10:8443: certificate for gpu-webhook")
	expectCheck(t, r, "Cluster", doctor.CheckWebhookCABundle, doctor.OK, "verifies the webhook's certificate for gpu-webhook.gpu-system.svc")
	// How the API server fails to reach a Service without kube-proxy
	// depends on the host's network; that it fails does not.
	expectCheck(t, r, "Cluster", doctor.CheckWebhookDryRun, doctor.Fail, "failed calling webhook")

	r = doctorUntil(outside, doctor.CheckWebhookTLS, doctor.Warn)
	expectCheck(t, r, "Cluster", doctor.CheckWebhookTLS, doctor.Warn, "could not reach 10.244.0.10:8443 from here: dial tcp 10.244.0.10:8443: connect: no route to host")

	if _, err := env.Cluster.SetPodRunning(ctx, "gpu-system", webhookPod, false); err != nil {
		t.Fatal(err)
	}
	r = doctorUntil(inCluster, doctor.CheckWebhookEndpoints, doctor.Fail)
	expectCheck(t, r, "Cluster", doctor.CheckWebhookEndpoints, doctor.Fail, "has no ready endpoint (1 not ready)")
	r = doctorUntil(inCluster, doctor.CheckWebhookDeployment, doctor.Fail)
	expectCheck(t, r, "Cluster", doctor.CheckWebhookDeployment, doctor.Fail, "0 of 1 pod(s) ready", "not ready (Running)", "kubectl logs -n gpu-system -l app.kubernetes.io/name=gpuslice")
	if got := r.Find("Cluster", doctor.CheckWebhookTLS); len(got) != 0 {
		t.Errorf("no ready endpoint, yet a handshake: %+v", got)
	}
}
