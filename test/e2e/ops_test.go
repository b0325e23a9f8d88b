package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

var vllmRef = workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}

// TestTuneMemory: the seed's "Reducing vLLM GPU Memory" round trip. The
// ConfigMap changes, every Deployment reading it gets restartedAt, and
// kube-controller-manager rolls each a new ReplicaSet; a workload only
// mounting the ConfigMap is listed, not restarted.
func TestTuneMemory(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	vllm := seed.VLLMWorkload()
	embed := seed.SharesDeployment("ai-dev", "vllm-embed", 0)
	embed.Spec.Template.Spec.Containers[0].EnvFrom = vllm.Deployment.Spec.Template.Spec.Containers[0].EnvFrom
	dashboard := seed.SharesDeployment("ai-dev", "dashboard", 0)
	dashboard.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "vllm-config"}}}}}
	envInTemplate := seed.SharesDeployment("ai-dev", "llm-env", 0)
	envInTemplate.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "GPU_MEMORY_UTILIZATION", Value: "0.9"}}
	workloads := append(seed.SeedWorkloads(), vllm, seed.Workload{Deployment: embed}, seed.Workload{Deployment: dashboard}, seed.Workload{Deployment: envInTemplate})
	if err := demo.Deploy(ctx, env.Cluster, workloads...); err != nil {
		t.Fatal(err)
	}
	hashes := map[string]string{}
	for _, name := range []string{"vllm-server", "vllm-embed", "dashboard", "llm-env"} {
		hashes[name] = templateHashes(ctx, t, cs, "ai-dev", name, 1)[0]
	}

	// A dry run plans the same and changes nothing.
	plan, err := ops.TuneMemory(ctx, cs, vllmRef, ops.MemoryOptions{Fraction: "0.6", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Changed || len(plan.Restarts) != 2 || configValue(ctx, t, cs) != "0.70" {
		t.Fatalf("dry run: %+v, ConfigMap %s", plan, configValue(ctx, t, cs))
	}

	res, err := ops.TuneMemory(ctx, cs, vllmRef, ops.MemoryOptions{Fraction: "0.6"})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Settings[0]
	if len(res.Settings) != 1 || s.ConfigMap != "vllm-config" || s.Old != "0.70" || s.New != "0.6" ||
		s.OldBytes != 8602<<20 || s.NewBytes != 7373<<20 || res.Node != "homelabai" {
		t.Errorf("settings %+v on %q", res.Settings, res.Node)
	}
	if got := configValue(ctx, t, cs); got != "0.6" {
		t.Errorf("ConfigMap value %q", got)
	}
	var restarted []string
	for _, r := range res.Restarts {
		restarted = append(restarted, r.Workload.Name)
	}
	if strings.Join(restarted, ",") != "vllm-server,vllm-embed" || len(res.Affected) != 1 || res.Affected[0].Workload.Name != "dashboard" {
		t.Errorf("restarted %v, affected %+v", restarted, res.Affected)
	}
	for _, name := range []string{"vllm-server", "vllm-embed"} {
		d, err := cs.AppsV1().Deployments("ai-dev").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ts := d.Spec.Template.Annotations[workload.AnnotationRestartedAt]; ts != res.Restarts[0].RestartedAt {
			t.Errorf("%s restartedAt %q, want %q", name, ts, res.Restarts[0].RestartedAt)
		}
		if hs := templateHashes(ctx, t, cs, "ai-dev", name, 2); !slices.Contains(hs, hashes[name]) {
			t.Errorf("%s: ReplicaSets %v lost the old template %s", name, hs, hashes[name])
		}
	}
	var b strings.Builder
	if err := ops.WriteMemory(&b, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"deployment ai-dev/vllm-server: set GPU_MEMORY_UTILIZATION in ConfigMap vllm-config key GPU_MEMORY_UTILIZATION: 0.70 (8.4Gi) → 0.6 (7.2Gi) of the 12Gi GPU on homelabai",
		"restarted deployment ai-dev/vllm-embed: reads ConfigMap vllm-config (envFrom)",
		"not restarted deployment ai-dev/dashboard: mounts ConfigMap vllm-config as volume cfg",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}

	// The same value again: nothing written, nothing rolled.
	again, err := ops.TuneMemory(ctx, cs, vllmRef, ops.MemoryOptions{Fraction: "0.60"})
	if err != nil || again.Changed || len(again.Restarts) != 0 {
		t.Errorf("same value: %+v %v", again, err)
	}
	if hs := templateHashes(ctx, t, cs, "ai-dev", "vllm-server", 2); len(hs) != 2 {
		t.Errorf("vllm-server ReplicaSets after a no-op: %v", hs)
	}
	if hs := templateHashes(ctx, t, cs, "ai-dev", "dashboard", 1); hs[0] != hashes["dashboard"] {
		t.Errorf("dashboard rolled: %v", hs)
	}

	// The env value in the pod template: changed there, in the same patch
	// as the restart.
	res, err = ops.TuneMemory(ctx, cs, workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "llm-env"}, ops.MemoryOptions{Fraction: "0.5"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := cs.AppsV1().Deployments("ai-dev").Get(ctx, "llm-env", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if env := d.Spec.Template.Spec.Containers[0].Env; len(env) != 1 || env[0].Value != "0.5" || d.Spec.Template.Annotations[workload.AnnotationRestartedAt] == "" ||
		res.Settings[0].ConfigMap != "" || res.Settings[0].Old != "0.9" || len(res.Restarts) != 1 {
		t.Errorf("env in template: %+v; result %+v", d.Spec.Template, res)
	}
	templateHashes(ctx, t, cs, "ai-dev", "llm-env", 2)

	// Refusals, before any write.
	if _, err := ops.TuneMemory(ctx, cs, workload.Ref{Kind: workload.KindDeployment, Namespace: "ai", Name: "ollama"}, ops.MemoryOptions{Fraction: "0.5"}); err == nil ||
		!strings.Contains(err.Error(), "deployment ai/ollama does not read GPU_MEMORY_UTILIZATION: looked at env of container ollama") {
		t.Errorf("workload without the variable: %v", err)
	}
	if _, err := ops.TuneMemory(ctx, cs, vllmRef, ops.MemoryOptions{Fraction: "1.5"}); err == nil || !strings.Contains(err.Error(), "(0, 1]") {
		t.Errorf("fraction 1.5: %v", err)
	}
}

// TestTuneShares: the seed's "Increasing vLLM GPU Shares". Asking 4 with
// 2 free is refused with the numbers; once Whisper is released, the patch
// goes through and the scheduler binds the new pod beside the old one.
func TestTuneShares(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, append(seed.SeedWorkloads(), seed.VLLMWorkload())...); err != nil {
		t.Fatal(err)
	}
	before, err := cs.AppsV1().Deployments("ai-dev").Get(ctx, "vllm-server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ops.TuneShares(ctx, cs, vllmRef, ops.SharesOptions{Shares: 4})
	want := "homelabai has 2 free of 8 nvidia.com/gpu.shared; vllm-server holds 2; asking 4 needs 2 more: free them first (ollama 1, tts 1, whisper 2 hold the rest)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("refusal:\n%v\nwant\n%s", err, want)
	}
	// Generation counts spec changes; the controllers' status writes do not.
	if after, err := cs.AppsV1().Deployments("ai-dev").Get(ctx, "vllm-server", metav1.GetOptions{}); err != nil || after.Generation != before.Generation {
		t.Errorf("a refusal wrote the Deployment: %v", err)
	}

	whisper := workload.Ref{Kind: workload.KindDeployment, Namespace: "ai", Name: "whisper"}
	if _, err := ops.Release(ctx, cs, whisper, ops.ReleaseOptions{Reason: "room for vLLM"}); err != nil {
		t.Fatal(err)
	}
	playKubeletDeletions(ctx, t, cs, "ai", "app=whisper")

	res, err := ops.TuneShares(ctx, cs, vllmRef, ops.SharesOptions{Shares: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Old != 2 || res.New != 4 || res.Free != 4 || res.Held != 2 || res.Needed != 6 || !res.Rolling {
		t.Errorf("result %+v", res)
	}
	d, err := cs.AppsV1().Deployments("ai-dev").Get(ctx, "vllm-server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := d.Spec.Template.Spec.Containers[0].Resources
	if q := r.Requests["nvidia.com/gpu.shared"]; q.Value() != 4 || !q.Equal(r.Limits["nvidia.com/gpu.shared"]) {
		t.Errorf("resources %+v", r)
	}
	// The new pod fits beside the old one, as the check promised.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("ai-dev").List(ctx, metav1.ListOptions{LabelSelector: "app=vllm"})
		if err != nil {
			return false, err
		}
		bound := 0
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				bound++
			}
		}
		return bound == 2, nil
	})
	if err != nil {
		t.Errorf("the new vLLM pod was not scheduled beside the old one: %v", err)
	}
}

// TestReleaseRestore: the seed's "Emergency GPU Release", with the
// replica count remembered on the object in the same write.
func TestReleaseRestore(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	batch := seed.SharesDeployment("lab", "batch", 0)
	batch.Spec.Replicas = ptr.To[int32](3)
	if err := demo.Deploy(ctx, env.Cluster, append(seed.SeedWorkloads(), seed.Workload{Deployment: batch})...); err != nil {
		t.Fatal(err)
	}
	ref := workload.Ref{Kind: workload.KindDeployment, Namespace: "lab", Name: "batch"}
	at := time.Date(2026, 5, 1, 21, 0, 0, 0, time.UTC)

	dry, err := ops.Release(ctx, cs, ref, ops.ReleaseOptions{DryRun: true})
	if err != nil || dry.Action != ops.ActionReleased || replicas(ctx, t, cs, ref) != 3 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}

	res, err := ops.Release(ctx, cs, ref, ops.ReleaseOptions{Reason: "Plex movie night", Now: at})
	if err != nil {
		t.Fatal(err)
	}
	d := deployment(ctx, t, cs, ref)
	if res.Action != ops.ActionReleased || res.ReplicasBefore != 3 || *d.Spec.Replicas != 0 ||
		d.Annotations[workload.AnnotationReleasedReplicas] != "3" || d.Annotations[workload.AnnotationReleasedAt] != "2026-05-01T21:00:00Z" ||
		d.Annotations[workload.AnnotationReleasedReason] != "Plex movie night" || d.Annotations[workload.AnnotationReleasedBy] == "" {
		t.Errorf("released: %+v; %d replicas, annotations %v", res, *d.Spec.Replicas, d.Annotations)
	}
	// By defaults to who the API server says we are: the admin's certificate.
	if by := d.Annotations[workload.AnnotationReleasedBy]; by == "unknown" {
		t.Errorf("released-by %q", by)
	}
	if !managedBy(d.ManagedFields, ops.FieldManager) {
		t.Errorf("no %s entry in managedFields", ops.FieldManager)
	}

	again, err := ops.Release(ctx, cs, ref, ops.ReleaseOptions{})
	if err != nil || again.Changed() || !strings.Contains(again.Message, "already released") || deployment(ctx, t, cs, ref).Generation != d.Generation {
		t.Errorf("second release: %+v %v", again, err)
	}

	res, err = ops.Restore(ctx, cs, ref, ops.RestoreOptions{})
	if err != nil || res.Action != ops.ActionRestored || res.ReplicasAfter != 3 {
		t.Fatalf("restore: %+v %v", res, err)
	}
	d = deployment(ctx, t, cs, ref)
	if *d.Spec.Replicas != 3 || hasReleaseAnnotations(d.Annotations) {
		t.Errorf("restored: %d replicas, annotations %v", *d.Spec.Replicas, d.Annotations)
	}
	again, err = ops.Restore(ctx, cs, ref, ops.RestoreOptions{})
	if err != nil || again.Changed() || !strings.Contains(again.Message, "was not released by gpuslice") {
		t.Errorf("second restore: %+v %v", again, err)
	}

	// Scaled by hand after the release (kubectl scale): restore sets the
	// remembered count and says so.
	if _, err := ops.Release(ctx, cs, ref, ops.ReleaseOptions{}); err != nil {
		t.Fatal(err)
	}
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "batch", Namespace: "lab"}, Spec: autoscalingv1.ScaleSpec{Replicas: 1}}
	if _, err := cs.AppsV1().Deployments("lab").UpdateScale(ctx, "batch", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = ops.Restore(ctx, cs, ref, ops.RestoreOptions{})
	if err != nil || replicas(ctx, t, cs, ref) != 3 || !strings.Contains(res.Message, "scaled to 1 by hand since, and is set to the 3 the release remembered") {
		t.Errorf("restore after a hand scale: %+v %v", res, err)
	}

	// Plex is protected in the demo.
	plex := workload.Ref{Kind: workload.KindDeployment, Namespace: "media", Name: "plex"}
	if _, err := ops.Release(ctx, cs, plex, ops.ReleaseOptions{}); !errors.Is(err, ops.ErrProtected) || replicas(ctx, t, cs, plex) != 1 {
		t.Errorf("releasing Plex: %v", err)
	}

	// A StatefulSet, through the command line.
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "whisper-sts", Namespace: "lab"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](2),
			Selector: batch.Spec.Selector,
			Template: batch.Spec.Template,
		},
	}
	if _, err := cs.AppsV1().StatefulSets("lab").Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := gpuslice(t, env, "release", "sts/whisper-sts", "-n", "lab", "--reason", "test")
	if err != nil || !strings.Contains(out, "statefulset lab/whisper-sts released: 2 → 0 replicas") {
		t.Errorf("gpuslice release sts: %v\n%s", err, out)
	}
	out, err = gpuslice(t, env, "restore", "sts/whisper-sts", "-n", "lab", "-o", "json")
	if err != nil || !strings.Contains(out, `"action": "restored"`) || !strings.Contains(out, `"replicasAfter": 2`) {
		t.Errorf("gpuslice restore sts -o json: %v\n%s", err, out)
	}
	out, err = gpuslice(t, env, "release", "plex", "-n", "media")
	if err == nil || !strings.Contains(out, "refusing to release deployment media/plex: workload is protected") {
		t.Errorf("gpuslice release plex: %v\n%s", err, out)
	}
}

