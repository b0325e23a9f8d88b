package admit

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/gpuslice/gpuslice/internal/table"
	"github.com/gpuslice/gpuslice/pkg/gate"
)

// Answers in the table's RESULT column.
const (
	resultStart      = "can start"
	resultRefused    = "cannot start"
	resultBreakGlass = "break-glass"
)

// WriteTable prints one line per workload, its problems under it, and the
// exit code last.
func WriteTable(w io.Writer, r *Report) error {
	tw := table.NewWriter(w)
	fmt.Fprintln(tw, "WORKLOAD\tNAMESPACE\tPODS\tRESULT\tCODE")
	for _, v := range r.Workloads {
		result := resultStart
		switch {
		case v.Overridden:
			result = resultBreakGlass
		case v.Code != gate.CodeOK:
			result = resultRefused
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\n", v.Workload.String(), v.Workload.Namespace, v.Pods, result, v.Code)
		if v.Note != "" {
			fmt.Fprintf(tw, "  %s\n", v.Note)
		}
		for _, p := range v.Problems {
			fmt.Fprintf(tw, "  %d: %s\n", p.Code, p.Message)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Skipped) > 0 {
		names := make([]string, len(r.Skipped))
		for i, s := range r.Skipped {
			names[i] = strings.ToLower(s.Kind) + "/" + s.Name
		}
		fmt.Fprintf(w, "Not judged (they start no pods): %s\n", strings.Join(names, ", "))
	}
	overrode := slices.ContainsFunc(r.Workloads, func(v Verdict) bool { return v.Overridden })
	switch {
	case overrode:
		recorded := "an Event"
		if r.Journaled {
			recorded = "an Event and in the admission gate's journal (gpuslice history)"
		}
		fmt.Fprintf(w, "Break-glass: %q; recorded as %s. The webhook's admission gate still refuses the pods unless their template carries the break-glass annotation.\n", r.BreakGlass, recorded)
	case r.BreakGlass != "":
		fmt.Fprintln(w, "Break-glass: nothing to override (no shares or Plex problem); no Event recorded.")
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", warning)
	}
	fmt.Fprintf(w, "Exit code %s\n", Describe(r.Code))
	return nil
}

// Describe is a code with its meaning: "10: free shares below the request".
func Describe(c gate.Code) string {
	s := strconv.Itoa(int(c)) + ": "
	switch c {
	case gate.CodeOK:
		return s + "every workload can start now"
	case gate.CodeSharesShort:
		return s + "free shares below the request"
	case gate.CodeNeverFits:
		return s + "the request exceeds what any GPU node can allocate"
	case gate.CodeProtectedUnhealthy:
		return s + "a protected workload (Plex) is not Running and Ready"
	case gate.CodeNodeUnavailable:
		return s + "the target GPU node is missing or NotReady"
	case gate.CodeClusterUnreadable:
		return s + "the cluster could not be read"
	}
	return s + "unknown"
}
