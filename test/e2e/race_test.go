//go:build race

package e2e

// raceEnabled: under the race detector the linkage's group arithmetic and
// the ceremonies of large committees run about eight times slower, with
// little concurrency of their own to check; the tests that are mostly that
// skip under it (noRace), and scripts/test.sh runs them without it.
const raceEnabled = true
