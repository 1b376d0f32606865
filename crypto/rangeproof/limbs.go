package rangeproof

import (
	"errors"
	"fmt"

	"github.com/gtank/ristretto255"
)

// The proof of a partial's limbs (docs/crypto.md, "The proof of the
// limbs"), made by a member when the coordinator asks, after a release's
// total was refused. A partial's link covers its values, not the limbs of
// their blindings encrypted after them; a member that corrupts only its
// limbs makes the total fail its check against the commitments without
// failing any proof. Asked, each member shows, for each value j with
// commitment V_j = v_j*B + gamma_j*B~:
//
//   - commitments L_jk = l_jk*B + r_jk*B~ to its Limbs limbs, with one
//     range proof that each l_jk is in [0, 2^LimbBits);
//   - that the limbs recompose to the blinding of V_j: with A_j =
//     Σ_k 2^(LimbBits*k)*L_jk, a proof of knowledge of (g, R, v) with
//     A_j = g*B + R*B~ and V_j = v*B + g*B~ (a Sigma protocol over both
//     equations, one challenge for every value, Fiat-Shamir);
//   - and, with a new proof of encryption of each of its ciphertexts
//     (the same ciphertexts, the same witness), the link of the values and
//     the limbs to the slots that encrypt them (limbLink: the link of
//     link.go over the first 11d slots, commitments V ++ L).
//
// Then its limbs are integers below 2^LimbBits that recompose to its
// commitments' blindings modulo the group order: the members' limb sums
// neither wrap modulo t nor carry another blinding, so a total built from
// such limbs passes its check unless a key-switch share moved it. A
// member whose limbs were corrupted cannot make this proof.

// recompositionSize is the size of one value's recomposition proof: T1,
// T2, s_g, s_R, s_v.
const recompositionSize = 2*PointSize + 3*scalarSize

// ErrLimbs is the refusal of a proof of limbs: malformed, or limbs that
// are out of range or do not recompose to the blindings of the
// commitments.
var ErrLimbs = errors.New("proof of the limbs refused")

// LimbProof is a member's proof of its partial's limbs, but for the link
// to the ciphertexts (made with their new proofs of encryption).
type LimbProof struct {
	// Commitments are the limbs' commitments, Limbs per value
	// (value-major, as the limbs are encoded), PointSize bytes each.
	Commitments []byte
	// Proof is the range proof of every limb, in [0, 2^LimbBits).
	Proof []byte
	// Recomposition proves, value by value, that the limbs' commitments
	// recompose to the blinding of the value's commitment.
	Recomposition []byte
}

// LimbOpening is the prover's side of ProveLimbs: what the link of the
// limbs opens.
type LimbOpening struct{ c *Committed }

// Linker makes the link of the values and limbs to the slots of the
// partial's ciphertexts (slots slots, plaintext modulus t), for the new
// proofs of encryption (a homomorphic.SlotLink).
func (o *LimbOpening) Linker(slots int, t uint64) *Linker { return newLinker(limbLink, o.c, slots, t) }

// LimbRanges are the ranges of the limbs of d values: [0, 2^LimbBits - 1].
func LimbRanges(d int) []Range {
	out := make([]Range, Limbs*d)
	for i := range out {
		out[i] = Range{0, 1<<LimbBits - 1}
	}
	return out
}

// limbContext is what the range proof and the recomposition of a proof of
// limbs are bound to: context (the partial's) under its own label.
func limbContext(context []byte) []byte {
	return append([]byte("fedstat/rangeproof/limbs/v1\x00"), context...)
}

