package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/internal/chart"
	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/admit"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/snapshot"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// vllmManifest is the AI-dev vLLM as a deploy script applies it: a
// ConfigMap, then a preemptible Deployment of replicas pods requesting
// shares through the webhook's gpu-shares annotation.
func vllmManifest(replicas, shares int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: vllm-config, namespace: ai-dev}
data: {GPU_MEMORY_UTILIZATION: "0.70"}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vllm-server
  namespace: ai-dev
  annotations: {gpuslice.io/preemptible: "true"}
spec:
  replicas: %d
  selector: {matchLabels: {app: vllm}}
  template:
    metadata:
      labels: {app: vllm}
      annotations: {gpu-directories: nvidia, gpu-shares: "%d"}
    spec:
      nodeSelector: {kubernetes.io/hostname: homelabai}
      containers: [{name: vllm, image: vllm/vllm-openai:latest}]
`, replicas, shares)
}

// allowAdmitOnly lets user read what gpuslice admit reads and record
// Events, but not read or write ConfigMaps one by one (so not the gate's
// journal).
func allowAdmitOnly(ctx context.Context, t *testing.T, cs kubernetes.Interface, user string) {
	t.Helper()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "admit-only"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"", "apps", "batch", "scheduling.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "admit-only"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// admitRun runs `gpuslice admit -f - ARGS` with manifest on stdin and
// returns its output and exit code.
func admitRun(t *testing.T, env *demo.Env, manifest string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(gpusliceBinary(t), append([]string{"--kubeconfig", env.Cluster.Kubeconfig, "admit", "-f", "-"}, args...)...)
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("running gpuslice admit: %v", err)
	return "", 0
}

// TestAdmit: `gpuslice admit`'s exit codes on the seed cluster, in the
// order a bad evening brings them: room (0), too many replicas (10), a
// request no node holds (11), Plex not Ready (20, and break-glass with an
// Event), homelabai NotReady (30: no free shares there, in status too),
// the API server unreachable (31).
func TestAdmit(t *testing.T) {
	env := startEnv(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.Deploy(ctx, env.Cluster, seed.SeedWorkloads()...); err != nil {
		t.Fatal(err)
	}
	expect := func(name string, manifest string, want int, contains []string, args ...string) string {
		t.Helper()
		out, code := admitRun(t, env, manifest, args...)
		if code != want {
			t.Errorf("%s: exit %d, want %d:\n%s", name, code, want, out)
		}
		for _, c := range contains {
			if !strings.Contains(out, c) {
				t.Errorf("%s: output lacks %q:\n%s", name, c, out)
			}
		}
		return out
	}

	// 4 of 8 shares free: one vLLM of 2 fits, three do not, 9 never do.
	expect("room", vllmManifest(1, 2), 0, []string{"deployment/vllm-server", "can start", "Not judged (they start no pods): configmap/vllm-config"})
	out := expect("room, as JSON", vllmManifest(1, 2), 0, nil, "-o", "json")
	var report admit.Report
	if err := json.Unmarshal([]byte(out), &report); err != nil || len(report.Workloads) != 1 || report.Workloads[0].Pods != 1 {
		t.Errorf("-o json: %v: %s", err, out)
	}
	expect("three replicas", vllmManifest(3, 2), 10, []string{"2 nvidia.com/gpu.shared for each of 3 pods (room for 2)", "Exit code 10"})
	expect("nine shares", vllmManifest(1, 9), 11, []string{"the most any of its GPU nodes advertises is 8", "Exit code 11"})

	// Plex runs but fails readiness.
	plex, err := cs.CoreV1().Pods("media").List(ctx, metav1.ListOptions{})
	if err != nil || len(plex.Items) != 1 {
		t.Fatalf("Plex's pod: %v, %d", err, len(plex.Items))
	}
	if _, err := env.Cluster.SetPodRunning(ctx, "media", plex.Items[0].Name, false); err != nil {
		t.Fatal(err)
	}
	expect("Plex not Ready", vllmManifest(1, 2), 20, []string{"protected deployment media/plex is unhealthy on homelabai", "Exit code 20"})
	// As the gate: a workload's own gpuslice.io/protected does not let it
	// past a broken Plex, unless its namespace is trusted.
	selfProtected := strings.Replace(vllmManifest(1, 2), `gpuslice.io/preemptible: "true"`, `gpuslice.io/protected: "true"`, 1)
	expect("own protected annotation, ignored as the gate does", selfProtected, 20, []string{"media/plex is unhealthy"})
	expect("own protected annotation in a --trusted-namespace", selfProtected, 0, nil, "--trusted-namespace", "ai-dev")
	// The deploy script's namespace exists before it applies the workload
	// (the Event is recorded there).
	if err := demo.EnsureNamespace(ctx, cs, "ai-dev"); err != nil {
		t.Fatal(err)
	}
	expect("break-glass without a reason", vllmManifest(1, 2), 1, []string{"--break-glass needs --reason"}, "--break-glass")
	// The webhook's namespace, where the gate's journal is kept.
	if err := demo.EnsureNamespace(ctx, cs, chart.DefaultNamespace); err != nil {
		t.Fatal(err)
	}
	expect("break-glass", vllmManifest(1, 2), 0, []string{"break-glass", `"demo at 3pm"`, "recorded as an Event and in the admission gate's journal"}, "--break-glass", "--reason", "demo at 3pm")
	evs, err := cs.CoreV1().Events("ai-dev").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Deployment,involvedObject.name=vllm-server,reason=" + workload.ReasonBreakGlass})
	if err != nil || len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Message, "demo at 3pm") || !strings.Contains(evs.Items[0].Message, "media/plex is unhealthy") {
		t.Errorf("break-glass Event: %v, %+v", err, evs)
	}
	out, err = gpuslice(t, env, "history", "--journal-namespace", chart.DefaultNamespace, "-o", "json")
	var h journal.History
	if err != nil || json.Unmarshal([]byte(out), &h) != nil || len(h.Entries) != 1 ||
		h.Entries[0].By != journal.ByAdmit || h.Entries[0].Action != journal.ActionBreakGlass || h.Entries[0].Reason != "demo at 3pm" ||
		!strings.Contains(h.Entries[0].Message, "media/plex is unhealthy") || h.Entries[0].Workload.Qualified() != "deployment ai-dev/vllm-server" {
		t.Errorf("gpuslice history after admit --break-glass: %v, want its one break-glass by admit:\n%s", err, out)
	}
	// A user who may judge but not write the journal: the Event is the
	// record, and a warning says what to grant.
	allowAdmitOnly(ctx, t, cs, "alice")
	expect("break-glass, journal forbidden", vllmManifest(1, 2), 0, []string{"recorded as an Event.", "Warning: break-glass recorded as an Event, but not in the admission gate's journal", "a cluster admin grants you get and update on that ConfigMap"},
		"--break-glass", "--reason", "demo at 3pm", "--as", "alice")
	// Break-glass does not make a node or shares appear.
	expect("break-glass, nine shares", vllmManifest(1, 9), 11, nil, "--break-glass", "--reason", "demo at 3pm")
	if _, err := env.Cluster.SetPodRunning(ctx, "media", plex.Items[0].Name, true); err != nil {
		t.Fatal(err)
	}

	// homelabai stops reporting: no free shares there, for status as for admit.
	node, err := cs.CoreV1().Nodes().Get(ctx, "homelabai", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status."}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("node NotReady", vllmManifest(1, 2), 30, []string{"homelabai is NotReady", "Exit code 30"})
	r, err := snapshot.Ledger(ctx, cs, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if u := sharedUsage(t, r, "homelabai"); u.Free != 0 || r.Nodes[0].NotReady == "" {
		t.Errorf("status of a NotReady homelabai: free %d, NotReady %q", u.Free, r.Nodes[0].NotReady)
	}

	expect("API server unreachable", vllmManifest(1, 2), 31, []string{"cannot reach the Kubernetes API server"}, "--server", "https://127.0.0.1:1")
}
