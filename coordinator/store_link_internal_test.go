package coordinator

import (
	"strings"
	"testing"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/kv"
)

// TestStoredEpochKeepsLinkKey: the linkage public key and the committee's
// verification keys, which the proofs of decryption shares are checked
// against, survive a restart of the coordinator; an epoch stored without
// them loads without them (and linkSpec refuses its linked queries, naming
// the missing key, rather than decrypting on trust).
func TestStoredEpochKeepsLinkKey(t *testing.T) {
	homomorphic.AllowInsecureForTests()
	p, err := homomorphic.NewParams(homomorphic.InsecureTestSet)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	points := []uint64{1, 2, 3}
	var commits [][]linkage.Point
	for range points {
		d, err := linkage.Deal(2, points)
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, d.Commitments)
	}
	lk, err := linkage.AggregatePublicKey(commits, points)
	if err != nil {
		t.Fatal(err)
	}
	db, err := kv.Open(kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, link := range []*linkage.PublicKey{lk, nil} {
		c := &Coordinator{params: p, cfg: Config{DB: db}}
		if err := c.saveEpoch(&epoch{ID: 7, Threshold: 2, PublicKey: rk.Public(), Link: link}); err != nil {
			t.Fatal(err)
		}
		again := &Coordinator{params: p, cfg: Config{DB: db}, reg: map[string]*regNode{}}
		if err := again.loadState(); err != nil {
			t.Fatal(err)
		}
		got := again.epoch.Link
		if link == nil {
			if got != nil {
				t.Fatalf("an epoch stored without a linkage key loads with %v", got)
			}
			if _, err := again.linkSpec(again.epoch, nil); err == nil || !strings.Contains(err.Error(), "has no linkage key at the coordinator") {
				t.Fatalf("linkSpec without the key: %v", err)
			}
			continue
		}
		if got == nil || got.X != lk.X || len(got.Verify) != len(points) {
			t.Fatalf("stored linkage key %v, loaded %v", lk, got)
		}
		for _, pt := range points {
			if got.Verify[pt] != lk.Verify[pt] {
				t.Errorf("verification key of point %d changed across the restart", pt)
			}
		}
	}
}
