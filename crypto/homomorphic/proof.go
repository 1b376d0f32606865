package homomorphic

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"

	"github.com/fedstat/fedstat/crypto/internal/shortproof"
)

// Proofs of a fresh encryption (docs/crypto.md, "Proofs of fresh
// encryption").
//
// EncryptProven encrypts as Encrypt does, but with randomness it keeps, and
// proves in zero knowledge that it knows the witness of each ciphertext:
// a ternary u, errors e0, e1 with |e| <= 19 and a plaintext m in R_t with
//
//	c0 = u*pk0 + e0 + Delta*m,  c1 = u*pk1 + e1   (mod Q, Delta = t^-1 mod Q),
//
// the relation of Lattigo's encryption under a public key. The proof is a
// Fiat-Shamir transform of one round of Lyubashevsky's protocol with
// rejection sampling: masks y (uniform, m's mask uniform modulo t), w =
// A(y), a challenge c of proofWeight coefficients in {-1, 1} hashed from
// the context, the ciphertext and w, and the answer z = y + c*witness, sent
// only when every coefficient lies in a range that does not depend on the
// witness. The verifier recomputes w = A(z) - c*ct and the hash.
//
// It binds the ciphertext to the prover's knowledge of its plaintext and
// randomness, and to the context (query, epoch, sender, index): a member
// cannot send another member's ciphertext, a re-randomisation, a multiple
// or a negation of it, or a crafted ciphertext with no short witness. It
// does not bound the plaintext's slots: m is proven only as an element of
// R_t (the slots' range is dp.CheckTotals's).

const (
	// errBound is the largest |e| of Lattigo's default error distribution
	// (discrete Gaussian, sigma 3.2, truncated at 19.2).
	errBound = 19
)

// ErrProof is returned when a proof of encryption does not verify.
var ErrProof = errors.New("homomorphic: proof of encryption refused")

type encWitness struct {
	u, e0, e1 []int64
	m         []uint64 // in [0, t)
}

// EncryptProven is Encrypt with a proof of encryption per ciphertext, bound
// to context and to the ciphertext's index.
func EncryptProven(p Params, pk *PublicKey, values []int64, context []byte) ([]*Ciphertext, [][]byte, error) {
	return encryptProven(p, pk, values, context, nil, nil)
}

// SlotLink links the plaintext slots of the ciphertexts EncryptLinked makes
// to commitments made elsewhere (docs/crypto.md, "The link";
// crypto/rangeproof's Linker). For ciphertext i, Mask draws the slots of
// the round's mask of the plaintext (each uniform modulo t) and returns
// bytes committing to it, bound into the proof's challenge; Answer is
// called once the proof of ciphertext i is made, with the slots of its
// challenge (c as a plaintext, each modulo t): slot j of the proof's
// answer is then mask_j + c_j*value_j modulo t, and Answer opens the
// commitment to that.
type SlotLink interface {
	Mask(i int) (slots []uint64, bound []byte, err error)
	Answer(i int, challenge []uint64) error
}

// EncryptLinked is EncryptProven with each ciphertext's proof linked to
// link (a proof that its slots are the values the link commits to).
func EncryptLinked(p Params, pk *PublicKey, values []int64, context []byte, link SlotLink) ([]*Ciphertext, [][]byte, error) {
	if link == nil {
		return nil, nil, fmt.Errorf("%w: no link", ErrInvalidArgument)
	}
	return encryptProven(p, pk, values, context, link, nil)
}

// SeedSize is the size of the seed EncryptLinkedSeeded derives each
// ciphertext's randomness from.
const SeedSize = 32

// EncryptLinkedSeeded is EncryptLinked with each ciphertext's randomness
// (u, e0, e1) drawn from a PRNG keyed with seed and the ciphertext's index
// rather than a fresh one, so that whoever keeps seed and values can prove
// the ciphertexts again (ProveAgainLinked). seed must be SeedSize secret
// uniform bytes, used for no other encryption: it is the encryptions'
// randomness.
func EncryptLinkedSeeded(p Params, pk *PublicKey, values []int64, context []byte, link SlotLink, seed []byte) ([]*Ciphertext, [][]byte, error) {
	if link == nil {
		return nil, nil, fmt.Errorf("%w: no link", ErrInvalidArgument)
	}
	if len(seed) != SeedSize {
		return nil, nil, fmt.Errorf("%w: a seed of %d bytes, want %d", ErrInvalidArgument, len(seed), SeedSize)
	}
	return encryptProven(p, pk, values, context, link, seed)
}

