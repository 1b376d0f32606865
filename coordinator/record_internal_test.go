package coordinator

import (
	"errors"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestReleaseRecordRetention: a kept release record is readable until its
// retention ends and deleted by the next record kept after that, through
// the time index (the pruning reads the index up to the cutoff, not the
// records kept).
func TestReleaseRecordRetention(t *testing.T) {
	db, err := kv.Open(kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	c := &Coordinator{cfg: Config{DB: db, Now: func() time.Time { return now }, ReleaseRecordRetention: 7 * 24 * time.Hour}}
	keep := func(id string) {
		t.Helper()
		if err := c.saveReleaseRecord(&coordinatorv1.ReleaseRecord{QueryId: id, ReleasedUnixMs: now.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() (records, index int) {
		t.Helper()
		if err := db.View(func(tx *kv.Txn) error {
			if err := tx.IterateKeys(prefixReleaseRecord, func([]byte) error { records++; return nil }); err != nil {
				return err
			}
			return tx.IterateKeys(prefixReleaseRecordAt, func([]byte) error { index++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return records, index
	}
	keep("q-old")
	now = t0.Add(time.Hour)
	keep("q-newer")
	if r, err := c.ReleaseRecord("q-old"); err != nil || r.GetQueryId() != "q-old" {
		t.Fatalf("a record within its retention: %v, %v", r, err)
	}
	now = t0.Add(7*24*time.Hour + 30*time.Minute)
	if _, err := c.ReleaseRecord("q-old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a record past its retention was served: %v", err)
	}
	keep("q-late")
	if r, i := stored(); r != 2 || i != 2 {
		t.Fatalf("after keeping a record past q-old's retention: %d records, %d index keys; want 2 and 2", r, i)
	}
	if _, err := c.ReleaseRecord("q-newer"); err != nil {
		t.Fatalf("a record within its retention after pruning: %v", err)
	}
	now = t0.Add(30 * 24 * time.Hour)
	keep("q-last")
	if r, i := stored(); r != 1 || i != 1 {
		t.Fatalf("after all others expired: %d records, %d index keys; want 1 and 1", r, i)
	}
}
