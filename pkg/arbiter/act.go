package arbiter

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/ops"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// holdSuspend is a CronJob's hold in the journal: its scale to zero
// suspends it and its running Jobs.
const holdSuspend = "suspend"

// holdAction is what a hold of ref says was done, as gpuslice history
// shows it.
func holdAction(ref workload.Ref, action policy.Action) string {
	if ref.Kind == workload.KindCronJob && action == policy.ActionScaleToZero {
		return holdSuspend
	}
	return string(action)
}

// Event reasons on the workloads the arbiter acts on.
const (
	ReasonPreempted     = "Preempted"
	ReasonRestored      = "Restored"
	ReasonWouldPreempt  = "WouldPreempt"
	ReasonWouldRestore  = "WouldRestore"
	ReasonStepFailed    = "ArbiterStepFailed"
	ReasonInvalidPolicy = "InvalidPolicy"
	// ReasonPolicyAdjusted: the policy is carried out otherwise than its
	// annotations ask, since as asked it would fail (clusterview's
	// Workload.Adjusted).
	ReasonPolicyAdjusted = "PolicyAdjusted"
	// ReasonTranscodeFellBack is on the protected workload: a transcode
	// that asked for the GPU runs on the CPU.
	ReasonTranscodeFellBack = "TranscodeFellBack"
)

func (c *Controller) checkpoint(name string) {
	if c.opts.Checkpoint != nil {
		c.opts.Checkpoint(name)
	}
}

// apply takes one step. Each step's write carries its own record (the
// replicas to restore, or the lower-memory intent) so that a crash after
// any write leaves the cluster in a state Plan reads correctly.
func (c *Controller) apply(ctx context.Context, st Step, cluster *clusterview.Cluster) error {
	w := st.Workload
	obj := cluster.Object(w.Ref)
	log := c.opts.Log.With("node", st.Node, "workload", w.Ref.Qualified(), "step", st.Kind)
	if c.opts.DryRun {
		c.metrics.steps.WithLabelValues(st.Kind, "dry_run", workloadLabel(w.Ref)).Inc()
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

	entry := journal.Entry{Action: st.Kind, Workload: w.Ref, Node: st.Node, Reason: st.Reason}
	if st.Kind == StepPreempt {
		// The hold first: a record on the workload is the arbiter's only
		// if its journal holds it, so a crash after the workload's write
		// must find the hold there.
		hold := journal.Hold{Workload: w.Ref, Action: holdAction(w.Ref, w.Policy.Action), Node: st.Node, At: c.opts.Now().UTC(), Reason: st.Reason}
		if err := c.record(ctx, func(j *journal.Journal) { j.Hold(hold) }); err != nil {
			return c.stepFailed(ctx, st, obj, entry, log, err)
		}
		c.holdSeen[w.Ref] = time.Now()
	}
	c.checkpoint("before-" + st.Kind)
	msg, changed, err := c.write(ctx, st)
	if err != nil {
		return c.stepFailed(ctx, st, obj, entry, log, err)
	}
	c.checkpoint("after-" + st.Kind)
	if !changed {
		c.metrics.steps.WithLabelValues(st.Kind, "unchanged", workloadLabel(w.Ref)).Inc()
		return nil
	}
	c.metrics.steps.WithLabelValues(st.Kind, "done", workloadLabel(w.Ref)).Inc()
	log.Info(msg, "reason", st.Reason)
	entry.Message = msg
	reason := ReasonPreempted
	if st.Kind == StepRestore {
		reason = ReasonRestored
		c.memo.Restored(st.Node, w.Ref)
		c.recordEntry(ctx, entry, func(j *journal.Journal) { j.Release(w.Ref) })
	} else {
		c.memo.Preempted(st.Node, w.Ref, c.opts.Now())
		c.recordEntry(ctx, entry, nil)
	}
	c.event(obj, corev1.EventTypeNormal, reason, "%s (node %s: %s)", msg, st.Node, st.Reason)
	c.checkpoint("evented-" + st.Kind)
	return nil
}

// stepFailed reports a step whose write failed, in the log, an Event,
// the metrics and the journal's history.
func (c *Controller) stepFailed(ctx context.Context, st Step, obj runtime.Object, entry journal.Entry, log *slog.Logger, err error) error {
	w := st.Workload
	c.metrics.steps.WithLabelValues(st.Kind, "error", workloadLabel(w.Ref)).Inc()
	log.Error("step failed", "error", err)
	c.event(obj, corev1.EventTypeWarning, ReasonStepFailed, "gpuslice arbiter could not %s for node %s: %v", st.Kind, st.Node, err)
	entry.Action, entry.Message = journal.ActionFailed, fmt.Sprintf("could not %s: %v", st.Kind, err)
	c.recordEntry(ctx, entry, nil)
	return fmt.Errorf("%s %s: %w", st.Kind, w.Ref.Qualified(), err)
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
		res, err := ops.Lower(ctx, c.opts.Client, w.Ref, c.lowerOptions(st, w.Policy.Fraction))
		return res.Message, err == nil, err
	case st.Kind == StepPreempt:
		res, err := ops.Release(ctx, c.opts.Client, w.Ref, ops.ReleaseOptions{By: c.opts.Config.Identity, Reason: st.Reason, Node: st.Node, Now: c.opts.Now()})
		return res.Message, res.Changed(), err
	case w.Lowered != nil:
		res, err := ops.Raise(ctx, c.opts.Client, w.Ref, *w.Lowered, c.lowerOptions(st, ""))
		return res.Message, err == nil, err
	default:
		res, err := ops.Restore(ctx, c.opts.Client, w.Ref, ops.RestoreOptions{OnlyBy: c.opts.Config.Identity})
		return res.Message, res.Changed(), err
	}
}

// lowerOptions are the arbiter's for ops.Lower and ops.Raise.
func (c *Controller) lowerOptions(st Step, fraction string) ops.LowerOptions {
	return ops.LowerOptions{Fraction: fraction, Node: st.Node, Reason: st.Reason, Now: c.opts.Now(), Checkpoint: c.opts.Checkpoint}
}
