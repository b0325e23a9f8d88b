package ledger

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gpuslice/gpuslice/pkg/workload"

	"github.com/gpuslice/gpuslice/internal/table"
)

// sharesNA is what webhook-only workloads show instead of a share count;
// the star points at the footnote, as in the seed.
const sharesNA = "N/A*"

const webhookFootnote = "* uses the webhook without a share request: its GPU time is not accounted"

// timeSliceNote says once what OF REPLICAS is not (docs/status.md).
const timeSliceNote = "OF REPLICAS is the share of the time-slicing replicas, not of GPU time: every process on the GPU gets an equal slice (docs/status.md)"

// row is one line of a share table; summary lines (Available, Total) are
// rows too so they line up with the workloads.
type row struct {
	name, namespace, method, shares, percent, kind, pods, resource string
}

type column struct {
	header string
	cell   func(row) string
}

var (
	colWorkload  = column{"WORKLOAD", func(r row) string { return r.name }}
	colNamespace = column{"NAMESPACE", func(r row) string { return r.namespace }}
	colMethod    = column{"METHOD", func(r row) string { return r.method }}
	colShares    = column{"GPU SHARES", func(r row) string { return r.shares }}
	colPercent   = column{"OF REPLICAS", func(r row) string { return r.percent }}
	colKind      = column{"KIND", func(r row) string { return r.kind }}
	colPods      = column{"PODS", func(r row) string { return r.pods }}
	colResource  = column{"RESOURCE", func(r row) string { return r.resource }}
)

