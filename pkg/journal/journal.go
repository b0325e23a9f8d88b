// Package journal is gpuslice's durable record of its decisions, kept in
// ConfigMaps that each have one writer. The arbiter's, in its namespace,
// only it (and a cluster admin) may write:
//
//   - Held: the preemptions it holds now, by workload. A release or lower
//     record on a workload counts as the arbiter's only when Held has it:
//     a namespace's users can write any annotation on their own workloads,
//     so the annotations alone prove nothing.
//   - History: its decisions (preempt, restore, preemptions that did not
//     take effect in time, records it refused to trust), newest first,
//     bounded by count and bytes, for gpuslice history.
//
// The admission gate's (GateName, in the webhook's namespace) has a
// History only: the pods it denied and those break-glass let in, written
// by the webhook, and `gpuslice admit --break-glass` overrides. Repeats of
// one decision (a ReplicaSet retrying a denied pod) are one entry with a
// count (Add).
//
// It is pure: Decode and Encode turn it into a ConfigMap's data and back.
package journal

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/gpuslice/gpuslice/pkg/workload"
)

// Keys of the ConfigMap's data.
const (
	KeyHeld    = "held.json"
	KeyHistory = "history.json"
)

// DefaultName is the arbiter's ConfigMap's name, GateName the admission
// gate's.
const (
	DefaultName = "gpuslice-arbiter-journal"
	GateName    = "gpuslice-gate-journal"
)

// Who decided, Entry.By: the arbiter, the webhook's admission gate, or a
// user's gpuslice admit --break-glass.
const (
	ByArbiter = "arbiter"
	ByGate    = "gate"
	ByAdmit   = "admit"
)

// CoalesceWithin is the longest pause between repeats of one decision
// that Add still counts into the same entry.
const CoalesceWithin = time.Hour

// Bounds of the history: a ConfigMap holds at most 1 MiB, and gpuslice
// history reads the whole of it.
const (
	MaxEntries      = 500
	MaxHistoryBytes = 256 << 10
)

// Actions in the history, beside the steps' kinds (preempt, restore).
const (
	ActionPreempt   = "preempt"
	ActionRestore   = "restore"
	ActionFailed    = "failed"    // a step's write failed
	ActionStuck     = "stuck"     // a preemption did not take effect in time
	ActionUntrusted = "untrusted" // a record or policy the arbiter did not write or may not believe
	ActionDropped   = "dropped"   // a hold whose record someone else removed (a restore by hand)
	ActionAdjusted  = "adjusted"  // a policy carried out otherwise than asked, since as asked it would fail

	ActionDenied     = "denied"      // the admission gate refused a pod
	ActionBreakGlass = "break-glass" // a pod or manifest let in despite the gate's refusal
)

// Hold is one preemption the arbiter holds.
type Hold struct {
	Workload workload.Ref `json:"workload"`
	// Action is the step's preempt action: scale-to-zero or lower-memory.
	Action string    `json:"action"`
	Node   string    `json:"node,omitempty"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Entry is one decision, or repeats of it.
type Entry struct {
	// At is when it was made; for repeats, the last time.
	At       time.Time    `json:"at"`
	Action   string       `json:"action"`
	Workload workload.Ref `json:"workload"`
	Node     string       `json:"node,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	// Message says what was done, or what went wrong.
	Message string `json:"message,omitempty"`
	// By is who decided (ByGate, ByAdmit); empty in the arbiter's journal,
	// where it can only be the arbiter.
	By string `json:"by,omitempty"`
	// Count is how many times it was decided, when more than once; First
	// is then the first time.
	Count int       `json:"count,omitempty"`
	First time.Time `json:"first,omitzero"`
}

// Times is how many times e was decided.
func (e *Entry) Times() int { return max(e.Count, 1) }

// FirstAt is when e was first decided.
func (e *Entry) FirstAt() time.Time {
	if e.First.IsZero() {
		return e.At
	}
	return e.First
}

// sameDecision says whether a and b are repeats of one decision.
func sameDecision(a, b *Entry) bool {
	return a.Action == b.Action && a.Workload == b.Workload && a.Node == b.Node && a.Reason == b.Reason && a.Message == b.Message && a.By == b.By
}

// Journal is the decoded ConfigMap.
type Journal struct {
	Held    []Hold  `json:"held"`
	History []Entry `json:"history"`
}

// New is an empty journal.
func New() *Journal { return &Journal{Held: []Hold{}} }

