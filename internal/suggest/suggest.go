// Package suggest finds the name a person probably meant, for "did you
// mean" hints: loopgate's flag errors (cmd/loopgate) and web.config's
// unknown handler settings (configload) use the one rule. It is pure (no
// I/O, no state) so configload may import it; it does not word the hint,
// its callers do.
package suggest

import "strings"

// Closest returns the candidate nearest to name, or "" when none is near
// enough to be what was meant: at most 1 edit for names up to 4
// characters, 2 for longer ones (case ignored). Ties go to the first.
func Closest(name string, candidates []string) string {
	name = strings.ToLower(name)
	limit := 2
	if len(name) <= 4 {
		limit = 1
	}
	best, bestDist := "", limit+1
	for _, c := range candidates {
		if d := EditDistance(name, strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// EditDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of adjacent bytes count one each.
func EditDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
