package e2e

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/gpuslice/gpuslice/internal/demo"
	"github.com/gpuslice/gpuslice/internal/seed"
	"github.com/gpuslice/gpuslice/pkg/arbiter"
	"github.com/gpuslice/gpuslice/pkg/doctor"
	"github.com/gpuslice/gpuslice/pkg/doctor/gather"
	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// createCronJob creates the seed's nightly training CronJob as name,
// suspended or not. Its schedule never comes during a test: the tests
// start its Jobs themselves (startJob).
func createCronJob(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string, suspend bool) *batchv1.CronJob {
	t.Helper()
	cj := seed.TrainingCronJob("ai", name)
	cj.Spec.Schedule = "0 0 1 1 *"
	cj.Spec.Suspend = ptr.To(suspend)
	cj, err := cs.BatchV1().CronJobs(cj.Namespace).Create(ctx, cj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cj
}

// startJob starts a run of cj as the CronJob controller (or kubectl
// create job --from=cronjob/NAME) does: a Job from its template, which
// the CronJob controls, and waits for its pod to run.
func startJob(t *testing.T, ctx context.Context, cs kubernetes.Interface, cj *batchv1.CronJob, name string, suspend bool) {
	t.Helper()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: cj.Namespace, Name: name, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: workload.KindCronJob, Name: cj.Name, UID: cj.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}}},
		Spec: *cj.Spec.JobTemplate.Spec.DeepCopy(),
	}
	job.Spec.Suspend = ptr.To(suspend)
	if _, err := cs.BatchV1().Jobs(cj.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !suspend {
		waitJobPods(t, ctx, cs, cj.Namespace, name, 1)
	}
}

// waitJobPods waits until the Job has n pods (running ones when n > 0).
func waitJobPods(t *testing.T, ctx context.Context, cs kubernetes.Interface, namespace, job string, n int) {
	t.Helper()
	poll(t, ctx, "Job "+job+" with "+strconv.Itoa(n)+" pod(s)", func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running++
			}
		}
		return len(pods.Items) == n && running == n, nil
	})
}

// annotateCronJob sets annotations on the CronJob ai/name.
func (a *arbiterEnv) annotateCronJob(t *testing.T, ctx context.Context, name string, set map[string]string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": set}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.cs.BatchV1().CronJobs("ai").Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func getCronJob(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string) *batchv1.CronJob {
	t.Helper()
	cj, err := cs.BatchV1().CronJobs("ai").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cj
}

