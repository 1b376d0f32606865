package protocol_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fedstat/fedstat/internal/protocol"
)

// TestDefaultMaxSkew pins the freshness window both sides default to
// (docs/threat-model.md and docs/operations.md state it).
func TestDefaultMaxSkew(t *testing.T) {
	if protocol.DefaultMaxSkew != 15*time.Minute {
		t.Fatalf("DefaultMaxSkew %s, the documents say 15 minutes", protocol.DefaultMaxSkew)
	}
}

// TestCheckPlaintextRange: a plan whose sum over the members fits passes;
// one that could wrap is refused with the one message both sides give.
func TestCheckPlaintextRange(t *testing.T) {
	params := testParams(t)
	p := testPlan(t, testSpec())
	if err := protocol.CheckPlaintextRange(p, params, 3); err != nil {
		t.Fatalf("3 members: %v", err)
	}
	members := int(params.MaxAbs()/p.MaxAbsPartial()) + 1
	err := protocol.CheckPlaintextRange(p, params, members)
	if !errors.Is(err, protocol.ErrPlaintextRange) {
		t.Fatalf("%d members: %v, want ErrPlaintextRange", members, err)
	}
	want := fmt.Sprintf("the worst-case sum %d over %d nodes could wrap around the plaintext modulus (at most %d): "+
		"narrow the clamps or the groups, or lower the catalogue's patients per node", p.MaxAbsTotal(members), members, params.MaxAbs())
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}
