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
