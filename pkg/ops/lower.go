package ops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// LowerOptions configure Lower and Raise.
type LowerOptions struct {
	// Fraction is the GPU_MEMORY_UTILIZATION to lower to (Lower only).
	Fraction string
	// Node and Reason are recorded: the node whose GPU is being freed,
	// and why.
	Node, Reason string
	// Now is the time the phase restarts at; zero means time.Now().
	Now time.Time
	// Checkpoint, when set, is called between the writes ("intent-lower",
	// "fraction-set", "intent-raise"): fault-injection tests stop the
	// process there.
	Checkpoint func(name string)
}

func (o LowerOptions) checkpoint(name string) {
	if o.Checkpoint != nil {
		o.Checkpoint(name)
	}
}

// LowerResult is what Lower or Raise did.
type LowerResult struct {
	Workload workload.Ref          `json:"workload"`
	Action   string                `json:"action"`
	Record   *workload.LowerRecord `json:"record"`
	Message  string                `json:"message"`
}

// Actions a LowerResult reports.
const (
	ActionLowered = "lowered"
	ActionRaised  = "raised"
)

// ErrLowered is returned (wrapped) by Lower for a workload that already
// carries a lower record.
var ErrLowered = errors.New("workload is already lowered")

// Lower preempts a workload by its GPU memory: it writes the lower record
// first (from, to, when: the intent), then sets GPU_MEMORY_UTILIZATION to
// opts.Fraction and restarts the workload stamped with the record's time.
// A crash between the writes leaves a record that FinishLower completes.
func Lower(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, opts LowerOptions) (LowerResult, error) {
	res := LowerResult{Workload: ref}
	plan, err := TuneMemory(ctx, cs, ref, MemoryOptions{Fraction: opts.Fraction, DryRun: true, NoBytes: true})
	if err != nil {
		return res, err
	}
	if len(plan.Settings) == 0 {
		return res, fmt.Errorf("%s sets no %s to lower: use %s=scale-to-zero", ref.Qualified(), workload.EnvGPUMemoryUtilization, workload.AnnotationPreemptAction)
	}
	at, err := nextRestartStamp(ctx, cs, ref, opts.Now)
	if err != nil {
		return res, err
	}
	rec := &workload.LowerRecord{From: plan.Settings[0].Old, To: opts.Fraction, At: at, Node: opts.Node, Reason: opts.Reason}
	_, err = Annotate(ctx, cs, ref, rec.Annotations(), nil, func(a map[string]string) error {
		if _, ok := a[workload.AnnotationLoweredFrom]; ok {
			return fmt.Errorf("%s: %w", ref.Qualified(), ErrLowered)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	opts.checkpoint("intent-lower")
	if err := FinishLower(ctx, cs, ref, rec, opts); err != nil {
		return res, err
	}
	res.Action, res.Record = ActionLowered, rec
	res.Message = fmt.Sprintf("%s lowered: %s %s → %s, restarted; remembered in %s", ref.Qualified(), workload.EnvGPUMemoryUtilization, rec.From, rec.To, workload.AnnotationLoweredFrom)
	return res, nil
}

// Raise undoes Lower: it marks the restore under way (the restart time
// of the way back), sets GPU_MEMORY_UTILIZATION back to the record's From
// with a restart, then removes the record. A crash in between leaves a
// record that FinishLower completes.
func Raise(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, rec workload.LowerRecord, opts LowerOptions) (LowerResult, error) {
	res := LowerResult{Workload: ref}
	at, err := nextRestartStamp(ctx, cs, ref, opts.Now)
	if err != nil {
		return res, err
	}
	if _, err := Annotate(ctx, cs, ref, map[string]string{workload.AnnotationLoweredRestoringAt: at}, nil, nil); err != nil {
		return res, err
	}
	opts.checkpoint("intent-raise")
	rec.Restoring, rec.RestoringAt = true, at
	if err := FinishLower(ctx, cs, ref, &rec, opts); err != nil {
		return res, err
	}
	res.Action, res.Record = ActionRaised, &rec
	res.Message = fmt.Sprintf("%s restored: %s %s → %s, restarted", ref.Qualified(), workload.EnvGPUMemoryUtilization, rec.To, rec.From)
	return res, nil
}

// FinishLower brings a workload to what its lower record says: the
// fraction of the current phase, a restart stamped with the phase's time,
// and, for a finished restore, no record. Each write is skipped when the
// stored object already has it, so it finishes a step a crash cut short.
func FinishLower(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, rec *workload.LowerRecord, opts LowerOptions) error {
	stamp := rec.PhaseRestart()
	w, err := getWorkload(ctx, cs, ref)
	if err != nil {
		return err
	}
	if w.template.Annotations[workload.AnnotationRestartedAt] != stamp {
		at, err := time.Parse(time.RFC3339, stamp)
		if err != nil {
			return fmt.Errorf("%s: %w", ref.Qualified(), err)
		}
		res, err := TuneMemory(ctx, cs, ref, MemoryOptions{Fraction: rec.Fraction(), Now: at, NoBytes: true})
		if err != nil {
			return err
		}
		opts.checkpoint("fraction-set")
		if !res.Changed {
			// The value was written before a crash, the restart not.
			if _, err := RestartAt(ctx, cs, ref, at); err != nil {
				return err
			}
		}
	}
	if rec.Restoring {
		_, err := Annotate(ctx, cs, ref, nil, workload.LowerAnnotations, nil)
		return err
	}
	return nil
}

// nextRestartStamp is NextRestart in the pod template's format: never the
// stored time, or a restart made earlier in the same second would pass
// for this phase's.
func nextRestartStamp(ctx context.Context, cs kubernetes.Interface, ref workload.Ref, now time.Time) (string, error) {
	if now.IsZero() {
		now = time.Now()
	}
	at, err := NextRestart(ctx, cs, ref, now)
	return at.Format(time.RFC3339), err
}
