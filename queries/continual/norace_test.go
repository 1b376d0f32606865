//go:build !race

package continual_test

const raceEnabled = false