// ProveLimbs proves the limbs of a partial: encoded is what its
// ciphertexts encrypt (its d values, then their limbs: EncodedLen(d)
// slots), commitments its d commitments, context its proofs' context. It
// refuses limbs out of range or that do not open the commitments with the
// values (the partial was not made from encoded).
func ProveLimbs(encoded []int64, commitments []byte, context []byte) (*LimbProof, *LimbOpening, error) {
	d := len(commitments) / PointSize
	if len(commitments) != d*PointSize || d == 0 || len(encoded) != EncodedLen(d) {
		return nil, nil, fmt.Errorf("%w: %d encoded slots for %d bytes of commitments", ErrLimbs, len(encoded), len(commitments))
	}
	values, limbs := encoded[:d], encoded[d:]
	gammas := make([]ristretto255.Scalar, d)
	vs := make([]ristretto255.Element, d)
	for j := range d {
		for k, l := range limbs[j*Limbs : (j+1)*Limbs] {
			if l < 0 || l >= 1<<LimbBits {
				return nil, nil, fmt.Errorf("%w: limb %d of value %d is outside [0, 2^%d)", ErrLimbs, k, j, LimbBits)
			}
		}
		gammas[j].Set(fromLimbs(limbs[j*Limbs : (j+1)*Limbs]))
		if err := vs[j].Decode(commitments[j*PointSize : (j+1)*PointSize]); err != nil {
			return nil, nil, fmt.Errorf("%w: commitment %d is not canonical", ErrLimbs, j)
		}
		if commit(values[j], &gammas[j]).Equal(&vs[j]) != 1 {
			return nil, nil, fmt.Errorf("%w: value %d and its limbs do not open its commitment", ErrLimbs, j)
		}
	}
	lc, err := Prove(limbs, LimbRanges(d), limbContext(context))
	if err != nil {
		return nil, nil, err
	}
	out := &LimbProof{Commitments: lc.Commitments, Proof: lc.Proof}
	// The recomposition: for each j, masks (a_g, a_R, a_v), T1 = a_g*B +
	// a_R*B~, T2 = a_v*B + a_g*B~; one challenge e; s = a + e*witness.
	type round struct{ ag, aR, av, R ristretto255.Scalar }
	rounds := make([]round, d)
	t := recompositionTranscript(context, commitments, lc.Commitments)
	ts := make([][2]*ristretto255.Element, d)
	for j := range d {
		r := &rounds[j]
		r.R.Set(fromScalars(lc.gammas[j*Limbs : (j+1)*Limbs]))
		randomScalar(&r.ag)
		randomScalar(&r.aR)
		randomScalar(&r.av)
		ts[j][0] = commitScalars(&r.ag, &r.aR)
		ts[j][1] = commitScalars(&r.av, &r.ag)
		t.appendPoint("T1", ts[j][0])
		t.appendPoint("T2", ts[j][1])
	}
	e := t.challenge("e")
	var tmp ristretto255.Scalar
	for j := range d {
		r := &rounds[j]
		sg := ristretto255.NewScalar().Add(&r.ag, tmp.Multiply(e, &gammas[j]))
		sR := ristretto255.NewScalar().Add(&r.aR, tmp.Multiply(e, &r.R))
		sv := ristretto255.NewScalar().Add(&r.av, tmp.Multiply(e, scalarInt(values[j])))
		out.Recomposition = append(out.Recomposition, ts[j][0].Bytes()...)
		out.Recomposition = append(out.Recomposition, ts[j][1].Bytes()...)
		out.Recomposition = append(out.Recomposition, sg.Bytes()...)
		out.Recomposition = append(out.Recomposition, sR.Bytes()...)
		out.Recomposition = append(out.Recomposition, sv.Bytes()...)
	}
	// The link opens the values with their blindings and the limbs with
	// theirs, in the encoded order.
	link := &Committed{
		Commitments: append(append([]byte(nil), commitments...), lc.Commitments...),
		values:      append([]int64(nil), encoded...),
		gammas:      append(gammas, lc.gammas...),
	}
	return out, &LimbOpening{c: link}, nil
}

