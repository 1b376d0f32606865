//go:build race

package synth

// raceEnabled: the race detector slows generation about tenfold; the
// proportion test then uses a smaller city.
const raceEnabled = true
