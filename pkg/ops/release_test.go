package ops

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

var releaseTime = time.Date(2026, 5, 1, 20, 30, 0, 0, time.UTC)

// withReplicas is a Deployment of n replicas carrying annotations.
func withReplicas(n int32, annotations map[string]string) *appsWorkload {
	d := seed.SharesDeployment("ai-dev", "vllm-server", 2)
	d.Spec.Replicas = ptr.To(n)
	d.Annotations = annotations
	return wrapDeployment(d)
}

// cronJob is the seed's nightly training CronJob, suspended or not, whose
// running Jobs are jobs.
func cronJob(suspend bool, jobs []string, annotations map[string]string) *appsWorkload {
	cj := seed.TrainingCronJob("ai", "nightly-training")
	cj.Spec.Suspend = ptr.To(suspend)
	maps.Copy(cj.Annotations, annotations)
	w := wrapCronJob(cj)
	w.jobs = jobs
	return w
}

func TestDecideRelease(t *testing.T) {
	opts := ReleaseOptions{By: "jane", Reason: "Plex stutters", Now: releaseTime}
	released := map[string]string{workload.AnnotationReleasedReplicas: "3", workload.AnnotationReleasedAt: "2026-05-01T19:00:00Z", workload.AnnotationReleasedBy: "arbiter"}
	for _, tc := range []struct {
		name        string
		w           *appsWorkload
		action      string
		replicas    int32
		annotations map[string]string // expected afterwards, nil = unchanged
		err         error
		errText     string
		message     string
	}{
		{
			name: "scales to zero and remembers, all in one change", w: withReplicas(3, map[string]string{"team": "ai"}),
			action: ActionReleased, replicas: 0,
			annotations: map[string]string{"team": "ai", workload.AnnotationReleasedReplicas: "3", workload.AnnotationReleasedAt: "2026-05-01T20:30:00Z",
				workload.AnnotationReleasedBy: "jane", workload.AnnotationReleasedReason: "Plex stutters"},
			message: "deployment ai-dev/vllm-server released: 3 → 0 replicas",
		},
		{
			name: "already released: no-op that says so", w: withReplicas(0, released),
			action: ActionUnchanged, replicas: 0, message: "is already released (at 2026-05-01T19:00:00Z by arbiter); gpuslice restore deployment/vllm-server -n ai-dev brings back its 3 replica(s)",
		},
		{
			name: "protected", w: withReplicas(1, map[string]string{workload.AnnotationProtected: "true"}),
			replicas: 1, err: ErrProtected, errText: "refusing to release deployment ai-dev/vllm-server",
		},
		{
			name: "protected with an unclear value stays protected", w: withReplicas(1, map[string]string{workload.AnnotationProtected: "yes"}),
			replicas: 1, err: ErrProtected,
		},
		{
			name: "protection lifted by false", w: withReplicas(1, map[string]string{workload.AnnotationProtected: "false"}),
			action: ActionReleased, replicas: 0,
		},
		{
			name: "already at zero by hand: nothing to release", w: withReplicas(0, nil),
			action: ActionUnchanged, replicas: 0, message: "already has 0 replicas",
		},
		{
			name: "a CronJob: suspended with its running Jobs, remembered as 1", w: cronJob(false, []string{"nightly-training-1"}, nil),
			action: ActionReleased, replicas: 0,
			message: "cronjob ai/nightly-training released: suspended it and suspended its Job(s) nightly-training-1, remembered in gpuslice.io/released-replicas; gpuslice restore cronjob/nightly-training -n ai resumes it and its Jobs",
		},
		{
			name: "a CronJob suspended by hand with a Job running: the Job only, remembered as 0", w: cronJob(true, []string{"nightly-training-1"}, nil),
			action: ActionReleased, replicas: 0, message: "left it suspended as it was and suspended its Job(s) nightly-training-1",
		},
		{
			name: "a CronJob suspended by hand, no Job: nothing to release", w: cronJob(true, nil, nil),
			action: ActionUnchanged, replicas: 0, message: "is suspended and has no running Job",
		},
		{
			name: "a protected CronJob", w: cronJob(false, []string{"nightly-training-1"}, map[string]string{workload.AnnotationProtected: "true"}),
			replicas: 1, err: ErrProtected, errText: "refusing to release cronjob ai/nightly-training",
		},
		{
			name: "broken record", w: withReplicas(0, map[string]string{workload.AnnotationReleasedReplicas: "three"}),
			replicas: 0, errText: `annotation gpuslice.io/released-replicas="three", not a replica count`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.w.copy()
			res, err := decideRelease(tc.w, opts)
			checkErr(t, err, tc.err, tc.errText)
			if err == nil && res.Action != tc.action {
				t.Errorf("action %q, want %q", res.Action, tc.action)
			}
			if got := tc.w.Replicas(); got != tc.replicas {
				t.Errorf("replicas %d, want %d", got, tc.replicas)
			}
			if tc.annotations != nil {
				if !maps.Equal(tc.w.meta.Annotations, tc.annotations) {
					t.Errorf("annotations %v, want %v", tc.w.meta.Annotations, tc.annotations)
				}
			} else if !res.Changed() && !maps.Equal(tc.w.meta.Annotations, before.meta.Annotations) {
				t.Errorf("unchanged result but annotations changed: %v", tc.w.meta.Annotations)
			}
			if !strings.Contains(res.Message, tc.message) {
				t.Errorf("message %q lacks %q", res.Message, tc.message)
			}
		})
	}
}

