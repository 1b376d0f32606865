package demo

import "testing"

// TestFreePortNeverRepeats: ports handed to the daemons of a demo network
// are distinct and below the kernel's ephemeral range, so that no two
// daemons (nor a port-0 listener) get the same one.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	low := ephemeralLow()
	for range 300 {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] || p >= low {
			t.Fatalf("port %d: repeated %v, ephemeral range starts at %d", p, seen[p], low)
		}
		seen[p] = true
	}
}
