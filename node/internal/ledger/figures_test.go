package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/kv"
)

func answer() ([]byte, error) { return []byte("partial"), nil }

// Every debit is a watermarked update, so a store that later loses one is
// refused at open (kv.ErrRolledBack) instead of handing its budget out
// again; refusals and replays are not.
func TestDebitsAreWatermarked(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	l := New(db, Limits{TotalRho: 1, PerAnalystRho: 1})
	ctx := context.Background()
	for i := range 5 {
		if _, _, err := l.Charge(ctx, fmt.Sprintf("q-%d", i), "alice", 0.1, answer); err != nil {
			t.Fatal(err)
		}
	}
	l.Charge(ctx, "q-0", "alice", 0.1, answer)   // replay
	l.Charge(ctx, "q-big", "alice", 0.9, answer) // refused
	if w, err := db.Watermark(); err != nil || w != 5 {
		t.Fatalf("watermark after 5 debits, a replay and a refusal: %d, %v", w, err)
	}
	f, err := l.Figures()
	if err != nil {
		t.Fatal(err)
	}
	if f.Charges != 5 || f.Analysts["alice"] < 0.5-1e-12 || f.TotalRho < 0.5-1e-12 {
		t.Errorf("figures %v", f)
	}
}

// InDebit's writes commit with the debit; AfterDebit sees the figures in
// commit order, never decreasing, also under concurrent charges.
func TestHooks(t *testing.T) {
	db := memDB(t)
	var mu sync.Mutex
	var seen []Figures
	l := NewWithHooks(db, Limits{TotalRho: 100, PerAnalystRho: 100}, Hooks{
		InDebit: func(tx *kv.Txn) error {
			return tx.Set([]byte("n/anchor"), []byte("head"))
		},
		AfterDebit: func(f Figures) error {
			mu.Lock()
			seen = append(seen, f)
			mu.Unlock()
			return nil
		},
	})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			who := []string{"alice", "bob"}[i%2]
			if _, _, err := l.Charge(context.Background(), fmt.Sprintf("q-%d", i), who, 0.25, answer); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(seen) != 20 {
		t.Fatalf("AfterDebit ran %d times for 20 debits", len(seen))
	}
	for i, f := range seen {
		if f.Charges != uint64(i+1) {
			t.Errorf("AfterDebit call %d saw %d charges", i, f.Charges)
		}
		if i > 0 && f.Below(seen[i-1]) != nil {
			t.Errorf("figures went backwards: %v after %v", f, seen[i-1])
		}
	}
	if v, err := db.Get([]byte("n/anchor")); err != nil || string(v) != "head" {
		t.Errorf("InDebit's write: %q, %v", v, err)
	}
}

// An InDebit failure aborts the debit; an AfterDebit failure leaves it
// committed, withholds the answer, and a re-delivery replays it.
func TestHookFailures(t *testing.T) {
	db := memDB(t)
	fail := errors.New("disk says no")
	l := NewWithHooks(db, Limits{TotalRho: 1, PerAnalystRho: 1}, Hooks{InDebit: func(*kv.Txn) error { return fail }})
	if _, _, err := l.Charge(context.Background(), "q-1", "alice", 0.5, answer); !errors.Is(err, fail) {
		t.Fatalf("InDebit failure: %v", err)
	}
	if f, _ := l.Figures(); !f.Zero() {
		t.Fatalf("a debit whose InDebit failed was committed: %v", f)
	}

	l = NewWithHooks(db, Limits{TotalRho: 1, PerAnalystRho: 1}, Hooks{AfterDebit: func(Figures) error { return fail }})
	ans, _, err := l.Charge(context.Background(), "q-1", "alice", 0.5, answer)
	if !errors.Is(err, ErrCommittedNotConfirmed) || !errors.Is(err, fail) || ans != nil {
		t.Fatalf("AfterDebit failure: %q, %v; want no answer and ErrCommittedNotConfirmed", ans, err)
	}
	ans, replayed, err := l.Charge(context.Background(), "q-1", "alice", 0.5, mustNotCompute(t))
	if err != nil || !replayed || string(ans) != "partial" {
		t.Fatalf("re-delivery after an unconfirmed debit: %q %v %v", ans, replayed, err)
	}
	if f, _ := l.Figures(); f.Charges != 1 || f.TotalRho != 0.5 {
		t.Errorf("figures %v, want one debit of 0.5", f)
	}
}

