//go:build race

package dp

// raceEnabled: the race detector slows pure arithmetic about tenfold, so the
// exact accountant checks a sample of network sizes under it; scripts/test.sh
// also runs it without the race detector, over every size.
const raceEnabled = true