// WriteTable renders the report like kubectl: per GPU node a header line,
// the share table (the seed's "Current GPU Allocation") and the VRAM table
// ("GPU Memory Considerations"); then pending workloads and warnings.
// wide adds KIND and PODS; RESOURCE is added by wide and whenever a node
// has more than one GPU resource to hand out, since the rows would be
// ambiguous without it.
func WriteTable(w io.Writer, r *Report, wide bool) error {
	var buf bytes.Buffer
	tw := table.NewWriter(&buf)
	if len(r.Nodes) == 0 {
		fmt.Fprintln(tw, "No GPU nodes found.")
	}
	for i := range r.Nodes {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		writeNode(tw, &r.Nodes[i], wide)
	}
	if len(r.Pending) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "PENDING  not scheduled yet, not counted as allocated")
		cols := []column{colWorkload, colNamespace, colMethod, colShares}
		if wide {
			cols = append(cols, colKind, colPods)
		}
		rows := make([]row, 0, len(r.Pending))
		for _, wl := range r.Pending {
			rows = append(rows, workloadRow(wl))
		}
		writeRows(tw, append(cols, colResource), rows)
	}
	if len(r.Interventions) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "RELEASED OR LOWERED  by gpuslice: fewer pods or less memory until undone")
		fmt.Fprintln(tw, "WORKLOAD\tNAMESPACE\tACTION\tDETAIL\tBY\tAT\tWHY\tUNDO")
		for _, iv := range r.Interventions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", iv.Workload.String(), iv.Workload.Namespace, iv.Action, iv.Detail,
				orUnknown(iv.By, "-"), orUnknown(iv.At, "-"), orUnknown(iv.Reason, "-"), iv.Undo)
		}
	}
	if len(r.Nodes) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, timeSliceNote)
	}
	for _, warning := range r.Warnings {
		fmt.Fprintln(tw, "Warning: "+warning)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func writeNode(w io.Writer, n *NodeReport, wide bool) {
	var handed []ResourceUsage // resources with shares to hand out
	var usage []string
	for _, u := range n.Resources {
		if u.Allocatable > 0 || u.Allocated > 0 {
			handed = append(handed, u)
			usage = append(usage, fmt.Sprintf("%s %d/%d allocated", u.Name, u.Allocated, u.Allocatable))
		}
	}
	if len(usage) == 0 {
		usage = append(usage, "no allocatable GPU resources")
	}
	fmt.Fprintf(w, "NODE %s  %s  %s  %s\n", n.Name, orUnknown(n.GPUProduct, "unknown GPU model"),
		gpuSummary(n), strings.Join(usage, ", "))
	if n.NotReady != "" {
		fmt.Fprintf(w, "Node %s: no free shares until it is Ready again (kubectl describe node %s)\n", n.NotReady, n.Name)
	}

	cols := []column{colWorkload, colNamespace, colMethod, colShares, colPercent}
	if wide {
		cols = append(cols, colKind, colPods)
	}
	if wide || len(handed) > 1 {
		cols = append(cols, colResource)
	}
	rows := make([]row, 0, len(n.Workloads)+2*len(handed))
	webhook := false
	for _, wl := range n.Workloads {
		rows = append(rows, workloadRow(wl))
		webhook = webhook || wl.Method == MethodWebhook
	}
	for _, u := range handed {
		rows = append(rows, summaryRow("Available", u.Free, u))
	}
	for _, u := range handed {
		rows = append(rows, summaryRow("Total", u.Allocatable, u))
	}
	writeRows(w, cols, rows)
	if webhook {
		fmt.Fprintln(w, webhookFootnote)
	}

	fmt.Fprintln(w)
	writeVRAM(w, n)
}

// gpuSummary is "1 GPU x 12Gi", with "8 replicas/GPU" when time-sliced.
func gpuSummary(n *NodeReport) string {
	count := "? GPUs"
	switch {
	case n.GPUCount == 1:
		count = "1 GPU"
	case n.GPUCount > 1:
		count = strconv.Itoa(n.GPUCount) + " GPUs"
	}
	s := count + " x " + orUnknown(memoryOrZero(n.GPUMemoryBytes), "? VRAM")
	if n.GPUReplicas > 1 {
		s += fmt.Sprintf("  %d replicas/GPU", n.GPUReplicas)
	}
	return s
}

func writeVRAM(w io.Writer, n *NodeReport) {
	fmt.Fprintln(w, "WORKLOAD\tNAMESPACE\tEXPECTED\tSOURCE")
	seen := map[ownerKey]bool{} // one line per workload, not per resource
	for _, wl := range n.Workloads {
		id := ownerKey{wl.Namespace, wl.Kind, wl.Name}
		if seen[id] {
			continue
		}
		seen[id] = true
		expected := "?"
		if wl.Memory != nil {
			expected = wl.Memory.String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", wl.Name, wl.Namespace, expected, wl.MemorySource)
	}

	v := n.VRAM
	line := "VRAM expected " + formatRange(v.MinBytes, v.MaxBytes)
	if v.AvailableBytes > 0 {
		line += ", available " + formatBytes(v.AvailableBytes)
	} else {
		line += ", available unknown (set the " + workload.AnnotationNodeGPUMemory + " annotation)"
	}
	if len(v.Unknown) > 0 {
		line += fmt.Sprintf(", %d workload(s) without an estimate: %s", len(v.Unknown), strings.Join(v.Unknown, ", "))
	}
	fmt.Fprintln(w, line)
	if v.Risk != "" {
		fmt.Fprintln(w, "Risk: "+v.Risk)
	}
}

func workloadRow(wl Workload) row {
	r := row{
		name:      wl.Name,
		namespace: wl.Namespace,
		method:    wl.Method,
		shares:    strconv.FormatInt(wl.Shares, 10),
		percent:   orUnknown(wl.Percent, PercentNone),
		kind:      wl.Kind,
		pods:      strconv.Itoa(wl.Pods),
		resource:  orUnknown(wl.Resource, "-"),
	}
	if wl.Method == MethodWebhook {
		r.shares = sharesNA
	}
	return r
}

func summaryRow(name string, shares int64, u ResourceUsage) row {
	return row{
		name:      name,
		namespace: "-",
		shares:    strconv.FormatInt(shares, 10),
		percent:   formatPercent(shares, u.Allocatable),
		resource:  u.Name,
	}
}

func writeRows(w io.Writer, cols []column, rows []row) {
	cells := make([]string, len(cols))
	for i, c := range cols {
		cells[i] = c.header
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
	for _, r := range rows {
		for i, c := range cols {
			cells[i] = c.cell(r)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
}

func memoryOrZero(n int64) string {
	if n <= 0 {
		return ""
	}
	return formatBytes(n)
}

func orUnknown(s, unknown string) string {
	if s == "" {
		return unknown
	}
	return s
}