func TestFiguresBelowAndMax(t *testing.T) {
	a := Figures{TotalRho: 0.3, Charges: 3, Analysts: map[string]float64{"alice": 0.2, "bob": 0.1}}
	if g := a.Below(a); g != nil {
		t.Errorf("a below itself: %v", g)
	}
	// The same debits summed in another order.
	b := Figures{TotalRho: 0.1 + 0.2, Charges: 3, Analysts: map[string]float64{"alice": 0.2, "bob": 0.1}}
	if g := a.Below(b); g != nil {
		t.Errorf("a below a reordered sum: %v", g)
	}
	c := Figures{TotalRho: 0.35, Charges: 4, Analysts: map[string]float64{"alice": 0.2, "carol": 0.05}}
	g := a.Below(c)
	if len(g) != 3 || g[0].What != "total rho" || g[1].What != "charges" || g[2].What != `rho of analyst "carol"` {
		t.Errorf("gaps %v", g)
	}
	m := MaxFigures(a, c)
	if m.TotalRho != 0.35 || m.Charges != 4 || m.Analysts["alice"] != 0.2 || m.Analysts["bob"] != 0.1 || m.Analysts["carol"] != 0.05 {
		t.Errorf("max %v", m)
	}
	if m.Below(a) != nil || m.Below(c) != nil {
		t.Errorf("max below an argument")
	}
}

// CarryForward raises every figure to the floor, lowers none, records
// itself, and later charges count on from there.
func TestCarryForward(t *testing.T) {
	db := memDB(t)
	l := New(db, Limits{TotalRho: 10, PerAnalystRho: 10})
	ctx := context.Background()
	l.Charge(ctx, "q-1", "alice", 0.5, answer)
	l.Charge(ctx, "q-2", "bob", 0.25, answer)
	floor := Figures{TotalRho: 1.5, Charges: 4, Analysts: map[string]float64{"alice": 1.25, "carol": 0.25}}
	after, err := CarryForward(db, floor, "restore of backup B", time.Unix(100, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := Figures{TotalRho: 1.5, Charges: 4, Analysts: map[string]float64{"alice": 1.25, "bob": 0.25, "carol": 0.25}}
	if after.Below(want) != nil || want.Below(after) != nil {
		t.Fatalf("after carry-forward %v, want %v", after, want)
	}
	if got, _ := l.Figures(); got.Below(want) != nil {
		t.Fatalf("ledger %v, want %v", got, want)
	}
	if _, err := CarryForward(db, Figures{TotalRho: 0.1}, "lower", time.Unix(200, 0)); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Figures(); got.Below(want) != nil {
		t.Fatalf("a lower floor lowered the ledger: %v", got)
	}
	if _, _, err := l.Charge(ctx, "q-3", "alice", 0.5, answer); err != nil {
		t.Fatal(err)
	}
	if s, lim, _ := l.Spent("alice"); s != 1.75 || lim != 10 {
		t.Errorf("alice spent %v after carry-forward and a charge, want 1.75", s)
	}
	es, _ := l.Entries(Filter{})
	if len(es) != 3 || es[2].Seq != 5 {
		t.Errorf("entries %v: the third charge should be charge 5", es)
	}
	cs, err := CarriedForward(db)
	if err != nil || len(cs) != 2 || cs[0].Reason != "restore of backup B" || cs[0].Before.Charges != 2 {
		t.Errorf("carried %+v, %v", cs, err)
	}
}
