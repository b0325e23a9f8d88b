package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/gate/live"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// TestGate installs the chart with webhook.admissionGate and runs the
// built binary under the chart's ServiceAccount (so its RBAC is what is
// tested), on a control plane with a scheduler, node homelabai and a
// simulated kubelet. With Plex running but not Ready, a preemptible vLLM
// gets no pod and its ReplicaSet says why; break-glass lets it in, with an
// Event; a repaired Plex opens the gate for the rest.
func TestGate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := localcluster.EnsureBinaries(ctx, io.Discard); err != nil {
		t.Fatalf("control-plane binaries: %v", err)
	}
	c, err := localcluster.Start(ctx, localcluster.Options{ControllerManager: true, Scheduler: true})
	if err != nil {
		t.Fatalf("starting the local control plane: %v", err)
	}
	t.Cleanup(c.Stop)
	if _, err := c.AddNode(ctx, seed.HomelabAI()); err != nil {
		t.Fatal(err)
	}
	kubelet := c.StartKubelet(ctx)
	// Plex's pod will run but fail readiness: media is broken.
	if err := kubelet.SetNotReady(ctx, func(p *corev1.Pod) bool { return p.Namespace == "media" }); err != nil {
		t.Fatal(err)
	}
	cs := c.Client
	if err := demo.EnsurePriorityClasses(ctx, cs); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"media", "ai-dev"} {
		if err := demo.EnsureNamespace(ctx, cs, ns); err != nil {
			t.Fatal(err)
		}
	}
	in := installChart(ctx, t, c, map[string]any{"admissionGate": true})
	until(ctx, t, "the webhook's /readyz (the gate has listed the cluster)", func(ctx context.Context) (bool, error) {
		select {
		case err := <-in.exited:
			return false, fmt.Errorf("the webhook exited: %v", err)
		default:
		}
		return getOK(ctx, "http://"+in.metricsAddr+"/readyz"), nil
	})

	var plex, vllm *appsv1.Deployment
	var vllmConfig *corev1.ConfigMap
	for _, w := range seed.ArbitratedWorkloads() {
		switch w.Deployment.Namespace + "/" + w.Deployment.Name {
		case "media/plex":
			plex = w.Deployment
		case "ai-dev/vllm-server":
			vllm, vllmConfig = w.Deployment, w.ConfigMap
		}
	}
	// The API server reaches the webhook once its caBundle is written.
	until(ctx, t, "the webhook to mutate a dry-run Plex pod", func(ctx context.Context) (bool, error) {
		got, err := cs.CoreV1().Pods("media").Create(ctx, podOf(plex), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && len(got.Spec.Volumes) == 3, nil
	})

	if _, err := cs.AppsV1().Deployments("media").Create(ctx, plex, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	until(ctx, t, "Plex running, not Ready", func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("media").List(ctx, metav1.ListOptions{LabelSelector: "app=plex"})
		return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning, err
	})

	t.Run("preemptible vLLM gets no pod while Plex is not Ready", func(t *testing.T) {
		if _, err := cs.CoreV1().ConfigMaps("ai-dev").Create(ctx, vllmConfig, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.AppsV1().Deployments("ai-dev").Create(ctx, vllm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		wantRefused(ctx, t, cs, "app=vllm", "preemptible deployment ai-dev/vllm-server may not start new pods: protected deployment media/plex is unhealthy on homelabai (0 of 1 pod(s) Ready): repair media/plex first")
	})

	t.Run("an unannotated pod requesting shares is sent to the gate", func(t *testing.T) {
		d := seed.SharesDeployment("ai-dev", "trainer", 1)
		d.Annotations = map[string]string{workload.AnnotationPreemptible: "true"}
		d.Spec.Template.Spec.PriorityClassName = seed.ClassAI
		if _, err := cs.AppsV1().Deployments("ai-dev").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		wantRefused(ctx, t, cs, "app=trainer", "preemptible deployment ai-dev/trainer may not start new pods: protected deployment media/plex is unhealthy")
	})

	t.Run("break-glass lets vLLM in, logged as an Event", func(t *testing.T) {
		reason := "e2e: demo while Plex is repaired"
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, workload.AnnotationBreakGlass, reason)
		if _, err := cs.AppsV1().Deployments("ai-dev").Patch(ctx, "vllm-server", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		until(ctx, t, "vLLM pods with break-glass", func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods("ai-dev").List(ctx, metav1.ListOptions{LabelSelector: "app=vllm"})
			for _, p := range pods.Items {
				if p.Annotations[workload.AnnotationBreakGlass] == reason && len(p.Spec.Volumes) == 3 {
					return true, nil
				}
			}
			return false, err
		})
		until(ctx, t, "a BreakGlass Event on deployment ai-dev/vllm-server", func(ctx context.Context) (bool, error) {
			evs, err := cs.CoreV1().Events("ai-dev").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Deployment,involvedObject.name=vllm-server,reason=" + live.ReasonBreakGlass})
			if err != nil || len(evs.Items) == 0 {
				return false, err
			}
			e := evs.Items[0]
			if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, reason) || !strings.Contains(e.Message, "media/plex is unhealthy") {
				return false, fmt.Errorf("event %s %q", e.Type, e.Message)
			}
			return true, nil
		})
		body := httpGet(t, "http://"+in.metricsAddr+"/metrics")
		for _, d := range []string{"denied", "break_glass"} {
			if !strings.Contains(body, `gpuslice_webhook_gate_decisions_total{decision="`+d+`"}`) {
				t.Errorf("metrics do not count %s decisions", d)
			}
		}
	})

	t.Run("a repaired Plex opens the gate", func(t *testing.T) {
		if err := kubelet.SetNotReady(ctx, func(*corev1.Pod) bool { return false }); err != nil {
			t.Fatal(err)
		}
		// The ReplicaSet controller retries with a growing backoff.
		until(ctx, t, "a trainer pod", func(ctx context.Context) (bool, error) {
			pods, err := cs.CoreV1().Pods("ai-dev").List(ctx, metav1.ListOptions{LabelSelector: "app=trainer"})
			return err == nil && len(pods.Items) > 0, err
		})
	})
}

