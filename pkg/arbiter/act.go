package arbiter

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Event reasons on the workloads the arbiter acts on.
const (
	ReasonPreempted     = "Preempted"
	ReasonRestored      = "Restored"
	ReasonWouldPreempt  = "WouldPreempt"
	ReasonWouldRestore  = "WouldRestore"
	ReasonStepFailed    = "ArbiterStepFailed"
	ReasonInvalidPolicy = "InvalidPolicy"
)

func (c *Controller) checkpoint(name string) {
	if c.opts.Checkpoint != nil {
		c.opts.Checkpoint(name)
	}
}

// apply takes one step. Each step's write carries its own record (the
// replicas to restore, or the lower-memory intent) so that a crash after
// any write leaves the cluster in a state Plan reads correctly.
func (c *Controller) apply(ctx context.Context, st Step, cluster *Cluster) error {
	w := st.Workload
	obj := cluster.Object(w.Ref)
	log := c.opts.Log.With("node", st.Node, "workload", w.Ref.Qualified(), "step", st.Kind)
	if c.opts.DryRun {
		c.metrics.steps.WithLabelValues(st.Kind, "dry_run").Inc()
		key := "dry/" + w.Ref.Qualified()
		if c.reported[key] != st.Kind+st.Reason {
			c.reported[key] = st.Kind + st.Reason
			log.Info("dry run: would "+st.Kind, "reason", st.Reason)
			reason := ReasonWouldPreempt
			if st.Kind == StepRestore {
				reason = ReasonWouldRestore
			}
			c.event(obj, corev1.EventTypeNormal, reason, "dry run: would %s for node %s: %s", st.Kind, st.Node, st.Reason)
		}
		return nil
	}

	c.checkpoint("before-" + st.Kind)
	msg, changed, err := c.write(ctx, st)
	if err != nil {
		c.metrics.steps.WithLabelValues(st.Kind, "error").Inc()
		log.Error("step failed", "error", err)
		c.event(obj, corev1.EventTypeWarning, ReasonStepFailed, "gpuslice arbiter could not %s for node %s: %v", st.Kind, st.Node, err)
		return fmt.Errorf("%s %s: %w", st.Kind, w.Ref.Qualified(), err)
	}
	c.checkpoint("after-" + st.Kind)
	if !changed {
		c.metrics.steps.WithLabelValues(st.Kind, "unchanged").Inc()
		return nil
	}
	c.metrics.steps.WithLabelValues(st.Kind, "done").Inc()
	log.Info(msg, "reason", st.Reason)
	reason := ReasonPreempted
	if st.Kind == StepRestore {
		reason = ReasonRestored
		c.memo.Restored(st.Node, w.Ref)
	} else {
		c.memo.Preempted(st.Node, w.Ref, c.opts.Now())
	}
	c.event(obj, corev1.EventTypeNormal, reason, "%s (node %s: %s)", msg, st.Node, st.Reason)
	c.checkpoint("evented-" + st.Kind)
	return nil
}

// event records on the workload; one gone from the cache gets none.
func (c *Controller) event(obj runtime.Object, kind, reason, format string, args ...any) {
	if obj != nil && c.recorder != nil {
		c.recorder.Eventf(obj, kind, reason, format, args...)
	}
}

// write does the step's writes and says what changed.
func (c *Controller) write(ctx context.Context, st Step) (string, bool, error) {
	w := st.Workload
	switch {
	case st.Kind == StepPreempt && w.Policy.Action == policy.ActionLowerMemory:
		return c.lower(ctx, st)
	case st.Kind == StepPreempt:
		res, err := ops.Release(ctx, c.opts.Client, w.Ref, ops.ReleaseOptions{By: c.opts.Config.Identity, Reason: st.Reason, Node: st.Node, Now: c.opts.Now()})
		return res.Message, res.Changed(), err
	case w.Lowered != nil:
		return c.raise(ctx, st)
	default:
		res, err := ops.Restore(ctx, c.opts.Client, w.Ref, ops.RestoreOptions{OnlyBy: c.opts.Config.Identity})
		return res.Message, res.Changed(), err
	}
}

