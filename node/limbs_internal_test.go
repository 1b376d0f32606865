package node

import (
	"errors"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestLimbWitnessKept: the witness of a partial is kept through its
// release window (the spec's approval wait widens it) and limbWitnessGrace,
// and dropped at the next witness kept after that; a witness kept again
// for the same query (a series interval sent again) keeps its later time.
func TestLimbWitnessKept(t *testing.T) {
	db, err := kv.Open(kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	n := &Node{cfg: Config{DB: db, MaxSkew: 5 * time.Minute, Now: func() time.Time { return now }}}
	kept := func(qid string) bool {
		t.Helper()
		_, err := db.Get(limbWitnessKey(qid))
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	seed := make([]byte, 32)
	plain := &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients"}
	waits := &typesv1.QuerySpec{Sql: "SELECT COUNT(*) FROM patients", ApprovalWaitSeconds: 24 * 3600}
	for _, k := range []struct {
		qid  string
		spec *typesv1.QuerySpec
	}{{"q-plain", plain}, {"q-waits", waits}, {"q-again", plain}} {
		if err := n.keepLimbWitness(k.qid, k.spec, seed, []int64{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	// Past the plain queries' window and grace, within the waiting one's.
	now = now.Add(5*time.Minute + limbWitnessGrace + time.Minute)
	if err := n.keepLimbWitness("q-again", plain, seed, []int64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := n.keepLimbWitness("q-next", plain, seed, []int64{1}); err != nil {
		t.Fatal(err)
	}
	for qid, want := range map[string]bool{"q-plain": false, "q-waits": true, "q-again": true, "q-next": true} {
		if kept(qid) != want {
			t.Errorf("%s: kept %v, want %v", qid, !want, want)
		}
	}
	now = now.Add(24 * time.Hour)
	if err := n.keepLimbWitness("q-last", plain, seed, []int64{1}); err != nil {
		t.Fatal(err)
	}
	for qid, want := range map[string]bool{"q-waits": false, "q-again": false, "q-next": false, "q-last": true} {
		if kept(qid) != want {
			t.Errorf("a day later, %s: kept %v, want %v", qid, !want, want)
		}
	}
}
