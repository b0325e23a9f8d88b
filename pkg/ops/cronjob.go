package ops

import (
	"context"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// A CronJob is released by suspending it and its running Jobs (the Job
// controller then deletes their pods, and recreates them on resume), and
// restored by resuming them. The Jobs are written before the CronJob,
// each with its own record, so that a release or restore cut short
// between the writes is finished by running it again: a release finds
// the CronJob not yet released, a restore finds the record still there.

func wrapCronJob(cj *batchv1.CronJob) *appsWorkload {
	return &appsWorkload{
		Ref: workload.Ref{Kind: workload.KindCronJob, Namespace: cj.Namespace, Name: cj.Name},
		obj: cj, meta: &cj.ObjectMeta, template: &cj.Spec.JobTemplate.Spec.Template, suspend: &cj.Spec.Suspend,
	}
}

// modifyReleasable is modifyWorkload that also takes a CronJob.
func modifyReleasable(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, dryRun bool, change func(*appsWorkload) (bool, error)) error {
	if ref.Kind != workload.KindCronJob {
		return modifyWorkload(ctx, cs, ref, dryRun, change)
	}
	return modify(ctx, cs.BatchV1().CronJobs(ref.Namespace), ref.Qualified(), ref.Name, dryRun,
		func(cj *batchv1.CronJob) (bool, error) { return change(wrapCronJob(cj)) })
}

// releaseCronJob suspends the CronJob's running Jobs, then the CronJob
// with its release record. The decision is taken on the stored CronJob
// first, so that a refusal (protected, a broken record) touches no Job.
func releaseCronJob(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, opts ReleaseOptions) (Result, error) {
	cj, err := cs.BatchV1().CronJobs(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return Result{Workload: ref}, apiErr(ref.Qualified(), err)
	}
	running, err := cronJobJobs(ctx, cs, cj, func(j *batchv1.Job) bool { return !jobSuspended(j) })
	if err != nil {
		return Result{Workload: ref}, err
	}
	probe := wrapCronJob(cj.DeepCopy())
	probe.jobs = running
	if res, err := decideRelease(probe, opts); err != nil || !res.Changed() && len(running) == 0 {
		res.DryRun = opts.DryRun
		return res, err
	}
	at := opts.Now.UTC().Format(time.RFC3339)
	var suspended []string
	if !opts.DryRun {
		for _, name := range running {
			changed, err := setJobSuspended(ctx, cs, ref, name, true, func(j *batchv1.Job) {
				annotate(&j.ObjectMeta, workload.AnnotationReleasedBy, opts.By)
				annotate(&j.ObjectMeta, workload.AnnotationReleasedAt, at)
			})
			if err != nil {
				return Result{Workload: ref, Jobs: suspended}, err
			}
			if changed {
				suspended = append(suspended, name)
			}
		}
	} else {
		suspended = running
	}
	var res Result
	err = modifyReleasable(ctx, cs, ref, opts.DryRun, func(w *appsWorkload) (bool, error) {
		w.jobs = suspended
		var err error
		res, err = decideRelease(w, opts)
		return res.Changed(), err
	})
	if err == nil && res.Action == ActionUnchanged && len(suspended) > 0 {
		// Already released: the Jobs suspended now finish that release.
		res.Action, res.Jobs = ActionReleased, suspended
		res.Message += fmt.Sprintf("; suspended its running Job(s) %s", strings.Join(suspended, ", "))
	}
	res.DryRun = opts.DryRun
	return res, err
}

// restoreCronJob resumes the Jobs a release suspended (those carrying
// its record, by OnlyBy when set), then the CronJob, removing its record.
// A CronJob released by someone other than OnlyBy is left whole.
func restoreCronJob(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, opts RestoreOptions) (Result, error) {
	cj, err := cs.BatchV1().CronJobs(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return Result{Workload: ref}, apiErr(ref.Qualified(), err)
	}
	if res, err := decideRestore(wrapCronJob(cj.DeepCopy()), opts.OnlyBy); err != nil || res.Record != nil && !res.Changed() {
		res.DryRun = opts.DryRun
		return res, err
	}
	ours, err := cronJobJobs(ctx, cs, cj, func(j *batchv1.Job) bool {
		by, released := j.Annotations[workload.AnnotationReleasedBy]
		return released && jobSuspended(j) && (opts.OnlyBy == "" || by == opts.OnlyBy)
	})
	if err != nil {
		return Result{Workload: ref}, err
	}
	if !opts.DryRun {
		for _, name := range ours {
			if _, err := setJobSuspended(ctx, cs, ref, name, false, func(j *batchv1.Job) {
				delete(j.Annotations, workload.AnnotationReleasedBy)
				delete(j.Annotations, workload.AnnotationReleasedAt)
			}); err != nil {
				return Result{Workload: ref}, err
			}
		}
	}
	var res Result
	err = modifyReleasable(ctx, cs, ref, opts.DryRun, func(w *appsWorkload) (bool, error) {
		w.jobs = ours
		var err error
		res, err = decideRestore(w, opts.OnlyBy)
		return res.Changed() && res.Record != nil, err
	})
	res.DryRun = opts.DryRun
	return res, err
}

// cronJobJobs names the CronJob's unfinished Jobs (those whose controller
// it is) that keep.
func cronJobJobs(ctx context.Context, cs kubernetes.Interface, cj *batchv1.CronJob, keep func(*batchv1.Job) bool) ([]string, error) {
	list, err := cs.BatchV1().Jobs(cj.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		if apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("listing the Jobs of cronjob %s/%s is forbidden: grant list and patch on jobs.batch in namespace %s to this user: %w", cj.Namespace, cj.Name, cj.Namespace, err)
		}
		return nil, fmt.Errorf("listing the Jobs of cronjob %s/%s: %w", cj.Namespace, cj.Name, err)
	}
	var out []string
	for i := range list.Items {
		j := &list.Items[i]
		if c := metav1.GetControllerOfNoCopy(j); c == nil || c.UID != cj.UID || clusterview.JobFinished(j) || !keep(j) {
			continue
		}
		out = append(out, j.Name)
	}
	return out, nil
}

