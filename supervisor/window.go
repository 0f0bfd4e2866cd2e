package supervisor

import "time"

// rapidFailWindow is the sliding 60 s window of crashes and failed starts
// (DESIGN.md §4: sliding, both kinds count, never a permanent stop). Not
// safe for concurrent use: the app goroutine owns it.
type rapidFailWindow struct {
	times []time.Time // oldest first
}

const rapidFailSpan = time.Minute

func (w *rapidFailWindow) add(now time.Time) {
	w.prune(now)
	w.times = append(w.times, now)
}

func (w *rapidFailWindow) prune(now time.Time) {
	i := 0
	for i < len(w.times) && now.Sub(w.times[i]) >= rapidFailSpan {
		i++
	}
	w.times = append(w.times[:0], w.times[i:]...)
}

// blocked reports whether the failures in the last 60 s exceed limit (the
// reference blocks when count > limit).
func (w *rapidFailWindow) blocked(now time.Time, limit int) bool {
	w.prune(now)
	return len(w.times) > limit
}

// freeAt is when enough failures will have left the window for a start to
// be allowed again; only meaningful while blocked.
func (w *rapidFailWindow) freeAt(limit int) time.Time {
	return w.times[len(w.times)-limit-1].Add(rapidFailSpan)
}

func (w *rapidFailWindow) reset() { w.times = w.times[:0] }
