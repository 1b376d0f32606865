package bench

import (
	"context"
	"testing"
)

// TestRunSmall runs the smallest benchmark cell end to end, so that the
// benchmark code stays working (figures come from `fedstat bench`).
func TestRunSmall(t *testing.T) {
	cells, err := Run(context.Background(), Options{Nodes: 3, Patients: 2000, Repeats: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != len(Queries) {
		t.Fatalf("%d cells", len(cells))
	}
	for _, c := range cells {
		if c.P50Ms <= 0 || c.PlaintextP50Ms <= 0 || c.UploadBytesPerNode <= 0 || c.Slots == 0 || c.NodeMs <= 0 || c.CoordinatorMs <= 0 || c.CPUMsPerQuery <= 0 {
			t.Errorf("incomplete cell %+v", c)
		}
		// A partial and, for decryptors, a key-switch share: one ciphertext
		// each at these sizes, so well under 1 MiB.
		if c.UploadBytesPerNode > 1<<20 {
			t.Errorf("%s: %d bytes uploaded per node", c.Query, c.UploadBytesPerNode)
		}
	}
}

func BenchmarkCohort3x10k(b *testing.B) {
	for range b.N {
		if _, err := Run(context.Background(), Options{Nodes: 3, Patients: 10000, Repeats: 20, Queries: Queries[:1]}); err != nil {
			b.Fatal(err)
		}
	}
}
