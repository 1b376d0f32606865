package ledger

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fedstat/fedstat/internal/kv"
)

func openDB(t *testing.T, dir string) *kv.DB {
	t.Helper()
	db, err := kv.Open(kv.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func memDB(t *testing.T) *kv.DB {
	t.Helper()
	db, err := kv.Open(kv.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// noisy returns a compute that produces fresh random bytes each call (like
// fresh noise) and counts its calls.
func noisy(calls *atomic.Int32) func() ([]byte, error) {
	return func() ([]byte, error) {
		calls.Add(1)
		b := make([]byte, 32)
		rand.Read(b)
		return b, nil
	}
}

func mustNotCompute(t *testing.T) func() ([]byte, error) {
	return func() ([]byte, error) {
		t.Error("compute called for a replay")
		return nil, errors.New("must not be called")
	}
}

// dump returns every key and value under the ledger prefix.
func dump(t *testing.T, db *kv.DB) string {
	t.Helper()
	var b strings.Builder
	if err := db.View(func(tx *kv.Txn) error {
		return tx.Iterate([]byte(Prefix), func(k, v []byte) error {
			fmt.Fprintf(&b, "%s=%x\n", k, v)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestConcurrentDuplicateDeliveriesDebitOnce(t *testing.T) {
	db := memDB(t)
	l := New(db, Limits{TotalRho: 10, PerAnalystRho: 1})
	var calls atomic.Int32
	const n = 50
	answers := make([][]byte, n)
	replays := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i], replays[i], errs[i] = l.Charge(context.Background(), "q-1", "alice", 0.25, noisy(&calls))
		}()
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if !bytes.Equal(answers[i], answers[0]) {
			t.Fatalf("caller %d got different bytes", i)
		}
		if !replays[i] {
			fresh++
		}
	}
	if fresh != 1 || calls.Load() != 1 {
		t.Fatalf("fresh answers %d, compute calls %d; want 1 and 1", fresh, calls.Load())
	}
	if s, lim, _ := l.Spent("alice"); s != 0.25 || lim != 1 {
		t.Fatalf("alice spent %g of %g, want 0.25 of 1", s, lim)
	}
	if s, _, _ := l.Total(); s != 0.25 {
		t.Fatalf("total spent %g, want 0.25", s)
	}
	es, err := l.Entries(Filter{})
	if err != nil || len(es) != 1 || es[0].QueryID != "q-1" || es[0].Seq != 1 || es[0].AnswerSize != 32 {
		t.Fatalf("entries %+v, %v", es, err)
	}
}

func TestConcurrentDistinctQueriesNeverOverspend(t *testing.T) {
	db := memDB(t)
	l := New(db, Limits{TotalRho: 100, PerAnalystRho: 1})
	var calls atomic.Int32
	var ok atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := l.Charge(context.Background(), fmt.Sprintf("q-%d", i), "bob", 0.1, noisy(&calls))
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrBudgetExhausted):
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 10 {
		t.Fatalf("%d charges of 0.1 succeeded in a budget of 1, want 10", ok.Load())
	}
	if s, _, _ := l.Spent("bob"); math.Abs(s-1) > 1e-9 {
		t.Fatalf("spent %g", s)
	}
}

func TestExhaustedRefusalNamesBudgetAndLeavesStoreUnchanged(t *testing.T) {
	db := memDB(t)
	l := New(db, Limits{TotalRho: 1, PerAnalystRho: 0.5, Analysts: map[string]float64{"carol": 2}})
	ctx := context.Background()
	var calls atomic.Int32
	if _, _, err := l.Charge(ctx, "a1", "alice", 0.4, noisy(&calls)); err != nil {
		t.Fatal(err)
	}
	before := dump(t, db)

	// The analyst's own budget.
	_, _, err := l.Charge(ctx, "a2", "alice", 0.2, noisy(&calls))
	var ee *ExhaustedError
	if !errors.Is(err, ErrBudgetExhausted) || !errors.As(err, &ee) {
		t.Fatalf("got %v, want ErrBudgetExhausted", err)
	}
	msg := err.Error()
	for _, want := range []string{`analyst "alice"`, "0.1 rho left", "needs 0.2 rho", "epsilon"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if math.Abs(ee.Remaining()-0.1) > 1e-12 {
		t.Errorf("remaining %g", ee.Remaining())
	}
	// The node total: carol may spend 2, the node only 1 (0.6 left).
	_, _, err = l.Charge(ctx, "c1", "carol", 0.7, noisy(&calls))
	if !errors.As(err, &ee) || ee.Budget != "node total" || !strings.Contains(err.Error(), "node total has 0.6 rho left") {
		t.Fatalf("got %v, want node total exhausted with 0.6 left", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("compute called %d times, want only for the first charge", calls.Load())
	}
	if after := dump(t, db); after != before {
		t.Fatalf("store changed by refused charges:\nbefore\n%s\nafter\n%s", before, after)
	}
	// An analyst overridden to 0 gets nothing.
	l0 := New(db, Limits{TotalRho: 1, Analysts: map[string]float64{"mallory": 0}})
	if _, _, err := l0.Charge(ctx, "m1", "mallory", 0.01, noisy(&calls)); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("mallory: %v", err)
	}
}

func TestComputeFailureDebitsNothing(t *testing.T) {
	db := memDB(t)
	l := New(db, Limits{})
	ctx := context.Background()
	boom := errors.New("boom")
	_, _, err := l.Charge(ctx, "q", "alice", 0.1, func() ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) || !errors.Is(err, ErrCompute) {
		t.Fatalf("got %v", err)
	}
	if d := dump(t, db); d != "" {
		t.Fatalf("store not empty after failed compute:\n%s", d)
	}
	// A retry computes afresh and is charged.
	var calls atomic.Int32
	if _, replayed, err := l.Charge(ctx, "q", "alice", 0.1, noisy(&calls)); err != nil || replayed || calls.Load() != 1 {
		t.Fatalf("retry: replayed=%v err=%v calls=%d", replayed, err, calls.Load())
	}
}

func TestCrashBetweenDebitAndReply(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	l := New(db, Limits{PerAnalystRho: 1})
	var calls atomic.Int32
	ans, replayed, err := l.Charge(context.Background(), "q-crash", "alice", 0.3, noisy(&calls))
	if err != nil || replayed {
		t.Fatal(err, replayed)
	}
	// The process dies before the reply leaves: the answer is lost on the
	// wire, the store is closed.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, dir)
	defer db.Close()
	l = New(db, Limits{PerAnalystRho: 1})
	again, replayed, err := l.Charge(context.Background(), "q-crash", "alice", 0.3, mustNotCompute(t))
	if err != nil || !replayed || !bytes.Equal(again, ans) {
		t.Fatalf("replay after crash: replayed=%v err=%v same=%v", replayed, err, bytes.Equal(again, ans))
	}
	if s, _, _ := l.Spent("alice"); s != 0.3 {
		t.Fatalf("spent %g after replay, want 0.3 (debited once)", s)
	}
	if s, _, _ := l.Total(); s != 0.3 {
		t.Fatalf("total %g, want 0.3", s)
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	l := New(db, Limits{})
	var calls atomic.Int32
	for i := range 3 {
		if _, _, err := l.Charge(context.Background(), fmt.Sprintf("q%d", i), "alice", 0.125, noisy(&calls)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := l.Charge(context.Background(), "qb", "bob", 0.5, noisy(&calls)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = openDB(t, dir)
	defer db.Close()
	l = New(db, Limits{})
	if s, lim, _ := l.Spent("alice"); s != 0.375 || lim != DefaultPerAnalystRho {
		t.Fatalf("alice %g of %g", s, lim)
	}
	if s, lim, _ := l.Total(); s != 0.875 || lim != DefaultTotalRho {
		t.Fatalf("total %g of %g", s, lim)
	}
	es, err := l.Entries(Filter{Analyst: "alice"})
	if err != nil || len(es) != 3 {
		t.Fatalf("entries %v %v", es, err)
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) || e.QueryID != fmt.Sprintf("q%d", i) || e.Time.IsZero() {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
	// The next charge continues the sequence.
	if _, _, err := l.Charge(context.Background(), "q9", "bob", 0.1, noisy(&calls)); err != nil {
		t.Fatal(err)
	}
	if es, _ := l.Entries(Filter{QueryID: "q9"}); len(es) != 1 || es[0].Seq != 5 {
		t.Fatalf("q9 entry %+v", es)
	}
}

func TestQueryIDReuseRefused(t *testing.T) {
	db := memDB(t)
	l := New(db, Limits{})
	ctx := context.Background()
	var calls atomic.Int32
	if _, _, err := l.Charge(ctx, "q", "alice", 0.1, noisy(&calls)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		analyst string
		rho     float64
	}{{"bob", 0.1}, {"alice", 0.2}} {
		if _, _, err := l.Charge(ctx, "q", c.analyst, c.rho, mustNotCompute(t)); !errors.Is(err, ErrQueryIDReuse) {
			t.Fatalf("%+v: got %v, want ErrQueryIDReuse", c, err)
		}
	}
}

func TestBadArguments(t *testing.T) {
	l := New(memDB(t), Limits{})
	ctx := context.Background()
	for _, rho := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, _, err := l.Charge(ctx, "q", "a", rho, mustNotCompute(t)); !errors.Is(err, ErrBadRho) {
			t.Errorf("rho %g: %v", rho, err)
		}
	}
	if _, _, err := l.Charge(ctx, "", "a", 0.1, mustNotCompute(t)); !errors.Is(err, ErrBadQueryID) {
		t.Errorf("empty id: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := l.Charge(cctx, "q", "a", 0.1, mustNotCompute(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestEpsilon(t *testing.T) {
	// rho = 0.5, delta = 1e-6: 0.5 + 2*sqrt(0.5*13.8155) = 5.7565...
	if got := Epsilon(0.5, 1e-6); math.Abs(got-5.75657) > 1e-4 {
		t.Fatalf("Epsilon(0.5, 1e-6) = %g", got)
	}
	if !math.IsInf(Epsilon(1, 0), 1) {
		t.Fatal("delta 0 must give +Inf")
	}
}

func TestCrashBeforeCommit(t *testing.T) {
	// The process dies while computing: the store is gone before the
	// debit could be committed. Nothing was released, nothing is debited,
	// and the next delivery computes afresh.
	dir := t.TempDir()
	db := openDB(t, dir)
	l := New(db, Limits{})
	_, _, err := l.Charge(context.Background(), "q", "alice", 0.2, func() ([]byte, error) {
		db.Close() // the crash
		return []byte("never released"), nil
	})
	if err == nil {
		t.Fatal("charge committed on a closed store")
	}
	db = openDB(t, dir)
	defer db.Close()
	l = New(db, Limits{})
	if s, _, _ := l.Spent("alice"); s != 0 {
		t.Fatalf("spent %g after a crash before commit", s)
	}
	var calls atomic.Int32
	if _, replayed, err := l.Charge(context.Background(), "q", "alice", 0.2, noisy(&calls)); err != nil || replayed || calls.Load() != 1 {
		t.Fatalf("after restart: replayed=%v err=%v calls=%d", replayed, err, calls.Load())
	}
	if s, _, _ := l.Total(); s != 0.2 {
		t.Fatalf("total %g, want 0.2", s)
	}
}

func TestCheckAndRemaining(t *testing.T) {
	l := New(memDB(t), Limits{TotalRho: 1, PerAnalystRho: 0.75})
	var calls atomic.Int32
	if _, _, err := l.Charge(context.Background(), "q1", "alice", 0.5, noisy(&calls)); err != nil {
		t.Fatal(err)
	}
	if r, _ := l.Remaining("alice"); math.Abs(r-0.25) > 1e-12 {
		t.Fatalf("alice remaining %g, want 0.25", r)
	}
	if r, _ := l.Remaining("bob"); math.Abs(r-0.5) > 1e-12 {
		t.Fatalf("bob remaining %g, want 0.5 (node total)", r)
	}
	if err := l.Check("alice", 0.3); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("check: %v", err)
	}
	if err := l.Check("bob", 0.5); err != nil {
		t.Fatalf("check: %v", err)
	}
}

// TestReplace: Replace swaps a charged query's stored answer, debits
// nothing, is what a later replay returns, and refuses, leaving the store as
// it was, a query id never charged, another analyst or rho, and a failed
// compute; a compute returning nil keeps the answer.
func TestReplace(t *testing.T) {
	ctx := context.Background()
	db := memDB(t)
	l := New(db, Limits{TotalRho: 10, PerAnalystRho: 5})
	var calls atomic.Int32
	first, _, err := l.Charge(ctx, "q1", "ann", 0.5, noisy(&calls))
	if err != nil {
		t.Fatal(err)
	}
	before := dump(t, db)
	keep := func(stored []byte) ([]byte, error) { return nil, nil }
	for _, c := range []struct {
		name, qid, analyst string
		rho                float64
		compute            func([]byte) ([]byte, error)
		want               error
	}{
		{"never charged", "q2", "ann", 0.5, keep, ErrNotCharged},
		{"another analyst", "q1", "bob", 0.5, keep, ErrQueryIDReuse},
		{"another rho", "q1", "ann", 0.7, keep, ErrQueryIDReuse},
		{"compute fails", "q1", "ann", 0.5, func([]byte) ([]byte, error) { return nil, errors.New("no") }, ErrCompute},
	} {
		if _, _, err := l.Replace(ctx, c.qid, c.analyst, c.rho, c.compute); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	got, replaced, err := l.Replace(ctx, "q1", "ann", 0.5, keep)
	if err != nil || replaced || !bytes.Equal(got, first) {
		t.Fatalf("compute keeps the answer: %x replaced %v %v", got, replaced, err)
	}
	if after := dump(t, db); after != before {
		t.Fatalf("refused or kept replacements changed the store:\n%s\nwas\n%s", after, before)
	}
	next := []byte("the same share under another key")
	got, replaced, err = l.Replace(ctx, "q1", "ann", 0.5, func(stored []byte) ([]byte, error) {
		if !bytes.Equal(stored, first) {
			t.Errorf("compute got %x, want the stored %x", stored, first)
		}
		return next, nil
	})
	if err != nil || !replaced || !bytes.Equal(got, next) {
		t.Fatalf("replace: %q replaced %v %v", got, replaced, err)
	}
	replay, replayed, err := l.Charge(ctx, "q1", "ann", 0.5, mustNotCompute(t))
	if err != nil || !replayed || !bytes.Equal(replay, next) {
		t.Fatalf("replay after replace: %q replayed %v %v", replay, replayed, err)
	}
	spent, _, err := l.Spent("ann")
	if err != nil || spent != 0.5 {
		t.Fatalf("spent %v (%v), want 0.5: a replacement is not a charge", spent, err)
	}
	if e, err := l.Entries(Filter{}); err != nil || len(e) != 1 || e[0].AnswerSize != len(next) {
		t.Fatalf("entries %+v (%v), want one charge with the new answer's size", e, err)
	}
}
