package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/internal/chart"
	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/harness/localcluster"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/gate"
	"github.com/gpuslice/gpuslice/pkg/gate/live"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/journal/store"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// TestGate installs the chart with webhook.admissionGate and runs the
// built binary under the chart's ServiceAccount (so its RBAC is what is
// tested), on a control plane with a scheduler, node homelabai and a
// simulated kubelet. With Plex running but not Ready, a preemptible vLLM
// gets no pod and its ReplicaSet says why, and the gate's journal holds
// the denial once however often the ReplicaSet retries; a dry run is not
// journaled; break-glass lets it in, with an Event and a journal entry,
// both shown by gpuslice history; a repaired Plex opens the gate for the
// rest.
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

	vllmRef := workload.Ref{Kind: workload.KindDeployment, Namespace: "ai-dev", Name: "vllm-server"}
	t.Run("the ReplicaSet's retried denials are one journal entry", func(t *testing.T) {
		until(ctx, t, "a denial of vLLM counted twice in the gate's journal", func(ctx context.Context) (bool, error) {
			denials := gateJournalEntries(ctx, t, cs, func(e journal.Entry) bool { return e.Workload == vllmRef && e.Action == journal.ActionDenied })
			switch {
			case len(denials) > 1:
				return false, fmt.Errorf("%d entries for one repeated denial: %+v", len(denials), denials)
			case len(denials) == 0:
				return false, nil
			}
			e := denials[0]
			if e.By != journal.ByGate || !strings.Contains(e.Message, "media/plex is unhealthy") {
				return false, fmt.Errorf("denial entry %+v", e)
			}
			return e.Times() >= 2 && e.FirstAt().Before(e.At), nil
		})
		// The webhook writes the data of the chart's ConfigMap and leaves
		// its metadata (Helm's ownership with it) alone.
		cm, err := cs.CoreV1().ConfigMaps(chart.DefaultNamespace).Get(ctx, journal.GateName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Labels["app.kubernetes.io/component"] != "webhook" {
			t.Errorf("the gate's journal lost the chart's labels: %v", cm.Labels)
		}
	})

	t.Run("a dry run is not journaled", func(t *testing.T) {
		probe := func(name string) *corev1.Pod {
			p := podOf(vllm)
			p.GenerateName, p.Name = "", name
			p.Annotations[workload.AnnotationPreemptible] = "true"
			return p
		}
		_, err := cs.CoreV1().Pods("ai-dev").Create(ctx, probe("dry-probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil || !strings.Contains(err.Error(), "may not start new pods") {
			t.Fatalf("dry-run probe: %v, want the gate's denial", err)
		}
		// A real denial after it: once that is journaled, the dry run
		// would have been too (decisions are written in order).
		if _, err := cs.CoreV1().Pods("ai-dev").Create(ctx, probe("wet-probe"), metav1.CreateOptions{}); err == nil {
			t.Fatal("wet-probe created past the gate")
		}
		isProbe := func(name string) func(journal.Entry) bool {
			return func(e journal.Entry) bool { return e.Workload.Name == name && e.Action == journal.ActionDenied }
		}
		until(ctx, t, "wet-probe's denial journaled", func(ctx context.Context) (bool, error) {
			return len(gateJournalEntries(ctx, t, cs, isProbe("wet-probe"))) == 1, nil
		})
		if dry := gateJournalEntries(ctx, t, cs, isProbe("dry-probe")); len(dry) != 0 {
			t.Errorf("the dry run was journaled: %+v", dry)
		}
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
		until(ctx, t, "vLLM's break-glass in the gate's journal", func(ctx context.Context) (bool, error) {
			return len(gateJournalEntries(ctx, t, cs, func(e journal.Entry) bool {
				return e.Workload == vllmRef && e.Action == journal.ActionBreakGlass && e.Reason == reason && e.By == journal.ByGate
			})) > 0, nil
		})
		body := httpGet(t, "http://"+in.metricsAddr+"/metrics")
		for _, d := range []string{"denied", "break_glass"} {
			if !strings.Contains(body, `gpuslice_webhook_gate_decisions_total{decision="`+d+`"}`) {
				t.Errorf("metrics do not count %s decisions", d)
			}
		}
		if strings.Contains(body, `gpuslice_webhook_gate_journal_writes_total{result="error"}`) || !strings.Contains(body, `gpuslice_webhook_gate_journal_writes_total{result="success"}`) {
			t.Errorf("the gate's journal writes failed, or none was counted:\n%s", grepLines(body, "gate_journal"))
		}

		// gpuslice history: no arbiter here, so only the gate's journal.
		out, err := exec.Command(in.bin, "--kubeconfig", c.Kubeconfig, "history", "--journal-namespace", chart.DefaultNamespace, "-o", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("gpuslice history -o json: %v\n%s", err, out)
		}
		var h journal.History
		if err := json.Unmarshal(out, &h); err != nil {
			t.Fatalf("gpuslice history -o json: %v\n%s", err, out)
		}
		var got []string
		for i, e := range h.Entries {
			if e.Workload == vllmRef {
				got = append(got, e.By+" "+e.Action)
			}
			if i > 0 && e.At.After(h.Entries[i-1].At) {
				t.Errorf("history not newest first: %s after %s", e.At, h.Entries[i-1].At)
			}
		}
		// The old ReplicaSet may retry once more after break-glass: the
		// order of these two is the clock's.
		slices.Sort(got)
		if want := []string{"gate break-glass", "gate denied"}; !slices.Equal(got, want) || h.GateJournal == "" {
			t.Errorf("history of vLLM %v from %q, want %v from the gate's journal:\n%s", got, h.GateJournal, want, out)
		}
	})

	t.Run("two writers at once lose none of each other's entries", func(t *testing.T) {
		// As two webhook replicas, on a journal of their own.
		ref := store.Ref{Namespace: "ai-dev", Name: "concurrent-journal"}
		const writers, each = 2, 25
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					e := journal.Entry{At: time.Now().UTC(), Action: journal.ActionDenied, By: journal.ByGate,
						Workload: workload.Ref{Kind: gate.KindPod, Namespace: "ai-dev", Name: fmt.Sprintf("writer%d-%d", w, i)}}
					if err := store.Append(ctx, cs, ref, []journal.Entry{e}, "e2e"); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		j, _, err := store.Read(ctx, cs, ref)
		if err != nil {
			t.Fatal(err)
		}
		if len(j.History) != writers*each {
			t.Errorf("%d entries, want %d: a writer lost another's", len(j.History), writers*each)
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

// gateJournalEntries are the admission gate's journal's entries that
// match.
func gateJournalEntries(ctx context.Context, t *testing.T, cs kubernetes.Interface, match func(journal.Entry) bool) []journal.Entry {
	t.Helper()
	j, _, err := store.Read(ctx, cs, store.Ref{Namespace: chart.DefaultNamespace, Name: journal.GateName})
	if err != nil {
		t.Fatal(err)
	}
	var out []journal.Entry
	for _, e := range j.History {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// grepLines are the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
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