// TestOpsPatchIsPinnedToResourceVersion checks what ops relies on for
// all-or-nothing writes: the API server rejects a patch carrying a
// resourceVersion that is no longer current.
func TestOpsPatchIsPinnedToResourceVersion(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.EnsureNamespace(ctx, cs, "lab"); err != nil {
		t.Fatal(err)
	}
	d, err := cs.AppsV1().Deployments("lab").Create(ctx, seed.SharesDeployment("lab", "batch", 0), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale := d.ResourceVersion
	if _, err := cs.AppsV1().Deployments("lab").Patch(ctx, "batch", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"touched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	patch := `{"metadata":{"resourceVersion":"` + stale + `","annotations":{"gpuslice.io/released-replicas":"1"}},"spec":{"replicas":0}}`
	_, err = cs.AppsV1().Deployments("lab").Patch(ctx, "batch", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if !apierrors.IsConflict(err) {
		t.Fatalf("stale patch: %v, want a Conflict", err)
	}
	if got := deployment(ctx, t, cs, workload.Ref{Namespace: "lab", Name: "batch"}); *got.Spec.Replicas != 1 || hasReleaseAnnotations(got.Annotations) {
		t.Errorf("a rejected patch half-applied: %+v", got)
	}
}

// templateHashes waits until the Deployment has n ReplicaSets and returns
// their pod-template-hash labels.
func templateHashes(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, n int) []string {
	t.Helper()
	var hashes []string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		hashes = nil
		for _, rs := range list.Items {
			if ref := metav1.GetControllerOf(&rs); ref != nil && ref.Kind == "Deployment" && ref.Name == name {
				hashes = append(hashes, rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey])
			}
		}
		return len(hashes) == n, nil
	})
	if err != nil {
		t.Fatalf("Deployment %s/%s: want %d ReplicaSets, have %v: %v", ns, name, n, hashes, err)
	}
	return hashes
}

