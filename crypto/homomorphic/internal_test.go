package homomorphic

import (
	"errors"
	"testing"
)

func TestInsecureRefused(t *testing.T) {
	old := allowInsecure.Load()
	allowInsecure.Store(false)
	defer allowInsecure.Store(old)
	if _, err := NewParams(InsecureTestSet); !errors.Is(err, ErrInsecureParams) {
		t.Fatalf("err = %v", err)
	}
}

// insecureKey returns the insecure test parameters and a fresh result key
// (whose public half the internal tests encrypt under).
func insecureKey(t testing.TB) (Params, *ResultKey) {
	t.Helper()
	AllowInsecureForTests()
	p, err := NewParams(InsecureTestSet)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, rk
}
