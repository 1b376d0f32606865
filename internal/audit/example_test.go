package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fedstat/fedstat/internal/audit"
)

func ExampleLog_Append() {
	dir, _ := os.MkdirTemp("", "audit")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.log")

	l, err := audit.Open(path)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	l.Append(ctx, audit.Entry{Actor: "node-a", Action: "query.received", QueryID: "q-1", Details: map[string]any{"analyst": "alice"}})
	l.Append(ctx, audit.Entry{Actor: "node-a", Action: "budget.debit", QueryID: "q-1", Details: map[string]any{"rho": 0.1}})
	seq, head := l.Head()
	l.Close()

	f, _ := os.Open(path)
	defer f.Close()
	n, verifiedHead, err := audit.VerifyHead(f)
	fmt.Println(n, seq, err, verifiedHead == head)
	// Output: 2 2 <nil> true
}
