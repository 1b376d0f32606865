//go:build race

package node

// raceEnabled: the race detector slows the audit's arithmetic about tenfold,
// so TestPrivacyAudit runs a smoke test under it; scripts/test.sh runs the
// fast mode without it.
const raceEnabled = true
