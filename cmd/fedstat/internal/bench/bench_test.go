package bench

import (
	"context"
	"strings"
	"testing"
)

// TestRunSmall runs the smallest benchmark cell end to end, so that the
// benchmark code stays working (figures come from `fedstat bench`). It
// runs the weekly counts by region over one quarter, not the year of
// Queries[1]: the range proofs of 530 slots take each node about 2 s, tens
// of seconds under the race detector, and the code path is the same.
func TestRunSmall(t *testing.T) {
	weekly := Queries[1]
	weekly.SQL = strings.Replace(weekly.SQL, "'2022-12-31'", "'2022-03-31'", 1)
	if weekly.SQL == Queries[1].SQL {
		t.Fatalf("the weekly query no longer ends on 2022-12-31: %s", weekly.SQL)
	}
	queries := []Query{Queries[0], weekly, Queries[2]}
	cells, err := Run(context.Background(), Options{Nodes: 3, Patients: 2000, Repeats: 3, Queries: queries})
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != len(queries) {
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