// ErrNotMadeAgain is ProveAgainLinked's refusal when the ciphertext made
// again from the seed and the values is not the one to prove.
var ErrNotMadeAgain = errors.New("homomorphic: the ciphertext made again from the seed and the values is not the one given")

// ProveAgainLinked makes a new proof of encryption of ct, the index-th
// ciphertext EncryptLinkedSeeded made of values with seed, bound to
// context and linked to link: it derives the witness again, checks that it
// makes ct (ErrNotMadeAgain otherwise) and proves with fresh masks.
func ProveAgainLinked(p Params, pk *PublicKey, ct *Ciphertext, values []int64, context []byte, index int, seed []byte, link SlotLink) ([]byte, error) {
	if err := p.checkKey(pk); err != nil {
		return nil, err
	}
	if link == nil || len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: no link, or a seed of %d bytes", ErrInvalidArgument, len(seed))
	}
	if err := ct.validFor(p); err != nil {
		return nil, err
	}
	slots := p.s.slots
	if index < 0 || index*slots >= len(values) {
		return nil, fmt.Errorf("%w: no ciphertext %d of %d values", ErrInvalidArgument, index, len(values))
	}
	m, err := p.plaintextOf(values[index*slots : min((index+1)*slots, len(values))])
	if err != nil {
		return nil, err
	}
	w, err := p.sampleWitness(m, seed, index)
	if err != nil {
		return nil, err
	}
	again := p.newCiphertext()
	p.applyEnc(pk, w.u, w.e0, w.e1, w.m, again.Value[0], again.Value[1])
	if !again.Value[0].Equal(&ct.ct.Value[0]) || !again.Value[1].Equal(&ct.ct.Value[1]) {
		return nil, ErrNotMadeAgain
	}
	return p.proveLinked(pk, ct, w, context, index, link)
}

// plaintextOf is the plaintext polynomial whose slots are values (at most
// the parameters' slots, the rest zero).
func (p Params) plaintextOf(values []int64) ([]uint64, error) {
	t := p.PlaintextModulus()
	buf := make([]uint64, p.s.slots)
	for i, v := range values {
		if v < 0 {
			buf[i] = t - uint64(-v)
		} else {
			buf[i] = uint64(v)
		}
	}
	return p.fromSlots(buf)
}

func encryptProven(p Params, pk *PublicKey, values []int64, context []byte, link SlotLink, seed []byte) ([]*Ciphertext, [][]byte, error) {
	if err := p.checkKey(pk); err != nil {
		return nil, nil, err
	}
	if len(values) == 0 {
		return nil, nil, fmt.Errorf("%w: no values", ErrInvalidArgument)
	}
	maxAbs := p.MaxAbs()
	for i, v := range values {
		if v > maxAbs || v < -maxAbs {
			return nil, nil, fmt.Errorf("%w: values[%d] has |v| > %d", ErrValueOutOfRange, i, maxAbs)
		}
	}
	slots := p.s.slots
	var cts []*Ciphertext
	var proofs [][]byte
	for start := 0; start < len(values); start += slots {
		m, err := p.plaintextOf(values[start:min(start+slots, len(values))])
		if err != nil {
			return nil, nil, err
		}
		w, err := p.sampleWitness(m, seed, len(cts))
		if err != nil {
			return nil, nil, err
		}
		ct := p.newCiphertext()
		p.applyEnc(pk, w.u, w.e0, w.e1, w.m, ct.Value[0], ct.Value[1])
		c := &Ciphertext{p: p, ct: ct}
		var proof []byte
		if link == nil {
			proof, err = p.prove(pk, c, w, context, len(cts))
		} else {
			proof, err = p.proveLinked(pk, c, w, context, len(cts), link)
		}
		if err != nil {
			return nil, nil, err
		}
		cts = append(cts, c)
		proofs = append(proofs, proof)
	}
	return cts, proofs, nil
}

