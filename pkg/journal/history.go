package journal

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gpuslice/gpuslice/internal/table"
)

// DefaultNamespace is where the chart installs the arbiter, and so where
// gpuslice history looks for its journal.
const DefaultNamespace = "gpu-system"

// History is what gpuslice history shows: what the arbiter holds
// preempted now, and its decisions since a time, newest first.
type History struct {
	Journal string    `json:"journal"`
	Since   time.Time `json:"since"`
	Held    []Hold    `json:"held"`
	Entries []Entry   `json:"entries"`
}

// Report is the journal as gpuslice history shows it: from since on, for
// workloads in namespace ("" for all).
func (j *Journal) Report(name string, since time.Time, namespace string) *History {
	h := &History{Journal: name, Since: since.UTC(), Held: []Hold{}, Entries: []Entry{}}
	for _, hold := range j.Held {
		if namespace == "" || hold.Workload.Namespace == namespace {
			h.Held = append(h.Held, hold)
		}
	}
	for _, e := range j.Since(since) {
		if namespace == "" || e.Workload.Namespace == namespace {
			h.Entries = append(h.Entries, e)
		}
	}
	return h
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
		fmt.Fprintf(tw, "No arbiter decisions since %s in %s.\n", stamp(h.Since), h.Journal)
		return tw.Flush()
	}
	fmt.Fprintln(tw, "TIME\tACTION\tWORKLOAD\tNODE\tWHY")
	for _, e := range h.Entries {
		why := e.Reason
		if e.Message != "" && e.Message != why {
			why = strings.TrimPrefix(why+": "+e.Message, ": ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", stamp(e.At), e.Action, e.Workload.Qualified(), dash(e.Node), dash(why))
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