func getJob(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string) *batchv1.Job {
	t.Helper()
	j, err := cs.BatchV1().Jobs("ai").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func suspended(s *bool) bool { return s != nil && *s }

// TestArbiterCronJob: the seed's overnight training outside its active
// hours is suspended with its running Job, whose pods go, so the GPU is
// free at once, not at the next schedule; when the hours open both are
// resumed and the Job's pod comes back. A CronJob a person suspended is
// never resumed, and status lists the arbiter's suspension.
func TestArbiterCronJob(t *testing.T) {
	a := startArbiterEnv(t)
	ctx := testContext(t)
	training := createCronJob(t, ctx, a.cs, "nightly-training", false)
	startJob(t, ctx, a.cs, training, "nightly-training-1", false)
	createCronJob(t, ctx, a.cs, "paused-by-hand", true)

	// 21:00 UTC: outside 01:00-06:00.
	c := a.run(t, nil)
	poll(t, ctx, "the CronJob and its Job suspended", func(ctx context.Context) (bool, error) {
		cj, job := getCronJob(t, ctx, a.cs, training.Name), getJob(t, ctx, a.cs, "nightly-training-1")
		return suspended(cj.Spec.Suspend) && suspended(job.Spec.Suspend), nil
	})
	waitJobPods(t, ctx, a.cs, "ai", "nightly-training-1", 0)
	cj := getCronJob(t, ctx, a.cs, training.Name)
	if cj.Annotations[workload.AnnotationReleasedBy] != arbiter.Identity || cj.Annotations[workload.AnnotationReleasedReplicas] != "1" ||
		cj.Annotations[workload.AnnotationReleasedReason] != "outside its active hours 01:00-06:00 UTC" {
		t.Errorf("CronJob's release record %v", cj.Annotations)
	}
	if by := getJob(t, ctx, a.cs, "nightly-training-1").Annotations[workload.AnnotationReleasedBy]; by != arbiter.Identity {
		t.Errorf("the Job's released-by = %q, want %q", by, arbiter.Identity)
	}
	ref := workload.Ref{Kind: workload.KindCronJob, Namespace: "ai", Name: training.Name}
	if ev := a.events(t, ctx, ref, arbiter.ReasonPreempted); len(ev) == 0 {
		t.Error("no Preempted event on the CronJob")
	}
	out, err := gpuslice(t, a.env, "status", "-n", "ai")
	if err != nil || !regexpLine(out, "cronjob/nightly-training", "suspended", "gpuslice restore cronjob/nightly-training -n ai") {
		t.Errorf("gpuslice status does not list the suspended CronJob: %v\n%s", err, out)
	}
	out, err = gpuslice(t, a.env, "history", "--journal-namespace", "default", "-n", "ai")
	if err != nil || !regexpLine(out, "ai/nightly-training", "suspend", "gpuslice restore cronjob/nightly-training -n ai") {
		t.Errorf("gpuslice history does not hold the CronJob as suspended: %v\n%s", err, out)
	}

	// 01:30 UTC the next night: both resumed, the Job's pod back.
	a.clock.Advance(4*time.Hour + 30*time.Minute)
	poll(t, ctx, "the CronJob and its Job resumed", func(ctx context.Context) (bool, error) {
		a.clock.Advance(10 * time.Second) // see waitAdvancing
		cj, job := getCronJob(t, ctx, a.cs, training.Name), getJob(t, ctx, a.cs, "nightly-training-1")
		return !suspended(cj.Spec.Suspend) && !suspended(job.Spec.Suspend), nil
	})
	waitJobPods(t, ctx, a.cs, "ai", "nightly-training-1", 1)
	if cj, job := getCronJob(t, ctx, a.cs, training.Name), getJob(t, ctx, a.cs, "nightly-training-1"); hasReleaseAnnotations(cj.Annotations) || hasReleaseAnnotations(job.Annotations) {
		t.Errorf("records left after the restore: CronJob %v, Job %v", cj.Annotations, job.Annotations)
	}
	settle(t, ctx, c, 5)
	if hand := getCronJob(t, ctx, a.cs, "paused-by-hand"); !suspended(hand.Spec.Suspend) || hasReleaseAnnotations(hand.Annotations) {
		t.Errorf("the arbiter touched a CronJob a person suspended: suspend %v, annotations %v", hand.Spec.Suspend, hand.Annotations)
	}
}

// startEnvWithKubelet is startEnv with the simulated kubelet running
// pods until the test ends.
func startEnvWithKubelet(t *testing.T) *demo.Env {
	t.Helper()
	env := startEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env.Cluster.StartKubelet(ctx)
	return env
}

// regexpLine says whether one line of out holds every part, in order.
func regexpLine(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := line, true
		for _, p := range parts {
			i := strings.Index(rest, p)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(p):]
		}
		if ok {
			return true
		}
	}
	return false
}