// VerifyLimbs checks p, a proof of the limbs of a partial with
// commitments commitments made for context: the limbs' range proof and
// their recomposition to the blindings. (The link to the ciphertexts is
// CheckLimbLink's, with the new proofs of encryption.) Its error matches
// ErrLimbs, or ErrProof for the range proof, and names the value.
func VerifyLimbs(commitments []byte, p *LimbProof, context []byte) error {
	d := len(commitments) / PointSize
	if len(commitments) != d*PointSize || d == 0 || p == nil || len(p.Commitments) != Limbs*d*PointSize || len(p.Recomposition) != d*recompositionSize {
		return fmt.Errorf("%w: malformed for %d values", ErrLimbs, d)
	}
	if err := Verify(p.Commitments, LimbRanges(d), limbContext(context), p.Proof); err != nil {
		return fmt.Errorf("the limbs are not proven within [0, 2^%d): %w", LimbBits, err)
	}
	t := recompositionTranscript(context, commitments, p.Commitments)
	type parsed struct {
		t1, t2, v, a ristretto255.Element
		sg, sR, sv   ristretto255.Scalar
	}
	ps := make([]parsed, d)
	for j := range d {
		q := &ps[j]
		rec := p.Recomposition[j*recompositionSize:]
		if q.t1.Decode(rec[:PointSize]) != nil || q.t2.Decode(rec[PointSize:2*PointSize]) != nil ||
			q.sg.Decode(rec[2*PointSize:2*PointSize+scalarSize]) != nil || q.sR.Decode(rec[2*PointSize+scalarSize:2*PointSize+2*scalarSize]) != nil ||
			q.sv.Decode(rec[2*PointSize+2*scalarSize:recompositionSize]) != nil {
			return fmt.Errorf("%w: the recomposition of value %d is not canonical", ErrLimbs, j)
		}
		if q.v.Decode(commitments[j*PointSize:(j+1)*PointSize]) != nil {
			return fmt.Errorf("%w: commitment %d is not canonical", ErrLimbs, j)
		}
		// A_j = Σ_k 2^(LimbBits*k)*L_jk.
		points := make([]*ristretto255.Element, Limbs)
		for k := range Limbs {
			points[k] = new(ristretto255.Element)
			if points[k].Decode(p.Commitments[(j*Limbs+k)*PointSize:(j*Limbs+k+1)*PointSize]) != nil {
				return fmt.Errorf("%w: the commitment to limb %d of value %d is not canonical", ErrLimbs, k, j)
			}
		}
		q.a.VarTimeMultiScalarMult(limbPowers, points)
		t.appendPoint("T1", &q.t1)
		t.appendPoint("T2", &q.t2)
	}
	e := t.challenge("e")
	var ne ristretto255.Scalar
	ne.Negate(e)
	minusOne := ristretto255.NewScalar().Negate(scalarUint(1))
	for j := range d {
		q := &ps[j]
		// s_g*B + s_R*B~ - e*A_j - T1 = 0 and s_v*B + s_g*B~ - e*V_j - T2 = 0.
		first := msm([]*ristretto255.Scalar{&q.sg, &q.sR, &ne, minusOne}, []*ristretto255.Element{ristretto255.NewGeneratorElement(), gens(0).blind, &q.a, &q.t1}, false)
		second := msm([]*ristretto255.Scalar{&q.sv, &q.sg, &ne, minusOne}, []*ristretto255.Element{ristretto255.NewGeneratorElement(), gens(0).blind, &q.v, &q.t2}, false)
		if first.Equal(ristretto255.NewIdentityElement()) != 1 || second.Equal(ristretto255.NewIdentityElement()) != 1 {
			return fmt.Errorf("%w: the limbs of value %d do not recompose to the blinding of its commitment", ErrLimbs, j)
		}
	}
	return nil
}

func recompositionTranscript(context, commitments, limbCommitments []byte) *transcript {
	t := newTranscript()
	t.appendBytes("protocol", []byte("fedstat/rangeproof/limb-recomposition/v1"))
	t.appendBytes("context", context)
	t.appendBytes("commitments", commitments)
	t.appendBytes("limb-commitments", limbCommitments)
	return t
}

// LimbLinkSize is the size of the link of the limbs of d values in
// ciphertexts of slots slots: the values and the limbs linked, then a
// padding record per ciphertext.
func LimbLinkSize(d, slots int) int { return limbLink.size(EncodedLen(d), slots) }

// LimbLinkBound is what the link of the limbs of ciphertext i bound into
// its new proof of encryption, from the partial's commitments, the limbs'
// commitments of p and the link.
func LimbLinkBound(commitments []byte, p *LimbProof, link []byte, slots, i int) ([]byte, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: no proof of limbs", ErrLink)
	}
	return limbLink.linkBound(append(append([]byte(nil), commitments...), p.Commitments...), link, slots, i)
}

// CheckLimbLink checks the link of the limbs of ciphertext i against the
// slots of its new proof of encryption's challenge and answer: that every
// value and limb slot holds what its commitment opens to. Its error
// matches ErrLink and names the first slot that fails.
func CheckLimbLink(commitments []byte, p *LimbProof, link []byte, slots int, t uint64, i int, challenge, answer []uint64) error {
	if p == nil {
		return fmt.Errorf("%w: no proof of limbs", ErrLink)
	}
	return limbLink.check(append(append([]byte(nil), commitments...), p.Commitments...), link, slots, t, i, challenge, answer)
}
