package arbiter

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gpuslice/gpuslice/pkg/ops"
)

// Annotations the arbiter writes on a workload it preempts with
// lower-memory, before it changes anything: the intent a restarted
// arbiter finishes.
const (
	AnnotationLoweredFrom   = "gpuslice.io/lowered-from"
	AnnotationLoweredTo     = "gpuslice.io/lowered-to"
	AnnotationLoweredAt     = "gpuslice.io/lowered-at"
	AnnotationLoweredNode   = "gpuslice.io/lowered-node"
	AnnotationLoweredReason = "gpuslice.io/lowered-reason"
	// AnnotationLoweredRestoringAt marks a restore under way: the
	// fraction goes back to From, then every lowered annotation goes.
	AnnotationLoweredRestoringAt = "gpuslice.io/lowered-restoring-at"
)

var loweredAnnotations = []string{AnnotationLoweredFrom, AnnotationLoweredTo, AnnotationLoweredAt, AnnotationLoweredNode, AnnotationLoweredReason, AnnotationLoweredRestoringAt}

// Lowered is a lower-memory preemption: GPU_MEMORY_UTILIZATION went from
// From to To at At (RFC 3339, also the restart time written to the pod
// template, which is how a restarted arbiter tells whether the restart
// happened).
type Lowered struct {
	From        string `json:"from"`
	To          string `json:"to"`
	At          string `json:"at"`
	Node        string `json:"node,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Restoring   bool   `json:"restoring,omitempty"`
	RestoringAt string `json:"restoringAt,omitempty"`
}

func parseLowered(a map[string]string) (*Lowered, error) {
	from, ok := a[AnnotationLoweredFrom]
	if !ok {
		return nil, nil
	}
	l := &Lowered{From: from, To: a[AnnotationLoweredTo], At: a[AnnotationLoweredAt], Node: a[AnnotationLoweredNode], Reason: a[AnnotationLoweredReason]}
	l.RestoringAt, l.Restoring = a[AnnotationLoweredRestoringAt]
	for _, f := range []string{l.From, l.To} {
		if _, err := ops.ParseFraction(f); err != nil {
			return nil, fmt.Errorf("has a broken lower-memory record (%s=%q, %s=%q): %w; set %s by hand and remove the gpuslice.io/lowered-* annotations",
				AnnotationLoweredFrom, l.From, AnnotationLoweredTo, l.To, err, "GPU_MEMORY_UTILIZATION")
		}
	}
	for _, ts := range []string{l.At, l.RestoringAt} {
		if _, err := time.Parse(time.RFC3339, ts); ts != "" && err != nil || ts == "" && ts == l.At {
			return nil, fmt.Errorf("has a broken lower-memory record (%s=%q): want an RFC 3339 time; remove the gpuslice.io/lowered-* annotations and set GPU_MEMORY_UTILIZATION by hand", AnnotationLoweredAt, ts)
		}
	}
	return l, nil
}

// difference is the memory a restore gives back on one GPU.
func (l *Lowered) difference(gpuMemory int64) int64 {
	from, _ := strconv.ParseFloat(l.From, 64)
	to, _ := strconv.ParseFloat(l.To, 64)
	return int64((from - to) * float64(gpuMemory))
}

// restartStamp is the restart time the current phase writes to the pod
// template.
func (l *Lowered) restartStamp() string {
	if l.Restoring {
		return l.RestoringAt
	}
	return l.At
}

// rolledOut says whether the workload's pods run with the current
// phase's fraction: restarted at the stamp, and the rollout finished.
func (l *Lowered) rolledOut(w *Workload) bool {
	return w.Template.Annotations[ops.AnnotationRestartedAt] == l.restartStamp() && w.RolledOut
}
