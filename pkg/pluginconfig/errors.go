package pluginconfig

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem in a config.
type FieldError struct {
	// Path is the field, e.g. "sharing.timeSlicing.resources[0].replicas";
	// empty for problems of the document as a whole (YAML syntax).
	Path string `json:"path,omitempty"`
	// Line is the 1-based YAML line, 0 when unknown (Validate on a Config
	// built in code has no lines).
	Line int `json:"line,omitempty"`
	// Message says what is wrong and what the plugin would do with it.
	Message string `json:"message"`
	// Fix says how to correct it.
	Fix string `json:"fix,omitempty"`
}

// Error formats the problem as "path (line N): message (fix: ...)".
func (e FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.Path != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s (line %d): ", e.Path, e.Line)
	case e.Path != "":
		b.WriteString(e.Path + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Message)
	if e.Fix != "" {
		b.WriteString(" (fix: " + e.Fix + ")")
	}
	return b.String()
}

// ValidationErrors is every problem found in a config, in document order
// when lines are known.
type ValidationErrors []FieldError

// Error lists every problem, one per line.
func (es ValidationErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each FieldError to errors.As.
func (es ValidationErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Err returns es as an error, or nil when it is empty. Use it instead of
// assigning a ValidationErrors to an error variable: a nil slice in an
// interface is not a nil error.
func (es ValidationErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// sortByLine orders problems by line, keeping those without a line last and
// otherwise keeping discovery order.
func (es ValidationErrors) sortByLine() {
	sort.SliceStable(es, func(i, j int) bool {
		li, lj := es[i].Line, es[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
}
