package audit

import (
	"context"
	"path/filepath"
	"testing"
)

// What the tamper check adds to every append: a stat of the path and
// fstats of the open file before and after the write.
func BenchmarkFileCheck(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "a.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for b.Loop() {
		if err := l.checkFile(); err != nil {
			b.Fatal(err)
		}
		if err := l.record(); err != nil {
			b.Fatal(err)
		}
	}
}

// A whole append (dominated by its fsync).
func BenchmarkAppend(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "a.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for b.Loop() {
		if err := l.Append(ctx, Entry{Actor: "node-a", Action: "budget.debit", QueryID: "q-1", Details: map[string]any{"rho": 0.125}}); err != nil {
			b.Fatal(err)
		}
	}
}
