package workload

import (
	"fmt"
	"strconv"
)

// The release record: annotations on the Deployment, StatefulSet or
// CronJob itself (not its pod template, so that writing them rolls nothing
// out).
//
// A CronJob is released by suspending it (spec.suspend) and its running
// Jobs: its record's replicas are 1 when the release suspended it and 0
// when it was already suspended (by a person, so restore leaves it so).
// Each Job the release suspended carries AnnotationReleasedBy and
// AnnotationReleasedAt itself, written with its suspension, and only
// those Jobs are resumed.
const (
	// AnnotationReleasedReplicas is the replica count a release scaled
	// down from, which restore brings back (for a CronJob, see above).
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

// ReleaseAnnotations are every annotation a release writes.
var ReleaseAnnotations = []string{AnnotationReleasedReplicas, AnnotationReleasedAt, AnnotationReleasedBy, AnnotationReleasedReason, AnnotationReleasedNode}

// ReleaseRecord is what a release leaves on the workload.
type ReleaseRecord struct {
	Replicas int32  `json:"replicas"`
	At       string `json:"at,omitempty"`
	By       string `json:"by,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Node     string `json:"node,omitempty"`
}

// ParseReleaseRecord reads the release record from a workload's
// annotations: nil when it is not released.
func ParseReleaseRecord(a map[string]string) (*ReleaseRecord, error) {
	v, ok := a[AnnotationReleasedReplicas]
	if !ok {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("has annotation %s=%q, not a replica count: set it to the count to restore, or remove it and scale by hand",
			AnnotationReleasedReplicas, v)
	}
	return &ReleaseRecord{Replicas: int32(n), At: a[AnnotationReleasedAt], By: a[AnnotationReleasedBy], Reason: a[AnnotationReleasedReason], Node: a[AnnotationReleasedNode]}, nil
}

// Annotations are the record as written: empty fields are left out.
func (r *ReleaseRecord) Annotations() map[string]string {
	a := map[string]string{AnnotationReleasedReplicas: strconv.Itoa(int(r.Replicas)), AnnotationReleasedAt: r.At}
	for k, v := range map[string]string{AnnotationReleasedBy: r.By, AnnotationReleasedReason: r.Reason, AnnotationReleasedNode: r.Node} {
		if v != "" {
			a[k] = v
		}
	}
	return a
}

// Describe says when, by whom and why, for messages.
func (r *ReleaseRecord) Describe() string {
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