func TestDecideRestore(t *testing.T) {
	released := func() map[string]string {
		return map[string]string{"team": "ai", workload.AnnotationReleasedReplicas: "3", workload.AnnotationReleasedAt: "2026-05-01T20:30:00Z",
			workload.AnnotationReleasedBy: "jane", workload.AnnotationReleasedReason: "Plex stutters"}
	}
	for _, tc := range []struct {
		name     string
		w        *appsWorkload
		action   string
		replicas int32
		message  string
		errText  string
	}{
		{name: "brings back the remembered count and forgets it", w: withReplicas(0, released()), action: ActionRestored, replicas: 3,
			message: "restored: 0 → 3 replicas (released at 2026-05-01T20:30:00Z by jane: Plex stutters)"},
		{name: "scaled by hand since: the remembered count wins", w: withReplicas(1, released()), action: ActionRestored, replicas: 3,
			message: "it had been scaled to 1 by hand since, and is set to the 3 the release remembered"},
		{name: "not released: no-op that says so", w: withReplicas(2, map[string]string{"team": "ai"}), action: ActionUnchanged, replicas: 2,
			message: "was not released by gpuslice"},
		{name: "released from zero is impossible but harmless", w: withReplicas(0, map[string]string{workload.AnnotationReleasedReplicas: "0"}), action: ActionRestored},
		{name: "broken record", w: withReplicas(0, map[string]string{workload.AnnotationReleasedReplicas: "-1"}), errText: "not a replica count"},
		{name: "a CronJob the release suspended: resumed with its Jobs", w: cronJob(true, []string{"nightly-training-1"}, map[string]string{workload.AnnotationReleasedReplicas: "1"}),
			action: ActionRestored, replicas: 1, message: "restored: resumed it and resumed its Job(s) nightly-training-1"},
		{name: "a CronJob suspended before the release stays suspended", w: cronJob(true, []string{"nightly-training-1"}, map[string]string{workload.AnnotationReleasedReplicas: "0"}),
			action: ActionRestored, replicas: 0, message: "left it suspended as it was before the release and resumed its Job(s) nightly-training-1"},
		{name: "a CronJob suspended by hand, no record, no Job of gpuslice's: untouched", w: cronJob(true, nil, nil),
			action: ActionUnchanged, replicas: 0, message: "was not released by gpuslice"},
		{name: "a CronJob release cut short: its Jobs resumed", w: cronJob(false, []string{"nightly-training-1"}, nil),
			action: ActionRestored, replicas: 1, message: "carries no release record, but its Job(s) nightly-training-1 were suspended by gpuslice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := decideRestore(tc.w, "")
			checkErr(t, err, nil, tc.errText)
			if err != nil {
				return
			}
			if res.Action != tc.action || tc.w.Replicas() != tc.replicas {
				t.Errorf("action %q replicas %d, want %q %d", res.Action, tc.w.Replicas(), tc.action, tc.replicas)
			}
			if res.Action == ActionRestored {
				for k := range tc.w.meta.Annotations {
					if strings.HasPrefix(k, "gpuslice.io/released-") {
						t.Errorf("annotation %s left behind", k)
					}
				}
			}
			if !strings.Contains(res.Message, tc.message) {
				t.Errorf("message %q lacks %q", res.Message, tc.message)
			}
		})
	}
}