// Holds says whether the arbiter holds a preemption of ref.
func (j *Journal) Holds(ref workload.Ref) (Hold, bool) {
	for _, h := range j.Held {
		if h.Workload == ref {
			return h, true
		}
	}
	return Hold{}, false
}

// Hold records a preemption the arbiter is about to write, replacing any
// earlier one of the same workload.
func (j *Journal) Hold(h Hold) {
	j.Release(h.Workload)
	j.Held = append(j.Held, h)
}

// Release forgets a preemption (restored, or undone by someone else).
func (j *Journal) Release(ref workload.Ref) {
	j.Held = slices.DeleteFunc(j.Held, func(h Hold) bool { return h.Workload == ref })
}

// Clone is a copy to change without touching j.
func (j *Journal) Clone() *Journal {
	return &Journal{Held: slices.Clone(j.Held), History: slices.Clone(j.History)}
}

// Record adds a decision at the front of the history.
func (j *Journal) Record(e Entry) { j.History = slices.Insert(j.History, 0, e) }

// Add puts e (a decision or its repeats) in the history by time, newest
// first. A repeat of a decision last made at most CoalesceWithin before
// e's first time, or after it, is counted into that entry instead, so a
// controller retrying a denied pod leaves one entry, not hundreds; the
// history is then bounded to MaxEntries.
func (j *Journal) Add(e Entry) {
	for i := range j.History {
		old := &j.History[i]
		if !sameDecision(old, &e) || old.At.Add(CoalesceWithin).Before(e.FirstAt()) || e.At.Add(CoalesceWithin).Before(old.FirstAt()) {
			continue
		}
		merged := *old
		merged.Count = old.Times() + e.Times()
		if first := e.FirstAt(); first.Before(old.FirstAt()) {
			merged.First = first
		} else {
			merged.First = old.FirstAt()
		}
		if e.At.After(old.At) {
			merged.At = e.At
		}
		j.History = slices.Delete(j.History, i, i+1)
		e = merged
		break
	}
	at, _ := slices.BinarySearchFunc(j.History, e.At, func(x Entry, t time.Time) int { return t.Compare(x.At) })
	j.History = slices.Insert(j.History, at, e)
	if len(j.History) > MaxEntries {
		j.History = j.History[:MaxEntries]
	}
}

// Since is the history from t on, newest first.
func (j *Journal) Since(t time.Time) []Entry {
	out := []Entry{}
	for _, e := range j.History {
		if !e.At.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// Decode reads a ConfigMap's data; nil data is an empty journal. name is
// the ConfigMap, for errors.
func Decode(name string, data map[string]string) (*Journal, error) {
	j := New()
	if v := data[KeyHeld]; v != "" {
		if err := json.Unmarshal([]byte(v), &j.Held); err != nil {
			return nil, fmt.Errorf("ConfigMap %s key %s is not a gpuslice journal's JSON: %w; delete the key (the arbiter then trusts none of its old records, which an operator restores with gpuslice restore)", name, KeyHeld, err)
		}
	}
	if v := data[KeyHistory]; v != "" {
		if err := json.Unmarshal([]byte(v), &j.History); err != nil {
			return nil, fmt.Errorf("ConfigMap %s key %s is not a gpuslice journal's JSON: %w; delete the key to start the history afresh", name, KeyHistory, err)
		}
	}
	return j, nil
}

// Encode writes the journal as ConfigMap data, dropping the oldest
// history beyond MaxEntries or MaxHistoryBytes. A journal without holds
// (the gate's) has no KeyHeld.
func (j *Journal) Encode() (map[string]string, error) {
	out := map[string]string{}
	if len(j.Held) > 0 {
		held, err := json.Marshal(j.Held)
		if err != nil {
			return nil, fmt.Errorf("encoding the arbiter's holds: %w", err)
		}
		out[KeyHeld] = string(held)
	}
	if len(j.History) > MaxEntries {
		j.History = j.History[:MaxEntries]
	}
	var history []byte
	for {
		var err error
		if history, err = json.Marshal(j.History); err != nil {
			return nil, fmt.Errorf("encoding the journal's history: %w", err)
		}
		if len(history) <= MaxHistoryBytes || len(j.History) == 0 {
			break
		}
		// Drop the oldest quarter at a time: few re-encodings.
		j.History = j.History[:len(j.History)*3/4]
	}
	out[KeyHistory] = string(history)
	return out, nil
}