// TestReleaseRestoreCronJob: gpuslice release and restore on a CronJob
// suspend and resume it and its running Jobs, undoing exactly what the
// release did: a CronJob suspended by hand stays suspended, a Job
// suspended by hand stays suspended; dry run changes nothing; tune
// refuses a CronJob and says what to do.
func TestReleaseRestoreCronJob(t *testing.T) {
	env := startEnvWithKubelet(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.EnsureNamespace(ctx, cs, "ai"); err != nil {
		t.Fatal(err)
	}
	if err := demo.EnsurePriorityClasses(ctx, cs); err != nil {
		t.Fatal(err)
	}
	training := createCronJob(t, ctx, cs, "nightly-training", false)
	startJob(t, ctx, cs, training, "nightly-training-1", false)
	startJob(t, ctx, cs, training, "held-by-hand", true)

	out, err := gpuslice(t, env, "release", "cj/nightly-training", "-n", "ai", "--dry-run")
	if err != nil || !strings.Contains(out, "suspended its Job(s) nightly-training-1") {
		t.Errorf("release --dry-run: %v\n%s", err, out)
	}
	if cj, job := getCronJob(t, ctx, cs, training.Name), getJob(t, ctx, cs, "nightly-training-1"); suspended(cj.Spec.Suspend) || suspended(job.Spec.Suspend) {
		t.Fatal("a dry run suspended something")
	}

	out, err = gpuslice(t, env, "release", "cronjob/nightly-training", "-n", "ai", "--reason", "movie night", "-o", "json")
	if err != nil || !strings.Contains(out, `"action": "released"`) || !strings.Contains(out, `"nightly-training-1"`) {
		t.Fatalf("release: %v\n%s", err, out)
	}
	waitJobPods(t, ctx, cs, "ai", "nightly-training-1", 0)
	cj := getCronJob(t, ctx, cs, training.Name)
	if !suspended(cj.Spec.Suspend) || cj.Annotations[workload.AnnotationReleasedReplicas] != "1" || cj.Annotations[workload.AnnotationReleasedReason] != "movie night" {
		t.Errorf("released CronJob: suspend %v, annotations %v", cj.Spec.Suspend, cj.Annotations)
	}
	if out, err := gpuslice(t, env, "release", "cj/nightly-training", "-n", "ai"); err != nil || !strings.Contains(out, "is already released") {
		t.Errorf("second release: %v\n%s", err, out)
	}
	if out, err := gpuslice(t, env, "tune", "memory", "cj/nightly-training", "--fraction", "0.5", "-n", "ai"); err == nil || !strings.Contains(out, "only gpuslice release and restore act on a CronJob") {
		t.Errorf("tune memory on a CronJob: %v\n%s", err, out)
	}

	out, err = gpuslice(t, env, "restore", "cj/nightly-training", "-n", "ai")
	if err != nil || !strings.Contains(out, "resumed it and resumed its Job(s) nightly-training-1") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	waitJobPods(t, ctx, cs, "ai", "nightly-training-1", 1)
	if cj := getCronJob(t, ctx, cs, training.Name); suspended(cj.Spec.Suspend) || hasReleaseAnnotations(cj.Annotations) {
		t.Errorf("restored CronJob: suspend %v, annotations %v", cj.Spec.Suspend, cj.Annotations)
	}
	if job := getJob(t, ctx, cs, "held-by-hand"); !suspended(job.Spec.Suspend) {
		t.Error("restore resumed a Job a person had suspended")
	}

	// Suspended by hand with a Job still running: the release suspends
	// the Job only, and the restore leaves the CronJob suspended.
	if _, err := cs.BatchV1().CronJobs("ai").Patch(ctx, training.Name, types.MergePatchType, []byte(`{"spec":{"suspend":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := ops.Release(ctx, cs, workload.Ref{Kind: workload.KindCronJob, Namespace: "ai", Name: training.Name}, ops.ReleaseOptions{By: "alice"})
	if err != nil || res.Record == nil || res.Record.Replicas != 0 || len(res.Jobs) != 1 {
		t.Fatalf("release of a CronJob suspended by hand: %+v %v", res, err)
	}
	waitJobPods(t, ctx, cs, "ai", "nightly-training-1", 0)
	res, err = ops.Restore(ctx, cs, workload.Ref{Kind: workload.KindCronJob, Namespace: "ai", Name: training.Name}, ops.RestoreOptions{})
	if err != nil || !strings.Contains(res.Message, "left it suspended as it was before the release") {
		t.Fatalf("restore: %+v %v", res, err)
	}
	waitJobPods(t, ctx, cs, "ai", "nightly-training-1", 1)
	if cj := getCronJob(t, ctx, cs, training.Name); !suspended(cj.Spec.Suspend) || hasReleaseAnnotations(cj.Annotations) {
		t.Errorf("a CronJob suspended by hand: suspend %v, annotations %v after release and restore", cj.Spec.Suspend, cj.Annotations)
	}
}

// TestDoctorCronJob: gpuslice doctor cj/NAME checks the CronJob's pod
// template and finds the pods of its running Job.
func TestDoctorCronJob(t *testing.T) {
	env := startEnvWithKubelet(t)
	ctx := testContext(t)
	cs := env.Cluster.Client
	if err := demo.EnsurePriorityClasses(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if err := demo.Deploy(ctx, env.Cluster, seed.SeedWorkloads()...); err != nil {
		t.Fatal(err)
	}
	training := createCronJob(t, ctx, cs, "nightly-training", false)
	startJob(t, ctx, cs, training, "nightly-training-1", false)

	r := runDoctor(ctx, t, cs, gather.Options{Target: target(t, "cj/nightly-training"), Namespace: "ai", Logs: &fakeLogs{}})
	title := "CronJob ai/nightly-training"
	expectCheck(t, r, title, doctor.CheckPods, doctor.OK, "1 pod(s): nightly-training-1-", "Running on homelabai")
	expectCheck(t, r, title, doctor.CheckPlacement, doctor.OK, "homelabai")

	out, err := gpuslice(t, env, "doctor", "cronjob/nightly", "-n", "ai")
	if exitStatus(t, err) != 1 || !strings.Contains(out, "did you mean cronjob/nightly-training?") {
		t.Errorf("gpuslice doctor cronjob/nightly: %v\n%s", err, out)
	}
}
