package pluginconfig

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/gpuslice/gpuslice/internal/table"
)

// Validation is the outcome of checking one config, as `gpuslice config
// validate` prints it.
type Validation struct {
	Source          string           `json:"source"`
	Valid           bool             `json:"valid"`
	Problems        []FieldError     `json:"problems,omitempty"`
	SharedResources []SharedResource `json:"sharedResources,omitempty"`
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
		return tw.Flush()
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
