// Package suggest finds the word a user probably meant, for "did you mean"
// hints in configuration errors.
package suggest

import (
	"strings"
)

// Closest returns the candidate nearest to s, if any is near enough to be a
// likely typo or a word cut short. caseOnly is true when s differs from it only by letter case,
// which deserves its own wording: field names and values are case-sensitive.
func Closest(s string, candidates []string) (best string, caseOnly bool) {
	ls := strings.ToLower(s)
	bestDist := maxTypoDistance(s) + 1
	for _, c := range candidates {
		if c == s {
			continue
		}
		lc := strings.ToLower(c)
		if lc == ls {
			return c, true
		}
		d := EditDistance(ls, lc)
		if len(ls) >= 3 && strings.HasPrefix(lc, ls) {
			d = min(d, 1) // a word cut short: "resource" for "resourceName"
		}
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	return best, false
}

// maxTypoDistance grows with the word: one slip in a short word, more in a
// long camelCase field name.
func maxTypoDistance(s string) int {
	switch n := len(s); {
	case n <= 4:
		return 1
	case n <= 10:
		return 2
	default:
		return 3
	}
}

// EditDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and swaps of two adjacent letters each cost one,
// so "renameByDefualt" is one step from "renameByDefault".
func EditDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// Three rolling rows: two back for swaps, one back, and the current one.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
