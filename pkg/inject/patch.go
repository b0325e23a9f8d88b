package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// PatchOp is one RFC 6902 operation. Mutate only emits "add".
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// DecodePod decodes an admission request's pod the way the API server reads
// JSON: field names are case-sensitive and duplicate fields are rejected.
// The patch paths Mutate builds from the decoded pod are only guaranteed to
// match raw when raw decodes this way (a case-insensitive decoder would accept
// "Spec" where the patch needs "spec").
func DecodePod(raw []byte) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	strictErrs, err := sigsjson.UnmarshalStrict(raw, pod, sigsjson.DisallowDuplicateFields)
	if err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("decode pod: %w", errors.Join(strictErrs...))
	}
	return pod, nil
}

// PatchJSON returns the patch as the JSON an AdmissionResponse carries, or
// nil when there is nothing to patch.
func (d Decision) PatchJSON() ([]byte, error) {
	if len(d.Patch) == 0 {
		return nil, nil
	}
	data, err := json.Marshal(d.Patch)
	if err != nil {
		return nil, fmt.Errorf("marshal JSON patch: %w", err)
	}
	return data, nil
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapeKey escapes a map key for use as one JSON pointer segment (RFC 6901).
func escapeKey(key string) string { return pointerEscaper.Replace(key) }

// addToList appends items to the JSON array at listPath. Appending with "/-"
// needs the array to exist, which the decoded pod proves only when it is
// non-empty; otherwise the whole array is added, which also replaces an
// absent, null or empty one.
func addToList[T any](ops []PatchOp, listPath string, nonEmpty bool, items []T) []PatchOp {
	if len(items) == 0 {
		return ops
	}
	if !nonEmpty {
		return append(ops, PatchOp{Op: "add", Path: listPath, Value: items})
	}
	for _, item := range items {
		ops = append(ops, PatchOp{Op: "add", Path: listPath + "/-", Value: item})
	}
	return ops
}

// Warnings travel as HTTP Warning headers, which the API server limits to
// short printable text.
const (
	warningPrefix = "gpuslice: "
	maxWarningLen = 119
)

func warning(format string, args ...any) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, warningPrefix+fmt.Sprintf(format, args...))
	if len(s) > maxWarningLen {
		s = s[:maxWarningLen-3] + "..."
	}
	return s
}

// display shows a name from the pod as is when it is plain, quoted otherwise,
// so odd names cannot make a message ambiguous.
func display(name string) string {
	plain := name != ""
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._/", r)) {
			plain = false
			break
		}
	}
	if plain {
		return name
	}
	return strconv.Quote(name)
}

// shortList joins at most limit items and counts the rest, keeping warnings
// within their length limit.
func shortList(items []string, limit int) string {
	if len(items) <= limit {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s (+%d more)", strings.Join(items[:limit], ", "), len(items)-limit)
}

func displayAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = display(n)
	}
	return out
}
