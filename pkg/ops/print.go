package ops

import (
	"fmt"
	"io"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/ledger"
	"github.com/gpuslice/gpuslice/pkg/workload"
)

const dryRunFooter = "dry run: nothing was changed"

// WriteResult prints a release or restore for people.
func WriteResult(w io.Writer, r Result) error {
	return writeLines(w, r.DryRun, r.Message)
}

// WriteShares prints a share change for people.
func WriteShares(w io.Writer, r SharesResult) error {
	return writeLines(w, r.DryRun, r.Message)
}

// WriteMemory prints a memory change for people: each setting old → new
// with its bytes, then the restarts and the workloads only affected.
func WriteMemory(w io.Writer, r MemoryResult) error {
	verb, restarted := "set", "restarted"
	if r.DryRun {
		verb, restarted = "would set", "would restart"
	}
	var lines []string
	for _, s := range r.Settings {
		change := s.Old + bytesSuffix(s.OldBytes) + " → " + s.New + bytesSuffix(s.NewBytes)
		if r.GPUMemoryBytes > 0 {
			change += fmt.Sprintf(" of the %s GPU on %s", ledger.FormatBytes(r.GPUMemoryBytes), r.Node)
		}
		if !s.Changed {
			lines = append(lines, fmt.Sprintf("%s: %s is already %s in %s; nothing to change", r.Workload.Qualified(), r.Variable, s.Old, s.Where()))
			continue
		}
		lines = append(lines, fmt.Sprintf("%s: %s %s in %s: %s", r.Workload.Qualified(), verb, r.Variable, s.Where(), change))
	}
	for _, rs := range r.Restarts {
		line := fmt.Sprintf("%s %s: %s", restarted, rs.Workload.Qualified(), rs.Why)
		if rs.RestartedAt != "" && !r.DryRun {
			line += " (" + workload.AnnotationRestartedAt + "=" + rs.RestartedAt + ")"
		}
		lines = append(lines, line)
	}
	for _, a := range r.Affected {
		lines = append(lines, fmt.Sprintf("not restarted %s: %s", a.Workload.Qualified(), a.Why))
	}
	for _, n := range r.Notes {
		lines = append(lines, "note: "+n)
	}
	return writeLines(w, r.DryRun, lines...)
}

func writeLines(w io.Writer, dryRun bool, lines ...string) error {
	if dryRun {
		lines = append(lines, dryRunFooter)
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n")+"\n")
	return err
}

func bytesSuffix(b int64) string {
	if b == 0 {
		return ""
	}
	return " (" + ledger.FormatBytes(b) + ")"
}