// wantRefused checks that the Deployment's pods (selector) were refused
// with want: none exists, and its ReplicaSet's ReplicaFailure condition
// and FailedCreate Event carry the gate's message.
func wantRefused(ctx context.Context, t *testing.T, cs kubernetes.Interface, selector, want string) {
	t.Helper()
	var rs appsv1.ReplicaSet
	until(ctx, t, "a ReplicaFailure condition on the ReplicaSet of "+selector, func(ctx context.Context) (bool, error) {
		list, err := cs.AppsV1().ReplicaSets("ai-dev").List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil || len(list.Items) == 0 {
			return false, err
		}
		rs = list.Items[0]
		for _, cond := range rs.Status.Conditions {
			if cond.Type == appsv1.ReplicaSetReplicaFailure {
				if !strings.Contains(cond.Message, want) || !strings.Contains(cond.Message, workload.AnnotationBreakGlass+"=REASON") {
					return false, fmt.Errorf("ReplicaFailure %q lacks %q", cond.Message, want)
				}
				return true, nil
			}
		}
		return false, nil
	})
	evs, err := cs.CoreV1().Events("ai-dev").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=ReplicaSet,involvedObject.name=" + rs.Name + ",reason=FailedCreate"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 || !strings.Contains(evs.Items[0].Message, want) {
		t.Errorf("FailedCreate events of ReplicaSet %s: %+v, want one saying %q", rs.Name, evs.Items, want)
	}
	pods, err := cs.CoreV1().Pods("ai-dev").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d pod(s) %s were created past the gate", len(pods.Items), selector)
	}
}

func until(ctx context.Context, t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 90*time.Second, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func getOK(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
