package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Annotations on the Deployment or StatefulSet itself (not its pod
// template, so that writing them rolls nothing out).
const (
	// AnnotationProtected "true" forbids releasing the workload (Plex in
	// the reference cluster). Only a false value ("false", "0") lifts it.
	AnnotationProtected = "gpuslice.io/protected"
	// AnnotationReleasedReplicas is the replica count a release scaled
	// down from, which restore brings back.
	AnnotationReleasedReplicas = "gpuslice.io/released-replicas"
	// AnnotationReleasedAt is when (RFC 3339), AnnotationReleasedBy who
	// (a user, or the arbiter) and AnnotationReleasedReason why.
	AnnotationReleasedAt     = "gpuslice.io/released-at"
	AnnotationReleasedBy     = "gpuslice.io/released-by"
	AnnotationReleasedReason = "gpuslice.io/released-reason"
	// AnnotationReleasedNode is the node whose GPU the release freed,
	// when the release was for one node (the arbiter's are).
	AnnotationReleasedNode = "gpuslice.io/released-node"
)

// recordAnnotations are every annotation a release writes.
var recordAnnotations = []string{AnnotationReleasedReplicas, AnnotationReleasedAt, AnnotationReleasedBy, AnnotationReleasedReason, AnnotationReleasedNode}

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

// Record is what a release leaves on the workload.
type Record struct {
	Replicas int32  `json:"replicas"`
	At       string `json:"at,omitempty"`
	By       string `json:"by,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Node     string `json:"node,omitempty"`
}

// Result is what Release or Restore did, or would do with DryRun.
type Result struct {
	Workload       Ref     `json:"workload"`
	Action         string  `json:"action"`
	DryRun         bool    `json:"dryRun,omitempty"`
	ReplicasBefore int32   `json:"replicasBefore"`
	ReplicasAfter  int32   `json:"replicasAfter"`
	Record         *Record `json:"record,omitempty"`
	Message        string  `json:"message"`
}

// Changed says whether the workload was (or would be) changed.
func (r Result) Changed() bool { return r.Action != ActionUnchanged }

// Release scales the workload to zero and records, in the same write, the
// replica count it had, when, by whom and why: an interrupted release
// either happened whole or not at all. Releasing a released workload, or
// one already at zero replicas, changes nothing. A protected workload is
// refused with ErrProtected.
func Release(ctx context.Context, cs kubernetes.Interface, ref Ref, opts ReleaseOptions) (Result, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.By == "" {
		opts.By = WhoAmI(ctx, cs)
	}
	var res Result
	err := modifyWorkload(ctx, cs, ref, opts.DryRun, func(w *workload) (bool, error) {
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
func Restore(ctx context.Context, cs kubernetes.Interface, ref Ref, opts RestoreOptions) (Result, error) {
	var res Result
	err := modifyWorkload(ctx, cs, ref, opts.DryRun, func(w *workload) (bool, error) {
		var err error
		res, err = decideRestore(w, opts.OnlyBy)
		return res.Changed(), err
	})
	res.DryRun = opts.DryRun
	return res, err
}

// decideRelease applies a release to w in memory.
func decideRelease(w *workload, opts ReleaseOptions) (Result, error) {
	res := Result{Workload: w.Ref, Action: ActionUnchanged, ReplicasBefore: w.Replicas(), ReplicasAfter: w.Replicas()}
	rec, err := readRecord(w)
	if err != nil {
		return res, err
	}
	if rec != nil {
		res.Record = rec
		res.Message = fmt.Sprintf("%s is already released (%s); gpuslice restore %s brings back its %d replica(s)",
			w.Qualified(), rec.describe(), w.kubectlArgs(), rec.Replicas)
		return res, nil
	}
	if v, ok := w.meta.Annotations[AnnotationProtected]; ok {
		if on, err := strconv.ParseBool(v); err != nil || on {
			return res, fmt.Errorf("refusing to release %s: %w (annotation %s=%q); remove the annotation if it may give up its GPU",
				w.Qualified(), ErrProtected, AnnotationProtected, v)
		}
	}
	if res.ReplicasBefore == 0 {
		res.Message = fmt.Sprintf("%s already has 0 replicas and holds no GPU; nothing to release", w.Qualified())
		return res, nil
	}
	rec = &Record{Replicas: res.ReplicasBefore, At: opts.Now.UTC().Format(time.RFC3339), By: opts.By, Reason: opts.Reason, Node: opts.Node}
	w.annotate(AnnotationReleasedReplicas, strconv.Itoa(int(rec.Replicas)))
	w.annotate(AnnotationReleasedAt, rec.At)
	if rec.By != "" {
		w.annotate(AnnotationReleasedBy, rec.By)
	}
	if rec.Reason != "" {
		w.annotate(AnnotationReleasedReason, rec.Reason)
	}
	if rec.Node != "" {
		w.annotate(AnnotationReleasedNode, rec.Node)
	}
	w.setReplicas(0)
	res.Action, res.ReplicasAfter, res.Record = ActionReleased, 0, rec
	res.Message = fmt.Sprintf("%s released: %d → 0 replicas, remembered in %s; gpuslice restore %s brings them back",
		w.Qualified(), rec.Replicas, AnnotationReleasedReplicas, w.kubectlArgs())
	return res, nil
}

// decideRestore applies a restore to w in memory.
func decideRestore(w *workload, onlyBy string) (Result, error) {
	cur := w.Replicas()
	res := Result{Workload: w.Ref, Action: ActionUnchanged, ReplicasBefore: cur, ReplicasAfter: cur}
	rec, err := readRecord(w)
	if err != nil {
		return res, err
	}
	if rec == nil {
		res.Message = fmt.Sprintf("%s was not released by gpuslice (no %s annotation); nothing to restore", w.Qualified(), AnnotationReleasedReplicas)
		return res, nil
	}
	if onlyBy != "" && rec.By != onlyBy {
		res.Record = rec
		res.Message = fmt.Sprintf("%s was released %s, not by %s: left for them to restore", w.Qualified(), rec.describe(), onlyBy)
		return res, nil
	}
	for _, k := range recordAnnotations {
		delete(w.meta.Annotations, k)
	}
	w.setReplicas(rec.Replicas)
	res.Action, res.ReplicasAfter, res.Record = ActionRestored, rec.Replicas, rec
	res.Message = fmt.Sprintf("%s restored: %d → %d replicas (released %s)", w.Qualified(), cur, rec.Replicas, rec.describe())
	if cur != 0 {
		res.Message += fmt.Sprintf("; it had been scaled to %d by hand since, and is set to the %d the release remembered", cur, rec.Replicas)
	}
	return res, nil
}

// readRecord returns nil for a workload that is not released.
func readRecord(w *workload) (*Record, error) {
	rec, err := ParseRecord(w.meta.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%s %w", w.Qualified(), err)
	}
	return rec, nil
}

// ParseRecord reads the release record from a workload's annotations: nil
// when it is not released.
func ParseRecord(a map[string]string) (*Record, error) {
	v, ok := a[AnnotationReleasedReplicas]
	if !ok {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("has annotation %s=%q, not a replica count: set it to the count to restore, or remove it and scale by hand",
			AnnotationReleasedReplicas, v)
	}
	return &Record{Replicas: int32(n), At: a[AnnotationReleasedAt], By: a[AnnotationReleasedBy], Reason: a[AnnotationReleasedReason], Node: a[AnnotationReleasedNode]}, nil
}

func (r *Record) describe() string {
	s := "at " + r.At
	if r.At == "" {
		s = "at an unrecorded time"
	}
	if r.By != "" {
		s += " by " + r.By
	}
	if r.Reason != "" {
		s += ": " + r.Reason
	}
	return s
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