// lower preempts by GPU_MEMORY_UTILIZATION: first the intent (from, to,
// when), then the change, which convergeLowered finishes after a crash.
func (c *Controller) lower(ctx context.Context, st Step) (string, bool, error) {
	w := st.Workload
	plan, err := ops.TuneMemory(ctx, c.opts.Client, w.Ref, ops.MemoryOptions{Fraction: w.Policy.Fraction, DryRun: true, NoBytes: true})
	if err != nil {
		return "", false, err
	}
	if len(plan.Settings) == 0 {
		return "", false, fmt.Errorf("%s sets no GPU_MEMORY_UTILIZATION to lower: use %s=%s", w.Ref.Qualified(), workload.AnnotationPreemptAction, policy.ActionScaleToZero)
	}
	from := plan.Settings[0].Old
	at, err := c.restartStamp(ctx, w.Ref)
	if err != nil {
		return "", false, err
	}
	l := &workload.LowerRecord{From: from, To: w.Policy.Fraction, At: at, Node: st.Node, Reason: st.Reason}
	_, err = ops.Annotate(ctx, c.opts.Client, w.Ref, map[string]string{
		workload.AnnotationLoweredFrom: l.From, workload.AnnotationLoweredTo: l.To, workload.AnnotationLoweredAt: l.At,
		workload.AnnotationLoweredNode: l.Node, workload.AnnotationLoweredReason: l.Reason,
	}, nil, func(a map[string]string) error {
		if _, ok := a[workload.AnnotationLoweredFrom]; ok {
			return fmt.Errorf("%s is already lowered", w.Ref.Qualified())
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	c.checkpoint("intent-lower")
	lw := *w
	lw.Lowered = l
	if err := c.convergeLowered(ctx, &lw); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("%s lowered: GPU_MEMORY_UTILIZATION %s → %s, restarted; remembered in %s", w.Ref.Qualified(), l.From, l.To, workload.AnnotationLoweredFrom), true, nil
}

// raise restores a lowered workload: mark the restore, set the fraction
// back, then drop the record.
func (c *Controller) raise(ctx context.Context, st Step) (string, bool, error) {
	w := st.Workload
	at, err := c.restartStamp(ctx, w.Ref)
	if err != nil {
		return "", false, err
	}
	if _, err := ops.Annotate(ctx, c.opts.Client, w.Ref, map[string]string{workload.AnnotationLoweredRestoringAt: at}, nil, nil); err != nil {
		return "", false, err
	}
	c.checkpoint("intent-raise")
	lw := *w
	l := *w.Lowered
	l.Restoring, l.RestoringAt = true, at
	lw.Lowered = &l
	if err := c.convergeLowered(ctx, &lw); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("%s restored: GPU_MEMORY_UTILIZATION %s → %s, restarted", w.Ref.Qualified(), l.To, l.From), true, nil
}

// restartStamp is the time a lower-memory phase restarts at, in the
// pod template's format: never the stored one, or a restart made earlier
// in the same second would pass for this phase's.
func (c *Controller) restartStamp(ctx context.Context, ref workload.Ref) (string, error) {
	at, err := ops.NextRestart(ctx, c.opts.Client, ref, c.opts.Now())
	return at.Format(time.RFC3339), err
}

// convergeLowered brings a workload to what its lower-memory record
// says: the fraction of the current phase, a restart stamped with the
// phase's time, and, for a finished restore, no record.
func (c *Controller) convergeLowered(ctx context.Context, w *Workload) error {
	l := w.Lowered
	fraction := l.To
	if l.Restoring {
		fraction = l.From
	}
	stamp := l.PhaseRestart()
	if w.Template.Annotations[workload.AnnotationRestartedAt] != stamp {
		at, err := time.Parse(time.RFC3339, stamp)
		if err != nil {
			return fmt.Errorf("%s: %w", w.Ref.Qualified(), err)
		}
		res, err := ops.TuneMemory(ctx, c.opts.Client, w.Ref, ops.MemoryOptions{Fraction: fraction, Now: at, NoBytes: true})
		if err != nil {
			return err
		}
		c.checkpoint("fraction-set")
		if !res.Changed {
			// The value was written before a crash, the restart not.
			if _, err := ops.RestartAt(ctx, c.opts.Client, w.Ref, at); err != nil {
				return err
			}
		}
	}
	if l.Restoring {
		_, err := ops.Annotate(ctx, c.opts.Client, w.Ref, nil, workload.LowerAnnotations, nil)
		return err
	}
	return nil
}