func TestRestartAsKubectl(t *testing.T) {
	w := withReplicas(1, nil)
	ts, err := w.restart(releaseTime)
	if err != nil || ts != "2026-05-01T20:30:00Z" || w.template.Annotations[workload.AnnotationRestartedAt] != ts {
		t.Fatalf("restart: %q %v %v", ts, err, w.template.Annotations)
	}
	if _, err := w.restart(releaseTime.Add(500 * time.Millisecond)); err == nil || !strings.Contains(err.Error(), "this second") {
		t.Errorf("second restart in the same second: %v", err)
	}
	paused := withReplicas(1, nil)
	paused.obj.(*appsv1.Deployment).Spec.Paused = true
	if _, err := paused.restart(releaseTime); err == nil || !strings.Contains(err.Error(), "kubectl rollout resume deployment/vllm-server -n ai-dev") {
		t.Errorf("paused: %v", err)
	}
}

func TestPatchFromPinsResourceVersion(t *testing.T) {
	before := withReplicas(3, nil)
	before.meta.ResourceVersion = "42"
	after := before.copy()
	if p, err := patchFrom(before.obj, after.obj, "42"); err != nil || p != nil {
		t.Fatalf("no change: %s %v", p, err)
	}
	if _, err := decideRelease(after, ReleaseOptions{By: "jane", Now: releaseTime}); err != nil {
		t.Fatal(err)
	}
	p, err := patchFrom(before.obj, after.obj, "42")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"annotations":{"gpuslice.io/released-at":"2026-05-01T20:30:00Z","gpuslice.io/released-by":"jane","gpuslice.io/released-replicas":"3"},"resourceVersion":"42"},"spec":{"replicas":0}}`
	if string(p) != want {
		t.Errorf("patch\n%s\nwant\n%s", p, want)
	}
}

func checkErr(t *testing.T, err, is error, text string) {
	t.Helper()
	switch {
	case is == nil && text == "":
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
	case err == nil:
		t.Fatalf("no error, want %v %q", is, text)
	case is != nil && !errors.Is(err, is):
		t.Errorf("error %v is not %v", err, is)
	case !strings.Contains(err.Error(), text):
		t.Errorf("error %q lacks %q", err, text)
	}
}

// TestReleaseRetriesOnConflict: when the workload changes between the read
// and the write, the API server answers Conflict to the pinned patch, and
// Release decides again on what is stored: it remembers 5, not the 3 it
// first read.
func TestReleaseRetriesOnConflict(t *testing.T) {
	d := seed.SharesDeployment("lab", "batch", 0)
	d.Spec.Replicas = ptr.To[int32](3)
	cs := fake.NewClientset(d)
	gvr := appsv1.SchemeGroupVersion.WithResource("deployments")
	var patches []string
	cs.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		patches = append(patches, string(a.(k8stesting.PatchAction).GetPatch()))
		if len(patches) > 1 {
			return false, nil, nil
		}
		cur, err := cs.Tracker().Get(gvr, "lab", "batch")
		if err != nil {
			return true, nil, err
		}
		scaled := cur.(*appsv1.Deployment).DeepCopy()
		scaled.Spec.Replicas = ptr.To[int32](5)
		if err := cs.Tracker().Update(gvr, scaled, "lab"); err != nil {
			return true, nil, err
		}
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), "batch", errors.New("the object has been modified"))
	})
	res, err := Release(context.Background(), cs, workload.Ref{Kind: workload.KindDeployment, Namespace: "lab", Name: "batch"}, ReleaseOptions{By: "jane", Now: releaseTime})
	if err != nil {
		t.Fatal(err)
	}
	if len(patches) != 2 || !strings.Contains(patches[0], `"gpuslice.io/released-replicas":"3"`) || !strings.Contains(patches[1], `"gpuslice.io/released-replicas":"5"`) {
		t.Errorf("patches:\n%s", strings.Join(patches, "\n"))
	}
	got, err := cs.AppsV1().Deployments("lab").Get(context.Background(), "batch", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReplicasBefore != 5 || *got.Spec.Replicas != 0 || got.Annotations[workload.AnnotationReleasedReplicas] != "5" {
		t.Errorf("result %+v; stored %d replicas, annotations %v", res, *got.Spec.Replicas, got.Annotations)
	}
}
