//go:build race

package pipeline

// raceEnabled skips the allocation counts, which the race detector's own allocations spoil.
const raceEnabled = true
