package rangeproof

import (
	"errors"
	"fmt"

	"github.com/gtank/ristretto255"
)

// LimbBits and Limbs: a blinding γ (below 2^253) is encrypted as Limbs
// limbs of LimbBits bits, each in [0, 2^LimbBits). The sum of n members'
// limbs stays below n·2^26, so it does not wrap modulo the plaintext
// modulus t (about 2^40) for up to 2^13 members (MaxMembers).
const (
	LimbBits = 26
	Limbs    = 10
)

// MaxMembers is the most partials whose limbs sum without wrapping modulo
// a plaintext modulus of at least 2^40 (homomorphic's parameter sets).
const MaxMembers = 1 << (39 - LimbBits)

// EncodedLen is how many slots a partial of d values takes: the values,
// then Limbs limbs of each value's blinding.
func EncodedLen(d int) int { return d * (1 + Limbs) }

// ErrTotal is the refusal of a decrypted total that is not the sum of the
// values the members committed to.
var ErrTotal = errors.New("the decrypted total is not the sum of the values the members committed to and proved in range")

// BlindingLimbs splits γ into Limbs limbs of LimbBits bits, least
// significant first.
func BlindingLimbs(gamma *ristretto255.Scalar) []int64 {
	b := gamma.Bytes() // little-endian, below 2^253
	out := make([]int64, Limbs)
	for k := range Limbs {
		var v int64
		for i := range LimbBits {
			bit := k*LimbBits + i
			if bit/8 < len(b) && b[bit/8]>>(bit%8)&1 == 1 {
				v |= 1 << i
			}
		}
		out[k] = v
	}
	return out
}

// fromLimbs is Σ_k limbs[k]·2^(LimbBits·k) modulo l, the limbs being sums
// (any int64, centred).
func fromLimbs(limbs []int64) *ristretto255.Scalar {
	s := make([]ristretto255.Scalar, len(limbs))
	for k, v := range limbs {
		s[k].Set(scalarInt(v))
	}
	return fromScalars(s)
}

// limbPowers are 2^(LimbBits·k), k < Limbs, as scalars.
var limbPowers = func() []*ristretto255.Scalar {
	out := make([]*ristretto255.Scalar, Limbs)
	out[0] = scalarUint(1)
	for k := 1; k < Limbs; k++ {
		out[k] = ristretto255.NewScalar().Multiply(out[k-1], scalarUint(1<<LimbBits))
	}
	return out
}()

// fromScalars is Σ_k rs[k]·2^(LimbBits·k) modulo l (at most Limbs terms).
func fromScalars(rs []ristretto255.Scalar) *ristretto255.Scalar {
	out := ristretto255.NewScalar()
	var t ristretto255.Scalar
	for k := range rs {
		out.Add(out, t.Multiply(&rs[k], limbPowers[k]))
	}
	return out
}

// CheckTotal checks a decrypted total against the commitments of the
// partials summed into it: encoded is the total in the partials' layout
// (EncodedLen(d) slots: d value totals M_j, then the limb sums), and
// commitments holds each partial's commitments (PointSize·d bytes). It
// requires Σ_i V_ij = M_j·B + Γ_j·B̃ for every slot j, with Γ_j from the
// limb sums: all slots at once with random weights, then slot by slot to
// name the first that fails. It returns the d value totals.
func CheckTotal(commitments [][]byte, encoded []int64, d int) ([]int64, error) {
	if len(encoded) != EncodedLen(d) {
		return nil, fmt.Errorf("%w: %d slots, %d values take %d", ErrTotal, len(encoded), d, EncodedLen(d))
	}
	sums := make([]*ristretto255.Element, d)
	for j := range d {
		sums[j] = ristretto255.NewIdentityElement()
	}
	for i, cs := range commitments {
		if len(cs) != PointSize*d {
			return nil, fmt.Errorf("%w: partial %d has %d bytes of commitments, %d values take %d", ErrTotal, i, len(cs), d, PointSize*d)
		}
		for j := range d {
			var v ristretto255.Element
			if err := v.Decode(cs[j*PointSize : (j+1)*PointSize]); err != nil {
				return nil, fmt.Errorf("%w: partial %d, commitment %d is not a canonical group element", ErrTotal, i, j)
			}
			sums[j].Add(sums[j], &v)
		}
	}
	g := gens(0)
	// Σ_j β_j·(Σ_i V_ij − M_j·B − Γ_j·B̃) = 0 for random β.
	scalars := make([]*ristretto255.Scalar, 0, d+2)
	points := make([]*ristretto255.Element, 0, d+2)
	mb, gb := ristretto255.NewScalar(), ristretto255.NewScalar()
	gammas := make([]*ristretto255.Scalar, d)
	var t ristretto255.Scalar
	for j := range d {
		beta := ristretto255.NewScalar()
		randomScalar(beta)
		gammas[j] = fromLimbs(encoded[d+j*Limbs : d+(j+1)*Limbs])
		mb.Add(mb, t.Multiply(beta, scalarInt(encoded[j])))
		gb.Add(gb, t.Multiply(beta, gammas[j]))
		scalars = append(scalars, beta)
		points = append(points, sums[j])
	}
	scalars = append(scalars, mb.Negate(mb), gb.Negate(gb))
	points = append(points, ristretto255.NewGeneratorElement(), g.blind)
	if msm(scalars, points, false).Equal(ristretto255.NewIdentityElement()) == 1 {
		return encoded[:d], nil
	}
	for j := range d {
		if sums[j].Equal(commit(encoded[j], gammas[j])) != 1 {
			return nil, fmt.Errorf("%w: slot %d", ErrTotal, j)
		}
	}
	// Unreachable unless the weights cancelled a failure (probability 2^-252).
	return nil, fmt.Errorf("%w: the weighted check failed", ErrTotal)
}
