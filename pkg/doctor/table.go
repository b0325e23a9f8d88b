package doctor

import (
	"fmt"
	"io"
	"strings"

	"github.com/gpuslice/gpuslice/internal/table"
)

// WriteTable prints the report grouped per subject, kubectl style: a
// header line per section, then CHECK, VERDICT and EVIDENCE, with the
// remedy of each warning or failure on the line under it; a summary last.
func WriteTable(w io.Writer, r *Report) error {
	tw := table.NewWriter(w)
	if len(r.Sections) == 0 {
		fmt.Fprintln(tw, "No GPU workloads found.")
	}
	for i, s := range r.Sections {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s: %s\n", s.Title(), sectionSummary(s))
		fmt.Fprintln(tw, "  CHECK\tVERDICT\tEVIDENCE")
		for _, res := range s.Results {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", res.Check, verdictCell(res.Verdict), oneLine(res.Evidence))
			if res.Remedy != "" && res.Verdict != OK {
				fmt.Fprintf(tw, "  \t\tfix: %s\n", oneLine(res.Remedy))
			}
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, summaryLine(r))
	return tw.Flush()
}

// verdictCell shouts what needs attention, as kubectl shows problem states.
func verdictCell(v Verdict) string {
	if v == OK {
		return string(v)
	}
	return strings.ToUpper(string(v))
}

func sectionSummary(s Section) string {
	fails, warns := 0, 0
	for _, res := range s.Results {
		switch res.Verdict {
		case Fail:
			fails++
		case Warn:
			warns++
		}
	}
	switch {
	case fails > 0 && warns > 0:
		return fmt.Sprintf("%d failed, %d warning(s)", fails, warns)
	case fails > 0:
		return fmt.Sprintf("%d failed", fails)
	case warns > 0:
		return fmt.Sprintf("ok, %d warning(s)", warns)
	}
	return "ok"
}

func summaryLine(r *Report) string {
	s := r.Summary
	verdict := "no check failed"
	if s.Fail > 0 {
		verdict = fmt.Sprintf("%d check(s) FAILED", s.Fail)
	}
	return fmt.Sprintf("%s; %d warning(s), %d ok, %d workload(s) checked", verdict, s.Warn, s.OK, s.Workloads)
}

// oneLine keeps a row on one line: messages relayed from the API server
// may contain newlines, which would break the table.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
