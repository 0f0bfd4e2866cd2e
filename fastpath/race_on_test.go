//go:build race

package fastpath

// raceEnabled: the race detector changes allocation counts (sync.Pool drops
// items on purpose), so allocation gates skip under it.
const raceEnabled = true
