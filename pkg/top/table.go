package top

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/agent"
	"github.com/gpuslice/gpuslice/pkg/ledger"

	"github.com/gpuslice/gpuslice/internal/table"
)

// How unattributed memory shows in the POD and STATUS columns.
var unattributedRows = map[string][2]string{
	agent.ReasonHostProcess:    {"<host processes>", "not in a pod"},
	agent.ReasonUnknownPod:     {"<unknown pods>", "pod not listed on this node"},
	agent.ReasonPIDNotFound:    {"<pid not found>", "agent lacks hostPID?"},
	agent.ReasonProcUnreadable: {"<proc unreadable>", "agent cannot read /proc"},
}

// WriteTable writes the pods, most memory first, with host and unknown
// processes among them, then one line per GPU and the agents' warnings.
func WriteTable(w io.Writer, r *Report) error {
	// kubectl's printer settings, as the ledger's tables; Flush reports
	// any write error.
	tw := table.NewWriter(w)
	rows := tableRows(r)
	if len(rows) == 0 {
		fmt.Fprintln(tw, "No GPU pods found.")
	} else {
		fmt.Fprintln(tw, "NAMESPACE\tPOD\tNODE\tGPU\tMEMORY\tBUDGET\tSTATUS")
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row.cells, "\t"))
		}
	}
	if len(r.GPUs) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "NODE\tGPU\tMODEL\tUSED\tFREE\tTOTAL\tUTIL\tTEMP")
		for _, g := range r.GPUs {
			util, temp := "-", "-"
			if g.Utilization != nil {
				util = strconv.FormatFloat(*g.Utilization*100, 'f', 0, 64) + "%"
			}
			if g.TemperatureCelsius != nil {
				temp = strconv.FormatFloat(*g.TemperatureCelsius, 'f', 0, 64) + "C"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Node, g.Index, g.Model,
				ledger.FormatBytes(g.UsedBytes), ledger.FormatBytes(g.FreeBytes), ledger.FormatBytes(g.TotalBytes), util, temp)
		}
	}
	for _, warning := range r.Warnings {
		fmt.Fprintf(tw, "Warning: %s\n", warning)
	}
	return tw.Flush()
}

type tableRow struct {
	bytes int64
	cells []string
}

// tableRows merges pods and unattributed memory, both sorted by memory
// held, into one list: whoever holds the most comes first.
func tableRows(r *Report) []tableRow {
	var pods, others []tableRow
	for _, p := range r.Pods {
		gpus := strings.Join(p.GPUs, ",")
		budget := "-"
		if p.Budget != nil {
			budget = p.Budget.String()
		}
		status := p.Status
		switch p.Status {
		case StatusOverBudget:
			status = "over budget by " + ledger.FormatBytes(p.OverBytes)
		case StatusNoBudget:
			status = "no budget"
		}
		pods = append(pods, tableRow{p.MemoryBytes, []string{p.Namespace, p.Name, p.Node, orDash(gpus), ledger.FormatBytes(p.MemoryBytes), budget, status}})
	}
	for _, u := range r.Unattributed {
		text, ok := unattributedRows[u.Reason]
		if !ok {
			text = [2]string{"<" + u.Reason + ">", u.Reason}
		}
		others = append(others, tableRow{u.MemoryBytes, []string{"-", text[0], u.Node, u.GPU, ledger.FormatBytes(u.MemoryBytes), "-", text[1]}})
	}
	out := make([]tableRow, 0, len(pods)+len(others))
	for len(pods) > 0 || len(others) > 0 {
		if len(others) == 0 || (len(pods) > 0 && pods[0].bytes >= others[0].bytes) {
			out, pods = append(out, pods[0]), pods[1:]
		} else {
			out, others = append(out, others[0]), others[1:]
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
