package e2e

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// TestArbiterTenantCannotSteer: the two attacks of issue 14 by a user who
// may only write workloads in their own namespace. A Deployment that
// declares itself protected at the highest priority and stays unhealthy
// preempts nobody; a forged arbiter release record on a running workload
// is neither waited for nor restored, so Plex is still protected.
func TestArbiterTenantCannotSteer(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	squatter := workload.Ref{Kind: workload.KindDeployment, Namespace: "tenant", Name: "squatter"}
	if err := demo.EnsureNamespace(ctx, a.cs, squatter.Namespace); err != nil {
		t.Fatal(err)
	}
	// Pending for good: more shares than the node has.
	d := seed.SharesDeployment(squatter.Namespace, squatter.Name, 100)
	d.Annotations = map[string]string{workload.AnnotationProtected: "true", workload.AnnotationPriority: "2147483647"}
	if _, err := a.cs.AppsV1().Deployments(squatter.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	journalRef := arbiter.JournalRef{Namespace: "default", Name: journal.DefaultName}
	c := a.run(t, nil) // UnhealthyGrace 0: an unhealthy protected workload would count at once
	poll(t, ctx, "the arbiter's journal", func(ctx context.Context) (bool, error) {
		_, found, err := arbiter.ReadJournal(ctx, a.cs, journalRef)
		return found, err
	})
	poll(t, ctx, "an UntrustedPolicy warning on the squatter", func(ctx context.Context) (bool, error) {
		ev := a.events(t, ctx, squatter, arbiter.ReasonUntrustedPolicy)
		return len(ev) > 0 && strings.Contains(ev[0].Message, "gpuslice.io/protected ignored") && strings.Contains(ev[0].Message, "gpuslice.io/priority=2147483647 ignored"), nil
	})
	stays(t, ctx, a, c, ollama, 1, "a tenant's own annotations cannot protect it")
	stays(t, ctx, a, c, vllm, 2, "a tenant's own annotations cannot protect it")

	// A forged record on Ollama, which keeps running.
	forged, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		workload.AnnotationReleasedReplicas: "1", workload.AnnotationReleasedBy: arbiter.Identity,
		workload.AnnotationReleasedNode: "homelabai", workload.AnnotationReleasedAt: "2026-11-28T20:00:00Z",
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.cs.AppsV1().Deployments(ollama.Namespace).Patch(ctx, ollama.Name, types.MergePatchType, forged, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	a.transcode(true)
	a.waitReplicas(t, ctx, vllm, 0)
	poll(t, ctx, "an UntrustedRecord warning on Ollama", func(ctx context.Context) (bool, error) {
		return len(a.events(t, ctx, ollama, arbiter.ReasonUntrustedRecord)) > 0, nil
	})
	stays(t, ctx, a, c, ollama, 1, "a forged record is not the arbiter's to act on")

	j, _, err := arbiter.ReadJournal(ctx, a.cs, journalRef)
	if err != nil {
		t.Fatal(err)
	}
	if _, held := j.Holds(vllm); !held {
		t.Errorf("the journal does not hold vLLM's preemption: %+v", j.Held)
	}
	if _, held := j.Holds(ollama); held {
		t.Errorf("the journal holds the forged record on Ollama: %+v", j.Held)
	}
	var preempts int
	for _, e := range j.History {
		if e.Action == journal.ActionPreempt && e.Workload == vllm && strings.Contains(e.Reason, "is active") {
			preempts++
		}
	}
	if preempts != 1 {
		t.Errorf("history has %d preemptions of vLLM, want 1: %+v", preempts, j.History)
	}

	// gpuslice history shows it, with the way back. The arbiter's clock
	// is the test's, days behind the command's: hence --since a year.
	out, err := gpuslice(t, a.env, "history", "--journal-namespace", "default", "--since", "8760h", "-n", "ai-dev")
	if err != nil || !strings.Contains(out, "gpuslice restore deployment/vllm-server -n ai-dev") ||
		!regexp.MustCompile(`preempt\s+deployment ai-dev/vllm-server\s+homelabai\s+deployment media/plex is active`).MatchString(out) || strings.Contains(out, "ollama") {
		t.Errorf("gpuslice history -n ai-dev: %v\n%s", err, out)
	}
	out, err = gpuslice(t, a.env, "history", "--journal-namespace", "default", "--since", "8760h", "-o", "json")
	if err != nil || !strings.Contains(out, `"action": "untrusted"`) || !strings.Contains(out, `"entries": [`) {
		t.Errorf("gpuslice history -o json: %v\n%s", err, out)
	}
}
