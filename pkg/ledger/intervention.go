package ledger

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// ManagedWorkload is a Deployment, StatefulSet or CronJob as the ledger
// reads it for gpuslice's records: a released one has no pods to count.
type ManagedWorkload struct {
	Ref         workload.Ref
	Annotations map[string]string
	// Replicas is spec.replicas; a CronJob's 0 when suspended, else 1.
	Replicas int32
}

// What a workload's record says was done to it.
const (
	ActionReleased = "released" // scaled to zero, replicas remembered
	ActionLowered  = "lowered"  // GPU_MEMORY_UTILIZATION lowered and restarted
	// ActionSuspended is a released CronJob: it and its running Jobs
	// suspended.
	ActionSuspended = "suspended"
)

// Intervention is a workload gpuslice released or lowered (the arbiter or
// a person): without it in the report, a released workload would vanish
// from the share table with its pods.
type Intervention struct {
	Workload workload.Ref `json:"workload"`
	Action   string       `json:"action"`
	// Detail is what changed: "1 → 0 replicas", "GPU_MEMORY_UTILIZATION 0.70 → 0.30".
	Detail string `json:"detail"`
	By     string `json:"by,omitempty"`
	At     string `json:"at,omitempty"`
	Reason string `json:"reason,omitempty"`
	Node   string `json:"node,omitempty"`
	// Undo is the command that undoes it.
	Undo string `json:"undo"`
}

// arbiterName is who the lower record's changes are by: only the
// arbiter writes it.
const arbiterName = "gpuslice arbiter"

// interventions reads the release and lower records of ws (with node set,
// those for that node or none); a record that does not parse becomes a
// warning naming the fix.
func interventions(ws []ManagedWorkload, listed func(string) bool, node string, warnings *[]string) []Intervention {
	var out []Intervention
	add := func(iv Intervention) {
		if node == "" || iv.Node == "" || iv.Node == node {
			out = append(out, iv)
		}
	}
	for _, w := range ws {
		if !listed(w.Ref.Namespace) {
			continue
		}
		args := w.Ref.KubectlArgs()
		rec, err := workload.ParseReleaseRecord(w.Annotations)
		if err != nil {
			*warnings = append(*warnings, fmt.Sprintf("%s %v", w.Ref.Qualified(), err))
		} else if rec != nil {
			iv := Intervention{
				Workload: w.Ref, Action: ActionReleased, Detail: fmt.Sprintf("%d → %d replicas", rec.Replicas, w.Replicas),
				By: rec.By, At: rec.At, Reason: rec.Reason, Node: rec.Node, Undo: "gpuslice restore " + args,
			}
			if w.Ref.Kind == workload.KindCronJob {
				iv.Action, iv.Detail = ActionSuspended, "the CronJob and its running Jobs"
				if rec.Replicas == 0 {
					iv.Detail = "its running Jobs (the CronJob was suspended before)"
				}
			}
			add(iv)
		}
		low, err := workload.ParseLowerRecord(w.Annotations)
		if err != nil {
			*warnings = append(*warnings, fmt.Sprintf("%s %v", w.Ref.Qualified(), err))
			continue
		}
		if low == nil {
			continue
		}
		detail := fmt.Sprintf("%s %s → %s", workload.EnvGPUMemoryUtilization, low.From, low.To)
		if low.Restoring {
			detail += fmt.Sprintf(", going back to %s since %s", low.From, low.RestoringAt)
		}
		add(Intervention{
			Workload: w.Ref, Action: ActionLowered, Detail: detail, By: arbiterName, At: low.At, Reason: low.Reason, Node: low.Node,
			Undo: "gpuslice restore " + args + " (or wait: the arbiter raises it after its hold-down)",
		})
	}
	slices.SortFunc(out, func(a, b Intervention) int {
		return cmp.Or(cmp.Compare(a.Workload.Namespace, b.Workload.Namespace), cmp.Compare(a.Workload.Name, b.Workload.Name),
			cmp.Compare(a.Workload.Kind, b.Workload.Kind), cmp.Compare(a.Action, b.Action))
	})
	return out
}
