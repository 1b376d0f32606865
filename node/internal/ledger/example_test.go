package ledger_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

func ExampleLedger_Charge() {
	db, _ := kv.Open(kv.Options{InMemory: true})
	defer db.Close()
	l := ledger.New(db, ledger.Limits{TotalRho: 2, PerAnalystRho: 0.5})
	ctx := context.Background()

	// The first delivery computes and debits; a re-delivery replays the
	// stored answer and costs nothing.
	compute := func() ([]byte, error) { return []byte("noised, encrypted, signed partial"), nil }
	a1, replayed1, _ := l.Charge(ctx, "q-1", "alice", 0.3, compute)
	a2, replayed2, _ := l.Charge(ctx, "q-1", "alice", 0.3, compute)
	fmt.Println(string(a1) == string(a2), replayed1, replayed2)

	// What does not fit is refused, naming the budget and what is left.
	_, _, err := l.Charge(ctx, "q-2", "alice", 0.3, compute)
	fmt.Println(errors.Is(err, ledger.ErrBudgetExhausted))
	fmt.Println(err)

	spent, limit, _ := l.Spent("alice")
	fmt.Println(spent, limit)
	// Output:
	// true false true
	// true
	// ledger: privacy budget exhausted: analyst "alice" has 0.2 rho left (epsilon 3.525 at delta 1e-06) of 0.5, the query needs 0.3 rho
	// 0.3 0.5
}