// setJobSuspended sets a Job's spec.suspend and lets record edit its
// annotations in the same write; a Job finished or already so is left
// alone. It reports whether it wrote.
func setJobSuspended(ctx context.Context, cs kubernetes.Interface, owner workload.Ref, name string, suspend bool, record func(*batchv1.Job)) (bool, error) {
	var changed bool
	what := fmt.Sprintf("Job %s/%s (of %s)", owner.Namespace, name, owner.Qualified())
	err := modify(ctx, cs.BatchV1().Jobs(owner.Namespace), what, name, false, func(j *batchv1.Job) (bool, error) {
		changed = !clusterview.JobFinished(j) && jobSuspended(j) != suspend
		if changed {
			j.Spec.Suspend = &suspend
			record(j)
		}
		return changed, nil
	})
	return changed, err
}

func jobSuspended(j *batchv1.Job) bool { return j.Spec.Suspend != nil && *j.Spec.Suspend }

// annotate sets one annotation on meta.
func annotate(meta *metav1.ObjectMeta, key, value string) {
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[key] = value
}

// cronJobChange says what a CronJob release (verb "suspended") or
// restore ("resumed") did: replicas is its record's (1: the release
// suspended the CronJob itself; 0: it was suspended before, and is left
// so, as kept says).
func cronJobChange(verb string, replicas int32, jobs []string, kept string) string {
	parts := []string{kept}
	if replicas > 0 {
		parts[0] = verb + " it"
	}
	if len(jobs) > 0 {
		parts = append(parts, verb+" its Job(s) "+strings.Join(jobs, ", "))
	}
	return strings.Join(parts, " and ")
}

// pronoun is what a CronJob's restore resumes.
func pronoun(replicas int32, jobs []string) string {
	switch {
	case replicas > 0 && len(jobs) > 0:
		return "it and its Jobs"
	case replicas > 0:
		return "it (and the Jobs the release suspended)"
	}
	return "the Jobs the release suspended"
}
