package pluginconfig

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gpuslice/gpuslice/internal/table"
	"github.com/gpuslice/gpuslice/pkg/ledger"
)

// Validation is the outcome of checking one config, as `gpuslice config
// validate` prints it.
type Validation struct {
	Source          string           `json:"source"`
	Valid           bool             `json:"valid"`
	Problems        []FieldError     `json:"problems,omitempty"`
	SharedResources []SharedResource `json:"sharedResources,omitempty"`
	// Notes are not problems: what the config lets users misread.
	Notes []string `json:"notes,omitempty"`
	// Drift is where the running device plugin does not match the
	// cluster's config (--from-cluster): a node advertising other
	// resources, a plugin started before the ConfigMap changed.
	Drift []string `json:"drift,omitempty"`
}

// MultiShare is a workload requesting more than one share per pod.
type MultiShare struct {
	Workload string // "ai/whisper"
	Resource string
	PerPod   int64
}

// MultiShares are the ledger's workloads asking more than one share of a
// resource per pod, each once.
func MultiShares(r *ledger.Report) []MultiShare {
	var out []MultiShare
	seen := map[MultiShare]bool{}
	add := func(ws []ledger.Workload) {
		for _, w := range ws {
			if w.Pods == 0 || w.Shares/int64(w.Pods) <= 1 {
				continue
			}
			m := MultiShare{Workload: w.Namespace + "/" + w.Name, Resource: w.Resource, PerPod: w.Shares / int64(w.Pods)}
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	for _, n := range r.Nodes {
		add(n.Workloads)
	}
	add(r.Pending)
	return out
}

// NoteMultiShare notes, for each time-sliced resource that lets pods ask
// for more than one share, that more shares buy no more GPU time, naming
// the workloads (from the cluster; none for a file) that ask for more.
func (v *Validation) NoteMultiShare(multi []MultiShare) {
	for _, r := range v.SharedResources {
		if r.Strategy != StrategyTimeSlicing || r.FailRequestsGreaterThanOne {
			continue
		}
		var who []string
		for _, m := range multi {
			if m.Resource == r.Name {
				who = append(who, fmt.Sprintf("%s asks %d", m.Workload, m.PerPod))
			}
		}
		note := fmt.Sprintf("%s: a pod may request more than one share, but under time-slicing every process gets an equal slice of the GPU: more shares are more scheduler places, not more time", r.Name)
		if len(who) > 0 {
			note += " (" + strings.Join(who, ", ") + ")"
		}
		v.Notes = append(v.Notes, note+"; set sharing.timeSlicing.failRequestsGreaterThanOne: true to refuse such requests (docs/status.md)")
	}
}

// NewValidation turns Parse's (or FromConfigMap's) result into a report.
// Errors that are not about the config's content (no such key, I/O) are
// returned as they are.
func NewValidation(source string, cfg *Config, err error) (*Validation, error) {
	if err == nil {
		return &Validation{Source: source, Valid: true, SharedResources: cfg.SharedResources()}, nil
	}
	var ve ValidationErrors
	if errors.As(err, &ve) {
		return &Validation{Source: source, Problems: ve}, nil
	}
	return nil, err
}

// WriteTable prints the shared resources of a valid config, or one row per
// problem: where, what, and the fix.
func (v *Validation) WriteTable(w io.Writer) error {
	tw := table.NewWriter(w)
	if v.Valid {
		fmt.Fprintf(w, "%s: valid\n", v.Source)
		if len(v.SharedResources) > 0 {
			fmt.Fprintln(tw, "ADVERTISED\tSHARES OF\tSTRATEGY\tPER GPU\tMULTI-SHARE REQUESTS")
			for _, r := range v.SharedResources {
				multi := "allowed"
				if r.FailRequestsGreaterThanOne {
					multi = "refused"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Name, r.Original, r.Strategy, r.Replicas, multi)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, n := range v.Notes {
			fmt.Fprintln(w, "Note: "+n)
		}
		for _, d := range v.Drift {
			fmt.Fprintln(w, "Drift: "+d)
		}
		return nil
	}
	fmt.Fprintf(w, "%s: %d problem(s)\n", v.Source, len(v.Problems))
	fmt.Fprintln(tw, "LINE\tFIELD\tPROBLEM\tFIX")
	for _, p := range v.Problems {
		line := "-"
		if p.Line > 0 {
			line = strconv.Itoa(p.Line)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", line, orDash(p.Path), p.Message, orDash(p.Fix))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