// sampleWitness draws u and e0, e1 from Lattigo's own distributions, with
// a fresh PRNG, or with seed one keyed with seed and index.
func (p Params) sampleWitness(m []uint64, seed []byte, index int) (*encWitness, error) {
	r := p.ringQ()
	var prng sampling.PRNG
	var err error
	if seed == nil {
		prng, err = sampling.NewPRNG()
	} else {
		// The PRNG's key (BLAKE2b's, at most 64 bytes): SHA-256 of the
		// seed and the index under a label.
		key := sha256.Sum256(binary.BigEndian.AppendUint64(append([]byte("fedstat/encryption-seed/v1\x00"), seed...), uint64(index)))
		prng, err = sampling.NewKeyedPRNG(key[:])
	}
	if err != nil {
		return nil, err
	}
	xs, err := ring.NewSampler(prng, r, p.s.bgv.Xs(), false)
	if err != nil {
		return nil, err
	}
	xe, err := ring.NewSampler(prng, r, p.s.bgv.Xe(), false)
	if err != nil {
		return nil, err
	}
	// The prover checks the bounds (shortproof.Prove).
	read := func(s ring.Sampler) []int64 { return shortproof.Centred(r, s.ReadNew()) }
	w := &encWitness{m: append([]uint64(nil), m...), u: read(xs), e0: read(xe), e1: read(xe)}
	return w, nil
}

// applyEnc sets (out0, out1) = A(u, e0, e1, m) = (u*pk0 + e0 + Delta*m,
// u*pk1 + e1) in the NTT domain, as Lattigo stores ciphertexts.
func (p Params) applyEnc(pk *PublicKey, u, e0, e1 []int64, m []uint64, out0, out1 ring.Poly) {
	r := p.ringQ()
	tp, ep := shortproof.GetPoly(r), shortproof.GetPoly(r)
	defer shortproof.PutPoly(r, tp)
	defer shortproof.PutPoly(r, ep)
	tmp, e := *tp, *ep
	shortproof.SetSigned(r, tmp, u)
	r.NTT(tmp, tmp)
	r.MulCoeffsMontgomery(tmp, pk.pk.Value[0].Q, out0)
	r.MulCoeffsMontgomery(tmp, pk.pk.Value[1].Q, out1)
	shortproof.SetSigned(r, tmp, e1)
	r.NTT(tmp, tmp)
	r.Add(out1, tmp, out1)
	// e0 + Delta*m in the coefficient domain, then one NTT (it is linear).
	for j := range tmp.Coeffs {
		copy(tmp.Coeffs[j], m) // m < t < every q
	}
	r.MulScalarBigint(tmp, p.s.tInvQ, tmp)
	shortproof.SetSigned(r, e, e0)
	r.Add(tmp, e, tmp)
	r.NTT(tmp, tmp)
	r.Add(out0, tmp, out0)
}

// encStatement is the statement a proof of encryption of ct proves.
func (p Params) encStatement(pk *PublicKey, ct *Ciphertext, context []byte, index int) *shortproof.Statement {
	ctx := append([]byte(nil), p.s.id[:]...)
	ctx = binary.BigEndian.AppendUint64(ctx, uint64(index))
	ctx = append(ctx, context...)
	return &shortproof.Statement{
		Domain: "fedstat/encryption/v1",
		Ring:   p.ringQ(),
		Bounds: []int64{1, errBound, errBound}, // u, e0, e1
		T:      p.PlaintextModulus(),
		// Delta*z_m = Delta*(y_m + c*m) - k (mod Q), so e0's answer carries +k.
		WrapInto: 1,
		Apply: func(x [][]int64, xt []uint64, out []ring.Poly) {
			p.applyEnc(pk, x[0], x[1], x[2], xt, out[0], out[1])
		},
		Image:   []ring.Poly{ct.ct.Value[0], ct.ct.Value[1]},
		Context: ctx,
	}
}

func (p Params) prove(pk *PublicKey, ct *Ciphertext, w *encWitness, context []byte, index int) ([]byte, error) {
	proof, err := shortproof.Prove(p.encStatement(pk, ct, context, index), [][]int64{w.u, w.e0, w.e1}, w.m)
	if err != nil {
		return nil, fmt.Errorf("homomorphic: proof of encryption: %w", err)
	}
	return proof, nil
}

// proveLinked proves ct with the mask of m from link, and gives link the
// slots of the accepted challenge.
func (p Params) proveLinked(pk *PublicKey, ct *Ciphertext, w *encWitness, context []byte, index int, link SlotLink) ([]byte, error) {
	st := p.encStatement(pk, ct, context, index)
	st.Linked = true
	st.MaskT = func() ([]uint64, []byte, error) {
		slots, bound, err := link.Mask(index)
		if err != nil {
			return nil, nil, err
		}
		yt, err := p.fromSlots(slots)
		return yt, bound, err
	}
	proof, c, err := shortproof.ProveLinked(st, [][]int64{w.u, w.e0, w.e1}, w.m)
	if err != nil {
		return nil, fmt.Errorf("homomorphic: proof of encryption: %w", err)
	}
	if err := link.Answer(index, p.challengeSlots(c)); err != nil {
		return nil, err
	}
	return proof, nil
}

