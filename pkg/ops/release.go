package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// ErrProtected is returned (wrapped) by Release for a workload annotated
// gpuslice.io/protected.
var ErrProtected = errors.New("workload is protected")

// Actions a Result reports.
const (
	ActionReleased  = "released"
	ActionRestored  = "restored"
	ActionUnchanged = "unchanged"
)

// ReleaseOptions configure Release.
type ReleaseOptions struct {
	// By is recorded as who released it; empty asks the API server who
	// this client is (SelfSubjectReview).
	By     string
	Reason string
	// Node is the node whose GPU is being freed, if the release is for one.
	Node   string
	DryRun bool
	// Now is the release time; zero means time.Now().
	Now time.Time
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	DryRun bool
	// OnlyBy, when set, restores only a release recorded by that name:
	// the arbiter never undoes an operator's release.
	OnlyBy string
}

// Result is what Release or Restore did, or would do with DryRun.
type Result struct {
	Workload       workload.Ref            `json:"workload"`
	Action         string                  `json:"action"`
	DryRun         bool                    `json:"dryRun,omitempty"`
	ReplicasBefore int32                   `json:"replicasBefore"`
	ReplicasAfter  int32                   `json:"replicasAfter"`
	Record         *workload.ReleaseRecord `json:"record,omitempty"`
	// Jobs are a CronJob's Jobs the release suspended or the restore
	// resumed (or would, with DryRun).
	Jobs []string `json:"jobs,omitempty"`
	// Lowered is the lower-memory record a restore undid (ActionRaised).
	Lowered *workload.LowerRecord `json:"lowered,omitempty"`
	Message string                `json:"message"`
}

// Changed says whether the workload was (or would be) changed.
func (r Result) Changed() bool { return r.Action != ActionUnchanged }

// Release scales the workload to zero and records, in the same write, the
// replica count it had, when, by whom and why: an interrupted release
// either happened whole or not at all. Releasing a released workload, or
// one already at zero replicas, changes nothing. A protected workload is
// refused with ErrProtected.
func Release(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, opts ReleaseOptions) (Result, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.By == "" {
		opts.By = WhoAmI(ctx, cs)
	}
	if ref.Kind == workload.KindCronJob {
		return releaseCronJob(ctx, cs, ref, opts)
	}
	var res Result
	err := modifyWorkload(ctx, cs, ref, opts.DryRun, func(w *appsWorkload) (bool, error) {
		var err error
		res, err = decideRelease(w, opts)
		return res.Changed(), err
	})
	res.DryRun = opts.DryRun
	return res, err
}

// Restore scales a released workload back to the replica count its
// release recorded and removes the record, in one write. A workload that
// was not released is left alone. One scaled by hand since its release is
// set to the recorded count all the same: the record is what the release
// promised to bring back.
//
// Without OnlyBy (a person's restore) a workload that carries no release
// record but a lower-memory one (the arbiter's lower-memory preemption) is
// raised back to the GPU_MEMORY_UTILIZATION it had, as Raise does.
func Restore(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, opts RestoreOptions) (Result, error) {
	if ref.Kind == workload.KindCronJob {
		return restoreCronJob(ctx, cs, ref, opts)
	}
	var res Result
	var lowered *workload.LowerRecord
	err := modifyWorkload(ctx, cs, ref, opts.DryRun, func(w *appsWorkload) (bool, error) {
		var err error
		if res, err = decideRestore(w, opts.OnlyBy); err != nil || res.Record != nil {
			return res.Changed(), err
		}
		lowered, err = workload.ParseLowerRecord(w.meta.Annotations)
		if err != nil {
			return false, fmt.Errorf("%s %w", w.Qualified(), err)
		}
		return false, nil
	})
	res.DryRun = opts.DryRun
	if err != nil || lowered == nil || opts.OnlyBy != "" {
		return res, err
	}
	res.Action, res.Lowered = ActionRaised, lowered
	if opts.DryRun {
		res.Message = fmt.Sprintf("%s is lowered (%s %s → %s at %s): would set it back to %s and restart it",
			ref.Qualified(), workload.EnvGPUMemoryUtilization, lowered.From, lowered.To, lowered.At, lowered.From)
		return res, nil
	}
	raised, err := Raise(ctx, cs, ref, *lowered, LowerOptions{})
	res.Message = raised.Message
	return res, err
}

