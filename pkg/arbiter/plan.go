package arbiter

import (
	"fmt"
	"maps"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/gpuslice/gpuslice/pkg/clusterview"
	"github.com/gpuslice/gpuslice/pkg/journal"
	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/signals"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Config are the arbiter's thresholds.
type Config struct {
	// MinFree: a GPU with less free memory than this is under pressure.
	MinFree int64
	// Margin is the hysteresis: the pressure is over only when every GPU
	// has MinFree+Margin free, and a workload comes back only if the GPU
	// keeps that much after its expected memory returns.
	Margin int64
	// HoldDown is how long a node must stay clear before a restore, for
	// workloads without their own gpuslice.io/hold-down.
	HoldDown time.Duration
	// UnhealthyGrace is how long a protected workload may be unhealthy
	// (a restart, a rollout) before it counts as a trigger.
	UnhealthyGrace time.Duration
	// Identity is what the arbiter writes as released-by; releases by
	// anyone else are an operator's and are left alone.
	Identity string
	// PreemptTimeout bounds the wait for a preemption to take effect (the
	// pods gone, the restart rolled out); past it the arbiter says so and
	// takes the next step. 0: no bound.
	PreemptTimeout time.Duration
	// Protected are the workloads the arbiter's configuration protects;
	// TrustedNamespaces those whose workloads' annotations are believed
	// in full (policy.Trust). The protected workloads of activity sources
	// are added by New.
	Protected         []workload.Ref
	TrustedNamespaces []string
}

// Signals are one sample of everything the arbiter watches.
type Signals struct {
	Now time.Time
	// Memory is by node; a node without an entry is unknown. Sample
	// numbers the samples, rising. MemoryWatched is false when no memory
	// source is configured at all, and then memory is neither a trigger
	// nor a condition of restoring.
	Memory        map[string][]signals.GPUMemory
	Sample        uint64
	MemoryWatched bool
	// Activity is by protected workload.
	Activity map[workload.Ref]signals.Activity
	// Held are the preemptions the arbiter's journal says it holds: a
	// release or lower record on a workload is the arbiter's only if it
	// is here, whatever its released-by says.
	Held map[workload.Ref]journal.Hold
}

// ours says whether w's release or lower record is the arbiter's own.
func ours(w *clusterview.Workload, sig Signals, cfg Config) bool {
	_, held := sig.Held[w.Ref]
	return held && (w.Record == nil || w.Record.By == cfg.Identity)
}

// overdue says whether the arbiter has waited for its preemption of w to
// take effect longer than it may.
func overdue(w *clusterview.Workload, sig Signals, cfg Config) bool {
	h, ok := sig.Held[w.Ref]
	return ok && cfg.PreemptTimeout > 0 && sig.Now.Sub(h.At) >= cfg.PreemptTimeout
}

// Memo is what the arbiter remembers between rounds. It is not
// persisted: after a restart a node's hold-down starts again, which
// delays a restore and never loses one.
type Memo struct {
	clearSince map[string]time.Time
	unhealthy  map[workload.Ref]time.Time
	// restoring is the last workload restored on a node, until it serves.
	restoring map[string]workload.Ref
	// preempting is the last workload preempted on a node, until its pods
	// are gone.
	preempting map[string]preemption
	// settled is the sample in which a node's last step was seen to take
	// effect; memory from that sample or before may not reflect the step.
	settled map[string]uint64
	// released is when a node's last preemption was seen to take effect
	// (its pods gone): memory sampled within memoryReleaseGrace of it may
	// still show what the preemption frees.
	released map[string]time.Time
}

// memoryReleaseGrace is how long after a preempted workload's pods are
// gone its GPU memory may still show as used: the pod object goes once
// the kubelet saw the container stop, but the driver frees the process's
// memory when it has torn down its context, which on the real node
// trailed the pod's deletion (a second workload was preempted for
// memory the first had already given up).
const memoryReleaseGrace = 2 * time.Second

// NewMemo is an empty memo.
func NewMemo() *Memo {
	return &Memo{clearSince: map[string]time.Time{}, unhealthy: map[workload.Ref]time.Time{}, restoring: map[string]workload.Ref{}, preempting: map[string]preemption{}, settled: map[string]uint64{}, released: map[string]time.Time{}}
}

// clone is a copy Plan may change.
func (m *Memo) clone() *Memo {
	return &Memo{clearSince: maps.Clone(m.clearSince), unhealthy: maps.Clone(m.unhealthy), restoring: maps.Clone(m.restoring),
		preempting: maps.Clone(m.preempting), settled: maps.Clone(m.settled), released: maps.Clone(m.released)}
}

// Restored tells the memo a restore was written, so the next one waits
// for this one to serve.
func (m *Memo) Restored(node string, ref workload.Ref) { m.restoring[node] = ref }

// Preempted tells the memo a preemption was written: any restore it was
// waiting on is moot, and memory sampled before the pods are gone does not
// show what the preemption freed.
func (m *Memo) Preempted(node string, ref workload.Ref, at time.Time) {
	delete(m.restoring, node)
	m.preempting[node] = preemption{ref, at}
}

type preemption struct {
	ref workload.Ref
	at  time.Time
}

// staleFor bounds how long a preemption the cache does not show yet is
// waited for; past it, someone undid it (an operator's restore).
const staleFor = 10 * time.Second

// Kinds of step.
const (
	StepPreempt = "preempt"
	StepRestore = "restore"
)

// Step is one action the arbiter takes.
type Step struct {
	Kind     string
	Node     string
	Workload *clusterview.Workload
	Reason   string
}

// NodeStatus says what the arbiter sees on a node and why it does (or
// does not) act: for logs, metrics and the demo.
type NodeStatus struct {
	Node     string   `json:"node"`
	Pressure bool     `json:"pressure"`
	Triggers []string `json:"triggers,omitempty"`
	// Waiting is why no step was taken although one might be due.
	Waiting string `json:"waiting,omitempty"`
	// Overdue are the arbiter's preemptions on the node that did not take
	// effect within Config.PreemptTimeout: no longer waited for.
	Overdue []workload.Ref `json:"overdue,omitempty"`
	// Urgent: a protected workload on the node is failing for want of the
	// GPU (a transcode fell back to the CPU).
	Urgent bool `json:"urgent,omitempty"`
	// MinFree is the least free memory of the node's GPUs, -1 unknown.
	MinFree int64 `json:"minFree"`
}

// trigger is one reason for pressure. Ceiling bounds whom it may
// preempt: workloads of lower priority than the protected workload it
// comes from; memory pressure preempts anyone preemptible.
type trigger struct {
	reason  string
	ceiling int64
	// urgent: the protected workload is failing for want of the GPU (a
	// transcode fell back to the CPU), so the arbiter preempts the next
	// workload without waiting for the last preemption to take effect.
	urgent bool
}

// Plan decides, for every GPU node, at most one step. It is pure: it
// returns what to remember for the next round as a new memo and leaves
// prev alone; the controller applies the steps and calls Plan again on
// the new state.
func Plan(v *clusterview.View, sig Signals, cfg Config, prev *Memo) ([]Step, []NodeStatus, *Memo) {
	memo := prev.clone()
	var steps []Step
	var status []NodeStatus
	for _, n := range v.Ledger.Nodes {
		step, st := planNode(n.Name, v, sig, cfg, memo, n.GPUMemoryBytes)
		if step != nil {
			steps = append(steps, *step)
		}
		status = append(status, st)
	}
	// Forget protected workloads that are healthy or gone.
	for ref := range memo.unhealthy {
		if w := v.Find(ref); w == nil {
			delete(memo.unhealthy, ref)
		}
	}
	return steps, status, memo
}

func planNode(node string, v *clusterview.View, sig Signals, cfg Config, memo *Memo, gpuMemory int64) (*Step, NodeStatus) {
	st := NodeStatus{Node: node, MinFree: -1}
	gpus, memKnown := sig.Memory[node]
	memKnown = memKnown && len(gpus) > 0
	if memKnown {
		st.MinFree = math.MaxInt64
		for _, g := range gpus {
			st.MinFree = min(st.MinFree, g.Free)
		}
	}

	var triggers []trigger
	if memKnown && st.MinFree < cfg.MinFree {
		triggers = append(triggers, trigger{reason: fmt.Sprintf("GPU memory low: %s free, under %s", ledger.FormatBytes(st.MinFree), ledger.FormatBytes(cfg.MinFree)), ceiling: math.MaxInt64})
	}
	var running, released []*clusterview.Workload
	var pendingPreempt *clusterview.Workload
	for _, w := range v.Workloads {
		if !w.OnNode(node) {
			continue
		}
		switch {
		case w.Policy.Protected:
			triggers = append(triggers, protectedTriggers(w, sig, cfg, memo)...)
		case !w.Policy.Preemptible:
		case (w.Record != nil || w.Lowered != nil) && !ours(w, sig, cfg):
			// Released by an operator (theirs to restore), or a record the
			// arbiter did not write: neither waited for nor restored.
		case w.Record != nil || w.Lowered != nil && !w.Lowered.Restoring:
			released = append(released, w)
			switch {
			case preemptDone(w):
			case overdue(w, sig, cfg):
				st.Overdue = append(st.Overdue, w.Ref)
			default:
				pendingPreempt = w
			}
		case w.Runs():
			running = append(running, w)
		}
	}
	urgent := false
	for _, t := range triggers {
		st.Triggers = append(st.Triggers, t.reason)
		urgent = urgent || t.urgent
	}
	st.Pressure = len(triggers) > 0
	st.Urgent = urgent

	// A step's effect must show before the next: pods gone, or a restored
	// workload serving. An urgent trigger waits for nothing.
	if pendingPreempt != nil && !urgent {
		st.Waiting = "waiting for " + pendingPreempt.Ref.Qualified() + " to give up the GPU"
		return nil, st
	}
	if p, ok := memo.preempting[node]; ok {
		w := v.Find(p.ref)
		switch {
		case w == nil || (w.Record != nil || w.Lowered != nil) && preemptDone(w):
			delete(memo.preempting, node)
			memo.settled[node] = sig.Sample
			memo.released[node] = sig.Now
		case w.Record == nil && w.Lowered == nil && sig.Now.Sub(p.at) > staleFor,
			cfg.PreemptTimeout > 0 && sig.Now.Sub(p.at) >= cfg.PreemptTimeout:
			delete(memo.preempting, node)
		case urgent:
		default:
			st.Waiting = "waiting for " + p.ref.Qualified() + " to give up the GPU"
			return nil, st
		}
	}
	if ref, ok := memo.restoring[node]; ok {
		// The cache may not show the restore yet: our record still there
		// is the restore not seen, not a restore undone.
		w := v.Find(ref)
		if w != nil && (w.Record != nil && w.Record.By == cfg.Identity || w.Lowered != nil || !w.Serving()) {
			if !st.Pressure {
				st.Waiting = fmt.Sprintf("waiting for %s to serve (%d of %d ready)", ref.Qualified(), w.Ready, w.Replicas)
				return nil, st
			}
		} else {
			delete(memo.restoring, node)
			memo.settled[node] = sig.Sample
		}
	}

	sortByPriority(running, false)
	for _, w := range running {
		if w.Policy.Hours != nil && !w.Policy.Hours.Active(sig.Now) {
			return &Step{Kind: StepPreempt, Node: node, Workload: w, Reason: "outside its active hours " + w.Policy.Hours.Spec}, st
		}
	}

	if st.Pressure {
		delete(memo.clearSince, node)
		ceiling := int64(math.MinInt64)
		for _, t := range triggers {
			ceiling = max(ceiling, t.ceiling)
		}
		if memoryOnly(triggers) && (sig.Sample <= memo.settled[node] || sig.Now.Sub(memo.released[node]) < memoryReleaseGrace) {
			st.Waiting = "waiting for a memory sample taken after the last preemption took effect"
			return nil, st
		}
		for _, w := range running {
			if int64(w.Policy.Priority) < ceiling {
				return &Step{Kind: StepPreempt, Node: node, Workload: w, Reason: strings.Join(st.Triggers, "; ")}, st
			}
		}
		if len(released) > 0 || len(running) > 0 {
			st.Waiting = "under pressure, nothing left to preempt"
		}
		return nil, st
	}

	// Clear only with the hysteresis margin: memory just above the
	// threshold is not yet room to give back.
	if memKnown && st.MinFree < cfg.MinFree+cfg.Margin {
		delete(memo.clearSince, node)
		if len(released) > 0 {
			st.Waiting = fmt.Sprintf("free memory %s under %s (threshold plus margin)", ledger.FormatBytes(st.MinFree), ledger.FormatBytes(cfg.MinFree+cfg.Margin))
		}
		return nil, st
	}
	since, ok := memo.clearSince[node]
	if !ok {
		since = sig.Now
		memo.clearSince[node] = since
	}

	sortByPriority(released, true)
	for _, w := range released {
		if w.Policy.Hours != nil && !w.Policy.Hours.Active(sig.Now) {
			continue
		}
		hold := cfg.HoldDown
		if w.Policy.HoldDown > 0 {
			hold = w.Policy.HoldDown
		}
		if wait := since.Add(hold).Sub(sig.Now); wait > 0 {
			st.Waiting = fmt.Sprintf("clear since %s; %s holds down for %s more", since.UTC().Format(time.RFC3339), w.Ref.Qualified(), wait.Round(time.Second))
			return nil, st
		}
		if sig.MemoryWatched {
			if reason := whyNotFit(w, gpus, memKnown, sig, cfg, memo.settled[node], gpuMemory); reason != "" {
				st.Waiting = reason
				return nil, st
			}
		}
		return &Step{Kind: StepRestore, Node: node, Workload: w, Reason: fmt.Sprintf("clear since %s", since.UTC().Format(time.RFC3339))}, st
	}
	return nil, st
}

// memoryOnly says whether memory is the only trigger: then the next
// preemption waits to see what the last one freed.
func memoryOnly(ts []trigger) bool {
	for _, t := range ts {
		if t.ceiling != math.MaxInt64 {
			return false
		}
	}
	return true
}

// protectedTriggers are the pressure a protected workload puts on its
// nodes: activity (a transcode) and ill health past the grace.
func protectedTriggers(w *clusterview.Workload, sig Signals, cfg Config, memo *Memo) []trigger {
	var out []trigger
	ceiling := int64(w.Policy.Priority)
	if a, ok := sig.Activity[w.Ref]; ok && a.Active {
		t := trigger{reason: w.Ref.Qualified() + " is active: " + a.Detail, ceiling: ceiling, urgent: a.Urgent()}
		if t.urgent {
			t.reason = "URGENT: " + t.reason
		}
		out = append(out, t)
	}
	healthy, why := w.Healthy()
	if healthy {
		delete(memo.unhealthy, w.Ref)
		return out
	}
	first, ok := memo.unhealthy[w.Ref]
	if !ok {
		first = sig.Now
		memo.unhealthy[w.Ref] = first
	}
	if sig.Now.Sub(first) >= cfg.UnhealthyGrace {
		out = append(out, trigger{reason: w.Ref.Qualified() + " is unhealthy: " + why, ceiling: ceiling})
	}
	return out
}

// whyNotFit says why restoring w would bring the pressure back, "" when it
// would not: some GPU must keep MinFree+Margin after w's expected memory
// returns, judged on memory sampled after the node's last step settled.
func whyNotFit(w *clusterview.Workload, gpus []signals.GPUMemory, known bool, sig Signals, cfg Config, settled uint64, gpuMemory int64) string {
	if !known {
		return "GPU memory on this node is unknown: no restore until a memory source reports it"
	}
	if sig.Sample <= settled {
		return "waiting for a memory sample taken after the last step took effect"
	}
	need := returningMemory(w, gpuMemory)
	var best int64 = math.MinInt64
	for _, g := range gpus {
		best = max(best, g.Free)
	}
	if best-need < cfg.MinFree+cfg.Margin {
		return fmt.Sprintf("%s needs about %s back; the GPU with the most room has %s free, and must keep %s",
			w.Ref.Qualified(), ledger.FormatBytes(need), ledger.FormatBytes(best), ledger.FormatBytes(cfg.MinFree+cfg.Margin))
	}
	return ""
}

// returningMemory is what a restore gives back to w on one GPU: a pod's
// expected memory (its upper bound), or for a lowered workload the
// difference between the two fractions.
func returningMemory(w *clusterview.Workload, gpuMemory int64) int64 {
	if w.Lowered != nil {
		return w.Lowered.Difference(gpuMemory)
	}
	if w.Memory == nil {
		return 0
	}
	return w.Memory.Max.Value()
}

// preemptDone says whether a preemption has taken effect.
func preemptDone(w *clusterview.Workload) bool {
	if w.Lowered != nil {
		return w.LoweredRolledOut()
	}
	return w.PodsGone()
}

// sortByPriority sorts lowest priority first (desc: highest first). Ties
// go by name, or with desc (restoring) the latest preempted first, so
// restores undo preemptions in reverse order.
func sortByPriority(ws []*clusterview.Workload, desc bool) {
	sort.SliceStable(ws, func(i, j int) bool {
		a, b := ws[i], ws[j]
		if a.Policy.Priority != b.Policy.Priority {
			return (a.Policy.Priority < b.Policy.Priority) != desc
		}
		if desc {
			return releasedAt(a) > releasedAt(b)
		}
		return a.Ref.Qualified() < b.Ref.Qualified()
	})
}

func releasedAt(w *clusterview.Workload) string {
	if w.Record != nil {
		return w.Record.At
	}
	if w.Lowered != nil {
		return w.Lowered.At
	}
	return ""
}
