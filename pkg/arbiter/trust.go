package arbiter

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/policy"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Event reasons about what the arbiter will not believe or wait for.
const (
	// ReasonUntrustedPolicy: the workload's own annotations claim more
	// standing than they may (protected, a priority above its class).
	ReasonUntrustedPolicy = "UntrustedPolicy"
	// ReasonUntrustedRecord: a release or lower record the arbiter did
	// not write.
	ReasonUntrustedRecord = "UntrustedRecord"
	// ReasonPreemptionStuck: a preemption did not take effect in time.
	ReasonPreemptionStuck = "PreemptionStuck"
)

// record changes the journal and writes it through; in a dry run it
// changes only the copy in memory.
func (c *Controller) record(ctx context.Context, mutate func(*journal.Journal)) error {
	if c.opts.DryRun {
		mutate(c.journal.current)
		return nil
	}
	return c.journal.change(ctx, mutate)
}

// recordEntry adds one decision to the history; a failure is logged, as
// the decision itself is done.
func (c *Controller) recordEntry(ctx context.Context, e journal.Entry, also func(*journal.Journal)) {
	e.At = c.opts.Now().UTC()
	err := c.record(ctx, func(j *journal.Journal) {
		if also != nil {
			also(j)
		}
		j.Record(e)
	})
	if err != nil {
		c.opts.Log.Error("could not record the decision in the journal", "workload", e.Workload.Qualified(), "action", e.Action, "error", err)
	}
}

// syncJournal reads the journal when this replica starts leading, and
// forgets holds whose record is gone (restored or released by someone
// else). A cluster without a journal yet (a new install, or an upgrade
// from an arbiter that kept none) adopts the arbiter records it finds,
// once: from then on a record is the arbiter's only if the journal holds it.
func (c *Controller) syncJournal(ctx context.Context, v *clusterview.View) error {
	now := time.Now()
	if c.journal.current == nil {
		found, err := c.journal.load(ctx)
		if err != nil {
			return err
		}
		c.holdSeen = map[workload.Ref]time.Time{}
		for _, h := range c.journal.current.Held {
			c.holdSeen[h.Workload] = now
		}
		if !found {
			if err := c.record(ctx, func(j *journal.Journal) { c.adopt(j, v) }); err != nil {
				c.journal.current = nil
				return err
			}
		}
	}
	var stale []workload.Ref
	for _, h := range c.journal.current.Held {
		w := v.Find(h.Workload)
		gone := w == nil || (w.Record == nil || w.Record.By != c.opts.Config.Identity) && w.Lowered == nil
		// Wall time, not the policy clock: the informer cache may not
		// show a record just written.
		if gone && now.Sub(c.holdSeen[h.Workload]) > staleFor {
			stale = append(stale, h.Workload)
		}
	}
	for _, ref := range stale {
		c.recordEntry(ctx, journal.Entry{Action: journal.ActionDropped, Workload: ref,
			Message: "its arbiter record is gone: restored or released by someone else; no longer held"},
			func(j *journal.Journal) { j.Release(ref) })
	}
	return nil
}

// adopt holds every arbiter record in v: the journal's first contents.
func (c *Controller) adopt(j *journal.Journal, v *clusterview.View) {
	at := c.opts.Now().UTC()
	for _, w := range v.Workloads {
		h := journal.Hold{Workload: w.Ref, At: at, Reason: "adopted when the journal was created"}
		switch {
		case w.Record != nil && w.Record.By == c.opts.Config.Identity:
			h.Action, h.Node = holdAction(w.Ref, policy.ActionScaleToZero), w.Record.Node
		case w.Lowered != nil:
			h.Action, h.Node = string(policy.ActionLowerMemory), w.Lowered.Node
		default:
			continue
		}
		j.Hold(h)
		c.holdSeen[w.Ref] = time.Now()
	}
}

// reportUntrusted warns, once per change, about workloads whose
// annotations claim more than they may: protection or a priority their
// namespace may not give itself, or an arbiter record the arbiter did not
// write; and about policies carried out otherwise than asked.
func (c *Controller) reportUntrusted(ctx context.Context, v *clusterview.View, sig Signals, cluster *clusterview.Cluster) {
	for _, w := range v.Workloads {
		if len(w.Ignored) > 0 {
			msg := "gpuslice arbiter ignores what this workload's own annotations claim: " + strings.Join(w.Ignored, "; ")
			c.warnOnce(ctx, "untrusted-policy/"+w.Ref.Qualified(), w.Ref, cluster, ReasonUntrustedPolicy, msg)
		}
		if len(w.Adjusted) > 0 {
			c.warnOnce(ctx, "adjusted-policy/"+w.Ref.Qualified(), w.Ref, cluster, ReasonPolicyAdjusted, strings.Join(w.Adjusted, "; "))
		}
		claimed := w.Record != nil && w.Record.By == c.opts.Config.Identity || w.Lowered != nil
		if _, held := sig.Held[w.Ref]; claimed && !held {
			msg := fmt.Sprintf("carries a %s record the arbiter did not write (its journal, %s, does not hold it): the arbiter neither waits for it nor restores it; "+
				"gpuslice restore %s undoes it", c.opts.Config.Identity, c.journal.ref, w.Ref.KubectlArgs())
			c.warnOnce(ctx, "untrusted-record/"+w.Ref.Qualified(), w.Ref, cluster, ReasonUntrustedRecord, msg)
		}
	}
}

// reportOverdue says, once per preemption, that it did not take effect in
// time and the arbiter went on without it.
func (c *Controller) reportOverdue(ctx context.Context, v *clusterview.View, sig Signals, status []NodeStatus, cluster *clusterview.Cluster) {
	for _, st := range status {
		for _, ref := range st.Overdue {
			h := sig.Held[ref]
			what := "its pods are still there"
			if w := v.Find(ref); w != nil && w.Lowered != nil {
				what = "its restart has not rolled out"
			}
			msg := fmt.Sprintf("preempted at %s for node %s, but %s after %s: the arbiter goes on to the next step; check why (finalizers, a stuck node, kubectl describe)",
				h.At.UTC().Format(time.RFC3339), st.Node, what, c.opts.Config.PreemptTimeout)
			c.warnOnce(ctx, "overdue/"+ref.Qualified()+"/"+h.At.String(), ref, cluster, ReasonPreemptionStuck, msg)
		}
	}
}

// warnOnce logs, events and records msg unless it was the last said
// under key.
func (c *Controller) warnOnce(ctx context.Context, key string, ref workload.Ref, cluster *clusterview.Cluster, reason, msg string) {
	if c.reported[key] == msg {
		return
	}
	c.reported[key] = msg
	c.opts.Log.Warn(msg, "workload", ref.Qualified(), "reason", reason)
	c.event(cluster.Object(ref), corev1.EventTypeWarning, reason, "%s", msg)
	action := journal.ActionUntrusted
	switch reason {
	case ReasonPreemptionStuck:
		action = journal.ActionStuck
	case ReasonPolicyAdjusted:
		action = journal.ActionAdjusted
	}
	c.recordEntry(ctx, journal.Entry{Action: action, Workload: ref, Reason: reason, Message: msg}, nil)
}
