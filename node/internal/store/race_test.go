//go:build race

package store

// raceEnabled: the race detector multiplies memory and slows the large
// imports of the study tests; they measure memory only without it and use
// fewer rows with it.
const raceEnabled = true
