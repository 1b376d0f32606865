//go:build race

package continual_test

// raceEnabled: the race detector slows the noise draws about tenfold, so
// the privacy audit runs a smoke of one placement and its control.
const raceEnabled = true
