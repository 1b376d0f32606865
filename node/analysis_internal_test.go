package node

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/internal/kv"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// TestCheckedRoundsKept: a round result the node checked is kept, as
// checked, and dropped once checkedRoundRetention has passed (at the next
// one kept); a round never checked is not known.
func TestCheckedRoundsKept(t *testing.T) {
	db, err := kv.Open(kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	n := &Node{cfg: Config{DB: db, Now: func() time.Time { return now }}}
	res := &typesv1.Result{Columns: []string{"n"}, Rows: []*typesv1.Row{{Values: []*typesv1.Number{{Value: 42}}}}}
	if err := n.rememberRound("q-old", res); err != nil {
		t.Fatal(err)
	}
	got, err := n.checkedRound("q-old")
	if err != nil || !proto.Equal(got, res) {
		t.Fatalf("the round checked: %v, %v", got, err)
	}
	if got, err := n.checkedRound("q-never"); err != nil || got != nil {
		t.Fatalf("a round never checked: %v, %v", got, err)
	}
	now = now.Add(checkedRoundRetention + time.Minute)
	if err := n.rememberRound("q-new", res); err != nil {
		t.Fatal(err)
	}
	if got, err := n.checkedRound("q-old"); err != nil || got != nil {
		t.Fatalf("a round checked more than %s ago is still kept: %v, %v", checkedRoundRetention, got, err)
	}
	if got, err := n.checkedRound("q-new"); err != nil || got == nil {
		t.Fatalf("the round checked now: %v, %v", got, err)
	}
}
