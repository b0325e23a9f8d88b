package journal

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/gpuslice/gpuslice/internal/table"
)

// DefaultNamespace is where the chart installs the arbiter, and so where
// gpuslice history looks for its journal.
const DefaultNamespace = "gpu-system"

// History is what gpuslice history shows: what the arbiter holds
// preempted now, and its and the admission gate's decisions since a time,
// newest first.
type History struct {
	// Journal is the arbiter's journal, when there is one.
	Journal string `json:"journal,omitempty"`
	// GateJournal is the admission gate's journal, when there is one.
	GateJournal string    `json:"gateJournal,omitempty"`
	Since       time.Time `json:"since"`
	Held        []Hold    `json:"held"`
	Entries     []Entry   `json:"entries"`
}

// Report is the arbiter's journal as gpuslice history shows it: from
// since on, for workloads in namespace ("" for all).
func (j *Journal) Report(name string, since time.Time, namespace string) *History {
	h := &History{Journal: name, Since: since.UTC(), Held: []Hold{}, Entries: []Entry{}}
	for _, hold := range j.Held {
		if namespace == "" || hold.Workload.Namespace == namespace {
			h.Held = append(h.Held, hold)
		}
	}
	h.Entries = j.entries(since, namespace, ByArbiter)
	return h
}

// AddGate merges the admission gate's journal (gate, named name) into
// the history.
func (h *History) AddGate(name string, gate *Journal, namespace string) {
	h.GateJournal = name
	h.Entries = Newest(h.Entries, gate.entries(h.Since, namespace, ByGate))
}

// entries are j's from since on in namespace, each saying who decided
// (by, where the entry does not say).
func (j *Journal) entries(since time.Time, namespace, by string) []Entry {
	out := []Entry{}
	for _, e := range j.Since(since) {
		if namespace == "" || e.Workload.Namespace == namespace {
			if e.By == "" {
				e.By = by
			}
			out = append(out, e)
		}
	}
	return out
}

// Newest merges histories into one, newest first; of entries made at
// the same time, the earlier list's come first.
func Newest(lists ...[]Entry) []Entry {
	out := slices.Concat(lists...)
	if out == nil {
		out = []Entry{}
	}
	slices.SortStableFunc(out, func(a, b Entry) int { return b.At.Compare(a.At) })
	return out
}

// WriteTable writes the holds, each with the command that undoes it, then
// the decisions.
func (h *History) WriteTable(w io.Writer) error {
	tw := table.NewWriter(w)
	if len(h.Held) > 0 {
		fmt.Fprintln(tw, "HELD SINCE\tWORKLOAD\tNODE\tACTION\tUNDO")
		for _, hold := range h.Held {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tgpuslice restore %s\n", stamp(hold.At), hold.Workload.Qualified(), dash(hold.Node), dash(hold.Action), hold.Workload.KubectlArgs())
		}
		fmt.Fprintln(tw)
	}
	if len(h.Entries) == 0 {
		journals := h.Journal
		switch {
		case journals == "":
			journals = h.GateJournal
		case h.GateJournal != "":
			journals += " and " + h.GateJournal
		}
		fmt.Fprintf(tw, "No decisions since %s in %s.\n", stamp(h.Since), journals)
		return tw.Flush()
	}
	fmt.Fprintln(tw, "TIME\tBY\tACTION\tWORKLOAD\tNODE\tWHY")
	for _, e := range h.Entries {
		why := e.Reason
		if e.Message != "" && e.Message != why {
			why = strings.TrimPrefix(why+": "+e.Message, ": ")
		}
		if n := e.Times(); n > 1 {
			why = fmt.Sprintf("%d times since %s: %s", n, stamp(e.FirstAt()), dash(why))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", stamp(e.At), dash(e.By), e.Action, e.Workload.Qualified(), dash(e.Node), dash(why))
	}
	return tw.Flush()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