// fromSlots is the plaintext polynomial (coefficients modulo t) whose
// slots, as Encrypt encodes them, are slots (each below t).
func (p Params) fromSlots(slots []uint64) ([]uint64, error) {
	t := p.PlaintextModulus()
	if len(slots) != p.s.slots {
		return nil, fmt.Errorf("%w: %d slots for %d", ErrInvalidArgument, len(slots), p.s.slots)
	}
	for _, v := range slots {
		if v >= t {
			return nil, fmt.Errorf("%w: a slot not below t", ErrInvalidArgument)
		}
	}
	ecd := p.encoder()
	defer p.putEncoder(ecd)
	pT := p.s.bgv.RingT().NewPoly()
	if err := ecd.EncodeRingT(slots, p.s.meta.Scale, pT); err != nil {
		return nil, fmt.Errorf("homomorphic: encode: %w", err)
	}
	return append([]uint64(nil), pT.Coeffs[0]...), nil
}

// toSlots is the inverse of fromSlots: the slots of a plaintext polynomial
// as Encrypt's encoding reads them (divided by the scale).
func (p Params) toSlots(coeffs []uint64, scale rlwe.Scale) []uint64 {
	ecd := p.encoder()
	defer p.putEncoder(ecd)
	pT := p.s.bgv.RingT().NewPoly()
	copy(pT.Coeffs[0], coeffs)
	out := make([]uint64, p.s.slots)
	if err := ecd.DecodeRingT(pT, scale, out); err != nil {
		panic(err) // []uint64 of the ring's length: cannot fail
	}
	return out
}

// challengeSlots are the slots of a challenge c (coefficients in {-1, 0,
// 1}) taken as a plaintext without scale: for any plaintext m, the slots
// of c*m are these times m's slots, slot by slot, modulo t.
func (p Params) challengeSlots(c []int64) []uint64 {
	t := p.PlaintextModulus()
	coeffs := make([]uint64, len(c))
	for i, v := range c {
		switch {
		case v > 0:
			coeffs[i] = uint64(v)
		case v < 0:
			coeffs[i] = t - uint64(-v)
		}
	}
	return p.toSlots(coeffs, rlwe.NewScale(1))
}

// VerifyEncryption checks a proof of encryption of ct under pk, made by
// EncryptProven with this context for the index-th ciphertext.
func VerifyEncryption(p Params, pk *PublicKey, ct *Ciphertext, proof, context []byte, index int) error {
	_, _, err := verifyEncryption(p, pk, ct, proof, context, index, false, nil)
	return err
}

// VerifyEncryptionLinked checks a proof of encryption made by
// EncryptLinked, whose link bound the bytes bound into its challenge, and
// returns the slots of its challenge and of its answer for the plaintext
// (slot j of the answer is mask_j + challenge_j*m_j modulo t), which the
// link's verifier checks against its commitments.
func VerifyEncryptionLinked(p Params, pk *PublicKey, ct *Ciphertext, proof, context []byte, index int, bound []byte) (challenge, answer []uint64, err error) {
	return verifyEncryption(p, pk, ct, proof, context, index, true, bound)
}

func verifyEncryption(p Params, pk *PublicKey, ct *Ciphertext, proof, context []byte, index int, linked bool, bound []byte) ([]uint64, []uint64, error) {
	if err := p.checkKey(pk); err != nil {
		return nil, nil, err
	}
	if err := ct.validFor(p); err != nil {
		return nil, nil, err
	}
	if !ct.ct.IsNTT {
		return nil, nil, fmt.Errorf("%w: ciphertext not in the NTT domain", ErrProof)
	}
	st := p.encStatement(pk, ct, context, index)
	st.Linked, st.Bound = linked, bound
	c, zt, err := shortproof.VerifyLinked(st, proof)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrProof, err)
	}
	if !linked {
		return nil, nil, nil
	}
	return p.challengeSlots(c), p.toSlots(zt, p.s.meta.Scale), nil
}

// ProofSize is the length in bytes of one proof of encryption.
func (p Params) ProofSize() int {
	return p.encStatement(nil, &Ciphertext{p: p, ct: p.newCiphertext()}, nil, 0).Size()
}
