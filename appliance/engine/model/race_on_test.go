//go:build race

package model

// raceEnabled lets the heavier golden tests shorten their runs under the race detector, which
// slows this code about tenfold.
const raceEnabled = true
