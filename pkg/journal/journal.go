// Package journal is the arbiter's own durable record, kept in a ConfigMap
// in the arbiter's namespace that only it (and a cluster admin) may write:
//
//   - Held: the preemptions it holds now, by workload. A release or lower
//     record on a workload counts as the arbiter's only when Held has it:
//     a namespace's users can write any annotation on their own workloads,
//     so the annotations alone prove nothing.
//   - History: its decisions (preempt, restore, preemptions that did not
//     take effect in time, records it refused to trust), newest first,
//     bounded by count and bytes, for gpuslice history.
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

// DefaultName is the ConfigMap's name.
const DefaultName = "gpuslice-arbiter-journal"

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

// Entry is one decision.
type Entry struct {
	At       time.Time    `json:"at"`
	Action   string       `json:"action"`
	Workload workload.Ref `json:"workload"`
	Node     string       `json:"node,omitempty"`
	Reason   string       `json:"reason,omitempty"`
	// Message says what was done, or what went wrong.
	Message string `json:"message,omitempty"`
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
			return nil, fmt.Errorf("ConfigMap %s key %s is not the arbiter's JSON: %w; delete the key (the arbiter then trusts none of its old records, which an operator restores with gpuslice restore)", name, KeyHeld, err)
		}
	}
	if v := data[KeyHistory]; v != "" {
		if err := json.Unmarshal([]byte(v), &j.History); err != nil {
			return nil, fmt.Errorf("ConfigMap %s key %s is not the arbiter's JSON: %w; delete the key to start the history afresh", name, KeyHistory, err)
		}
	}
	return j, nil
}

// Encode writes the journal as ConfigMap data, dropping the oldest
// history beyond MaxEntries or MaxHistoryBytes.
func (j *Journal) Encode() (map[string]string, error) {
	held, err := json.Marshal(j.Held)
	if err != nil {
		return nil, fmt.Errorf("encoding the arbiter's holds: %w", err)
	}
	if len(j.History) > MaxEntries {
		j.History = j.History[:MaxEntries]
	}
	var history []byte
	for {
		if history, err = json.Marshal(j.History); err != nil {
			return nil, fmt.Errorf("encoding the arbiter's history: %w", err)
		}
		if len(history) <= MaxHistoryBytes || len(j.History) == 0 {
			break
		}
		// Drop the oldest quarter at a time: few re-encodings.
		j.History = j.History[:len(j.History)*3/4]
	}
	return map[string]string{KeyHeld: string(held), KeyHistory: string(history)}, nil
}