// playKubeletDeletions waits for the controller to delete the selected
// pods and confirms the deletions, as the kubelet would once the
// containers stopped: there is no kubelet here, and a terminating pod
// still holds its shares.
func playKubeletDeletions(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, selector string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				return false, nil
			}
			err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
			if err != nil && !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		return len(pods.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("pods %s in %s not deleted: %v", selector, ns, err)
	}
}

func configValue(ctx context.Context, t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps("ai-dev").Get(ctx, "vllm-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data["GPU_MEMORY_UTILIZATION"]
}

func deployment(ctx context.Context, t *testing.T, cs kubernetes.Interface, ref workload.Ref) *appsv1.Deployment {
	t.Helper()
	d, err := cs.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func replicas(ctx context.Context, t *testing.T, cs kubernetes.Interface, ref workload.Ref) int32 {
	t.Helper()
	return *deployment(ctx, t, cs, ref).Spec.Replicas
}

func hasReleaseAnnotations(a map[string]string) bool {
	for k := range a {
		if strings.HasPrefix(k, "gpuslice.io/released-") {
			return true
		}
	}
	return false
}

func managedBy(fields []metav1.ManagedFieldsEntry, manager string) bool {
	for _, f := range fields {
		if f.Manager == manager {
			return true
		}
	}
	return false
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// gpuslice runs the gpuslice binary against the environment's cluster.
func gpuslice(t *testing.T, env *demo.Env, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(gpusliceBinary(t), append([]string{"--kubeconfig", env.Cluster.Kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// gpusliceBinary is the gpuslice binary, built once per test run.
func gpusliceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := filepath.Abs(filepath.Join("..", "..", ".cache", "e2e-bin"))
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "gpuslice")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/gpuslice/gpuslice/cmd/gpuslice").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building gpuslice: %v", buildErr)
	}
	return binary
}
