package protocol

import (
	"errors"
	"fmt"
	"time"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/rangeproof"
	"github.com/fedstat/fedstat/queries/plan"
)

// DefaultMaxSkew is the freshness window of every signed protocol message,
// on both sides: a receiver refuses a message whose signed timestamp is
// further than this from its own clock. It covers the skew between two
// machines' clocks plus the age of a message that is checked again later: a
// node checks every partial once more when it is asked to release their
// sum, up to the query's deadline and the release's timeout after the
// partial was signed. node.Config.MaxSkew and coordinator.Config.MaxSkew
// default to it; a replay cache must remember at least twice as long.
const DefaultMaxSkew = 15 * time.Minute

// ErrPlaintextRange: the worst-case sum of a plan over the members of a key
// epoch could wrap around the plaintext modulus (CheckPlaintextRange).
var ErrPlaintextRange = errors.New("protocol: worst-case sum could wrap around the plaintext modulus")

// CheckPlaintextRange refuses a plan whose worst-case sum over members
// nodes could wrap around the plaintext modulus of params. The coordinator
// runs it when it plans a query, every node again before it answers; the
// error, the same on both sides, matches ErrPlaintextRange and its text is
// meant for the analyst.
func CheckPlaintextRange(p *plan.Plan, params homomorphic.Params, members int) error {
	if worst := p.MaxAbsTotal(members); worst > params.MaxAbs() || worst < 0 {
		return &rangeError{worst: worst, members: members, max: params.MaxAbs()}
	}
	// The sum of the members' limbs of their range commitments' blindings
	// (rangeproof.BlindingLimbs) must not wrap either.
	if limbs := int64(max(members, 1)) << rangeproof.LimbBits; members > rangeproof.MaxMembers || limbs > params.MaxAbs() {
		return fmt.Errorf("%w: the sum of %d nodes' limbs of their range commitments' blindings could wrap around the plaintext modulus (at most %d): "+
			"a network has at most %d members", ErrPlaintextRange, members, params.MaxAbs(), rangeproof.MaxMembers)
	}
	return nil
}

type rangeError struct {
	worst, max int64
	members    int
}

func (e *rangeError) Error() string {
	return fmt.Sprintf("the worst-case sum %d over %d nodes could wrap around the plaintext modulus (at most %d): "+
		"narrow the clamps or the groups, or lower the catalogue's patients per node", e.worst, e.members, e.max)
}

func (e *rangeError) Unwrap() error { return ErrPlaintextRange }
