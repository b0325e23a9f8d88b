package workload

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// EnvGPUMemoryUtilization is vLLM's GPU memory fraction, as the seed's
// manifests pass it (--gpu-memory-utilization=$(GPU_MEMORY_UTILIZATION)).
const EnvGPUMemoryUtilization = "GPU_MEMORY_UTILIZATION"

// ParseFraction checks a GPU_MEMORY_UTILIZATION value: vLLM's share of
// one GPU's memory, in (0, 1].
func ParseFraction(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f > 1 {
		return 0, fmt.Errorf("fraction %q: want a number in (0, 1], the share of one GPU's memory the workload may take, e.g. 0.6", s)
	}
	return f, nil
}

// The lower record: annotations the arbiter writes on a workload it
// preempts with lower-memory, before it changes anything: the intent a
// restarted arbiter finishes.
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

// LowerAnnotations are every annotation of the lower record.
var LowerAnnotations = []string{AnnotationLoweredFrom, AnnotationLoweredTo, AnnotationLoweredAt, AnnotationLoweredNode, AnnotationLoweredReason, AnnotationLoweredRestoringAt}

// LowerRecord is a lower-memory preemption: GPU_MEMORY_UTILIZATION went
// from From to To at At (RFC 3339, also the restart time written to the
// pod template, which is how a restarted arbiter tells whether the
// restart happened). While Restoring, it goes back to From with a restart
// at RestoringAt.
type LowerRecord struct {
	From        string `json:"from"`
	To          string `json:"to"`
	At          string `json:"at"`
	Node        string `json:"node,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Restoring   bool   `json:"restoring,omitempty"`
	RestoringAt string `json:"restoringAt,omitempty"`
}

// ParseLowerRecord reads the lower record from a workload's annotations:
// nil when it is not lowered.
func ParseLowerRecord(a map[string]string) (*LowerRecord, error) {
	from, ok := a[AnnotationLoweredFrom]
	if !ok {
		return nil, nil
	}
	l := &LowerRecord{From: from, To: a[AnnotationLoweredTo], At: a[AnnotationLoweredAt], Node: a[AnnotationLoweredNode], Reason: a[AnnotationLoweredReason]}
	l.RestoringAt, l.Restoring = a[AnnotationLoweredRestoringAt]
	for _, f := range []string{l.From, l.To} {
		if _, err := ParseFraction(f); err != nil {
			return nil, fmt.Errorf("has a broken lower-memory record (%s=%q, %s=%q): %w; set %s by hand and remove the gpuslice.io/lowered-* annotations",
				AnnotationLoweredFrom, l.From, AnnotationLoweredTo, l.To, err, EnvGPUMemoryUtilization)
		}
	}
	for _, ts := range []string{l.At, l.RestoringAt} {
		if _, err := time.Parse(time.RFC3339, ts); ts != "" && err != nil || ts == "" && ts == l.At {
			return nil, fmt.Errorf("has a broken lower-memory record (%s=%q): want an RFC 3339 time; remove the gpuslice.io/lowered-* annotations and set %s by hand", AnnotationLoweredAt, ts, EnvGPUMemoryUtilization)
		}
	}
	return l, nil
}

// Annotations are the record's intent as written when lowering: the
// restore mark (AnnotationLoweredRestoringAt) is written on its own.
func (l *LowerRecord) Annotations() map[string]string {
	return map[string]string{
		AnnotationLoweredFrom: l.From, AnnotationLoweredTo: l.To, AnnotationLoweredAt: l.At,
		AnnotationLoweredNode: l.Node, AnnotationLoweredReason: l.Reason,
	}
}

// Fraction is the GPU_MEMORY_UTILIZATION of the current phase: To while
// lowered, From while restoring.
func (l *LowerRecord) Fraction() string {
	if l.Restoring {
		return l.From
	}
	return l.To
}

// PhaseRestart is the restart time the current phase writes to the pod
// template: At while lowering, RestoringAt while restoring.
func (l *LowerRecord) PhaseRestart() string {
	if l.Restoring {
		return l.RestoringAt
	}
	return l.At
}

// Difference is the memory a restore gives back on one GPU of gpuMemory
// bytes.
func (l *LowerRecord) Difference(gpuMemory int64) int64 {
	from, _ := strconv.ParseFloat(l.From, 64)
	to, _ := strconv.ParseFloat(l.To, 64)
	return int64((from - to) * float64(gpuMemory))
}
