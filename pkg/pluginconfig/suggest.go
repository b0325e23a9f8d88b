package pluginconfig

import (
	"strconv"
	"strings"

	"github.com/gpuslice/gpuslice/internal/suggest"
)

// didYouMean phrases a suggestion from suggest.Closest, or returns "".
func didYouMean(s string, candidates []string) string {
	best, caseOnly := suggest.Closest(s, candidates)
	switch {
	case best == "":
		return ""
	case caseOnly:
		return "names are case-sensitive: did you mean " + quote(best) + "?"
	default:
		return "did you mean " + quote(best) + "?"
	}
}

// quote wraps s in double quotes for messages.
func quote(s string) string { return strconv.Quote(s) }

// quoteAll quotes and joins a list for messages.
func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return strings.Join(q, ", ")
}