// decideRelease applies a release to w in memory.
func decideRelease(w *appsWorkload, opts ReleaseOptions) (Result, error) {
	res := Result{Workload: w.Ref, Action: ActionUnchanged, ReplicasBefore: w.Replicas(), ReplicasAfter: w.Replicas()}
	rec, err := readRecord(w)
	if err != nil {
		return res, err
	}
	if rec != nil {
		res.Record = rec
		res.Message = fmt.Sprintf("%s is already released (%s); gpuslice restore %s brings back its %d replica(s)",
			w.Qualified(), rec.Describe(), w.KubectlArgs(), rec.Replicas)
		if w.suspend != nil {
			res.Message = fmt.Sprintf("%s is already released (%s); gpuslice restore %s resumes %s",
				w.Qualified(), rec.Describe(), w.KubectlArgs(), pronoun(rec.Replicas, nil))
		}
		return res, nil
	}
	if v, ok := w.meta.Annotations[workload.AnnotationProtected]; ok {
		if on, err := strconv.ParseBool(v); err != nil || on {
			return res, fmt.Errorf("refusing to release %s: %w (annotation %s=%q); remove the annotation if it may give up its GPU",
				w.Qualified(), ErrProtected, workload.AnnotationProtected, v)
		}
	}
	if res.ReplicasBefore == 0 && len(w.jobs) == 0 {
		res.Message = fmt.Sprintf("%s already has 0 replicas and holds no GPU; nothing to release", w.Qualified())
		if w.suspend != nil {
			res.Message = fmt.Sprintf("%s is suspended and has no running Job: it holds no GPU; nothing to release", w.Qualified())
		}
		return res, nil
	}
	rec = &workload.ReleaseRecord{Replicas: res.ReplicasBefore, At: opts.Now.UTC().Format(time.RFC3339), By: opts.By, Reason: opts.Reason, Node: opts.Node}
	w.annotate(workload.AnnotationReleasedReplicas, strconv.Itoa(int(rec.Replicas)))
	w.annotate(workload.AnnotationReleasedAt, rec.At)
	if rec.By != "" {
		w.annotate(workload.AnnotationReleasedBy, rec.By)
	}
	if rec.Reason != "" {
		w.annotate(workload.AnnotationReleasedReason, rec.Reason)
	}
	if rec.Node != "" {
		w.annotate(workload.AnnotationReleasedNode, rec.Node)
	}
	w.setReplicas(0)
	res.Action, res.ReplicasAfter, res.Record, res.Jobs = ActionReleased, 0, rec, w.jobs
	res.Message = fmt.Sprintf("%s released: %d → 0 replicas, remembered in %s; gpuslice restore %s brings them back",
		w.Qualified(), rec.Replicas, workload.AnnotationReleasedReplicas, w.KubectlArgs())
	if w.suspend != nil {
		res.Message = fmt.Sprintf("%s released: %s, remembered in %s; gpuslice restore %s resumes %s",
			w.Qualified(), cronJobChange("suspended", rec.Replicas, w.jobs, "left it suspended as it was"), workload.AnnotationReleasedReplicas, w.KubectlArgs(), pronoun(rec.Replicas, w.jobs))
	}
	return res, nil
}

// decideRestore applies a restore to w in memory.
func decideRestore(w *appsWorkload, onlyBy string) (Result, error) {
	cur := w.Replicas()
	res := Result{Workload: w.Ref, Action: ActionUnchanged, ReplicasBefore: cur, ReplicasAfter: cur}
	rec, err := readRecord(w)
	if err != nil {
		return res, err
	}
	if rec == nil && len(w.jobs) > 0 {
		// A CronJob release cut short between its Jobs and the CronJob.
		res.Action, res.Jobs = ActionRestored, w.jobs
		res.Message = fmt.Sprintf("%s carries no release record, but its Job(s) %s were suspended by gpuslice: resumed them", w.Qualified(), strings.Join(w.jobs, ", "))
		return res, nil
	}
	if rec == nil {
		res.Message = fmt.Sprintf("%s was not released by gpuslice (no %s annotation); nothing to restore", w.Qualified(), workload.AnnotationReleasedReplicas)
		return res, nil
	}
	if onlyBy != "" && rec.By != onlyBy {
		res.Record = rec
		res.Message = fmt.Sprintf("%s was released %s, not by %s: left for them to restore", w.Qualified(), rec.Describe(), onlyBy)
		return res, nil
	}
	for _, k := range workload.ReleaseAnnotations {
		delete(w.meta.Annotations, k)
	}
	w.setReplicas(rec.Replicas)
	res.Action, res.ReplicasAfter, res.Record, res.Jobs = ActionRestored, rec.Replicas, rec, w.jobs
	if w.suspend != nil {
		res.Message = fmt.Sprintf("%s restored: %s (released %s)", w.Qualified(), cronJobChange("resumed", rec.Replicas, w.jobs, "left it suspended as it was before the release"), rec.Describe())
		return res, nil
	}
	res.Message = fmt.Sprintf("%s restored: %d → %d replicas (released %s)", w.Qualified(), cur, rec.Replicas, rec.Describe())
	if cur != 0 {
		res.Message += fmt.Sprintf("; it had been scaled to %d by hand since, and is set to the %d the release remembered", cur, rec.Replicas)
	}
	return res, nil
}

// readRecord returns nil for a workload that is not released.
func readRecord(w *appsWorkload) (*workload.ReleaseRecord, error) {
	rec, err := workload.ParseReleaseRecord(w.meta.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%s %w", w.Qualified(), err)
	}
	return rec, nil
}

// WhoAmI is the user the API server knows this client as, or "unknown"
// when it cannot say (a cluster older than 1.28, or a failure).
func WhoAmI(ctx context.Context, cs kubernetes.Interface) string {
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || r.Status.UserInfo.Username == "" {
		return "unknown"
	}
	return r.Status.UserInfo.Username
}
