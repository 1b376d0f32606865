package collective

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
	"github.com/fedstat/fedstat/crypto/internal/shortproof"
	"github.com/fedstat/fedstat/crypto/internal/smudge"
)

// Proofs of key-switch shares (docs/crypto.md, "Proofs of key-switch
// shares"). When the key-switching secret of a member is its additive CKG
// secret s_i (an epoch with T = K), its share of ct towards target is
//
//	h0 = s_i*c1 + u*target0 + eps,  h1 = u*target1 + e1,
//
// with u ternary, |e1| <= 19 and eps = e0 + e + E the encryption error, the
// protocol error and the smudging noise (|E| <= 10 sigma, below 2^64).
// KeySwitchShareProven makes the share itself, keeping that randomness, and
// proves that it knows s_i, u, e1 and eps of this form together with the
// error e_i of its CKG share p_i = e_i - s_i*a: the same s_i in both. eps
// is proven as eps_lo + 2^40*eps_hi, |eps_lo| < 2^40, |eps_hi| <= 2^24.

// ErrKeySwitchProof is returned when a proof of a key-switch share does not
// verify.
var ErrKeySwitchProof = errors.New("collective: proof of the key-switch share refused")

const epsSplit = 40

// ksStatement is what a proof of the key-switch share (h0, h1) of c1
// towards target proves, for the member whose CKG share is ckg.
func ksStatement(p homomorphic.Params, crp, ckg ring.Poly, target *homomorphic.PublicKey, c1, h0, h1 ring.Poly, context []byte) *shortproof.Statement {
	r := p.BGV(tok).RingQ()
	ctx := ksContext(p, context)
	var t0, t1 ring.Poly
	if target != nil {
		t0, t1 = target.RLWE(tok).Value[0].Q, target.RLWE(tok).Value[1].Q
	}
	return &shortproof.Statement{
		Domain: "fedstat/key-switch-share/v1",
		Ring:   r,
		// s, e_ckg, u, e1, eps_lo, eps_hi
		Bounds: []int64{1, ckgErrBound, 1, ckgErrBound, 1<<epsSplit - 1, 1 << (64 - epsSplit)},
		Apply: func(x [][]int64, _ []uint64, out []ring.Poly) {
			// The CKG share: MForm(NTT(e)) - MForm(NTT(s))*a.
			setMForm(r, out[0], x[1])
			sM := shortproof.GetPoly(r)
			defer shortproof.PutPoly(r, sM)
			setMForm(r, *sM, x[0])
			r.MulCoeffsMontgomeryThenSub(*sM, crp, out[0])
			// h0 = u*target0 + NTT(eps) + c1*s, h1 = u*target1 + NTT(e1).
			switchNoise(r, x[2], x[3], x[4], x[5], t0, t1, out[1], out[2])
			r.MulCoeffsMontgomeryThenAdd(c1, *sM, out[1])
		},
		Image:   []ring.Poly{ckg, h0, h1},
		Context: ctx,
	}
}

// setMForm sets out = MForm(NTT(x)) for the integer polynomial x.
func setMForm(r *ring.Ring, out ring.Poly, x []int64) {
	shortproof.SetSigned(r, out, x)
	r.NTT(out, out)
	r.MForm(out, out)
}

// switchNoise sets the part of a key-switch share (h0, h1) towards
// (target0, target1) that does not depend on the secret, as KeySwitchShare
// makes it: h0 = u*target0 + NTT(eps_lo + 2^40*eps_hi), h1 = u*target1 +
// NTT(e1), for integer polynomials u, e1, eps_lo, eps_hi. The proofs of
// both kinds of key-switch share use it (ksStatement, tksStatement).
func switchNoise(r *ring.Ring, u, e1, lo, hi []int64, target0, target1, h0, h1 ring.Poly) {
	uP, tmp := shortproof.GetPoly(r), shortproof.GetPoly(r)
	defer shortproof.PutPoly(r, uP)
	defer shortproof.PutPoly(r, tmp)
	shortproof.SetSigned(r, *uP, u)
	r.NTT(*uP, *uP)
	// eps_lo + 2^40 eps_hi in the coefficient domain, then one NTT.
	shortproof.SetSigned(r, *tmp, hi)
	r.MulScalar(*tmp, 1<<epsSplit, *tmp)
	shortproof.SetSigned(r, h1, lo) // h1 as scratch until its turn
	r.Add(*tmp, h1, *tmp)
	r.NTT(*tmp, *tmp)
	r.MulCoeffsMontgomery(*uP, target0, h0)
	r.Add(h0, *tmp, h0)
	shortproof.SetSigned(r, *tmp, e1)
	r.NTT(*tmp, *tmp)
	r.MulCoeffsMontgomery(*uP, target1, h1)
	r.Add(h1, *tmp, h1)
}

// switchInputs checks the inputs every key-switch share proof and check
// shares (the target key, an NTT-domain ciphertext, the CRS) and returns
// the ciphertext and the CRS polynomial.
func switchInputs(p homomorphic.Params, target *homomorphic.PublicKey, ct *homomorphic.Ciphertext, crs []byte) (*rlwe.Ciphertext, ring.Poly, error) {
	if err := checkParams(p); err != nil {
		return nil, ring.Poly{}, err
	}
	if target == nil || target.RLWE(tok) == nil || !target.Params().Equal(p) {
		return nil, ring.Poly{}, fmt.Errorf("%w: target key missing or of another parameter set", ErrMismatch)
	}
	c, err := checkCT(p, ct)
	if err != nil {
		return nil, ring.Poly{}, err
	}
	if !c.IsNTT {
		return nil, ring.Poly{}, fmt.Errorf("%w: ciphertext not in NTT domain", ErrMismatch)
	}
	crp, err := ckgPoly(p, crs)
	if err != nil {
		return nil, ring.Poly{}, err
	}
	return c, crp, nil
}

// ksContext is the context a proof of a key-switch share is bound to:
// the parameter set, then the caller's, length-prefixed.
func ksContext(p homomorphic.Params, context []byte) []byte {
	ctx := []byte(p.Name())
	ctx = binary.BigEndian.AppendUint64(ctx, uint64(len(context)))
	return append(ctx, context...)
}

// ckgWitness returns the secret s and the error e of the CKG share ckg of
// the member with key sk (e = ckg + s*a), as integer polynomials.
func ckgWitness(p homomorphic.Params, sk *homomorphic.SecretKeyShare, crp, ckg ring.Poly) (s, e []int64) {
	r := p.BGV(tok).RingQ()
	sPoly := r.NewPoly()
	r.IMForm(sk.RLWE(tok).Value.Q, sPoly)
	r.INTT(sPoly, sPoly)
	ePoly := r.NewPoly()
	r.MulCoeffsMontgomery(sk.RLWE(tok).Value.Q, crp, ePoly)
	r.Add(ePoly, ckg, ePoly)
	r.IMForm(ePoly, ePoly)
	r.INTT(ePoly, ePoly)
	return shortproof.Centred(r, sPoly), shortproof.Centred(r, ePoly)
}

// KeySwitchShareProven returns the member's key-switch share of ct towards
// target (as KeySwitchShare: the same distribution) and a proof that it is
// of the form above for the secret of the member's CKG share ckgShare of
// the epoch of crs, bound to context. sk must be that CKG share's secret
// (an epoch with T = K); otherwise no proof can be made.
func KeySwitchShareProven(p homomorphic.Params, sk *homomorphic.SecretKeyShare, target *homomorphic.PublicKey, ct *homomorphic.Ciphertext, crs, ckgShare, context []byte) (share, proof []byte, err error) {
	share, w, err := KeySwitchShareWitness(p, sk, target, ct, crs, ckgShare, nil)
	if err != nil {
		return nil, nil, err
	}
	defer w.Wipe()
	if proof, err = w.Prove(context); err != nil {
		return nil, nil, err
	}
	return share, proof, nil
}

// KeySwitchShareWitness is KeySwitchShareProven without the proof: the
// share and the witness that proves it on demand (ShareWitness.Prove),
// for a member that proves its shares only when a release's total is
// refused. It fails when sk is not the secret of ckgShare. The nonce is
// as for ThresholdKeySwitchShareWitness: nil for fresh randomness, else
// the same call gives the same share again.
func KeySwitchShareWitness(p homomorphic.Params, sk *homomorphic.SecretKeyShare, target *homomorphic.PublicKey, ct *homomorphic.Ciphertext, crs, ckgShare, nonce []byte) ([]byte, *ShareWitness, error) {
	c, crp, err := switchInputs(p, target, ct, crs)
	if err != nil {
		return nil, nil, err
	}
	if err := checkSK(p, sk); err != nil {
		return nil, nil, err
	}
	r := p.BGV(tok).RingQ()
	level := c.Level()
	ckg := r.NewPoly()
	if _, err := decode(p, polycodec.KindCKGShare, level, ckgShare, ckg); err != nil {
		return nil, nil, err
	}
	s, eCKG := ckgWitness(p, sk, crp, ckg)
	if !within(s, 1) || !within(eCKG, ckgErrBound) {
		return nil, nil, fmt.Errorf("%w: the secret is not this CKG share's", ErrKeySwitchProof)
	}
	u, e1, lo, hi, err := ksNoise(p, noiseSeeds(p, sk.RLWE(tok).Value.Q, nonce, c, target, nil))
	if err != nil {
		return nil, nil, err
	}
	h0, h1 := r.NewPoly(), r.NewPoly()
	st := ksStatement(p, crp, ckg, target, c.Value[1], h0, h1, nil)
	w := &ShareWitness{st: st, ctx: func(context []byte) []byte { return ksContext(p, context) }, w: [][]int64{s, eCKG, u, e1, lo, hi}}
	out := []ring.Poly{r.NewPoly(), h0, h1}
	st.Apply(w.w, nil, out)
	share, err := encodeAt(p, polycodec.KindKeySwitchShare, level, 0, 0, h0, h1)
	if err != nil {
		w.Wipe()
		return nil, nil, err
	}
	return share, w, nil
}

// smudgedSplit adds the smudging noise to the protocol errors e0 + e and
// splits each |e0 + e + E| < 2^64 as eps_lo + 2^40*eps_hi (same signs).
func smudgedSplit(p homomorphic.Params, e0, eNoise []int64, seed *[32]byte) (lo, hi []int64, err error) {
	n := len(e0)
	var mag []uint64
	var neg []bool
	if seed != nil {
		mag, neg, err = smudge.SampleSeeded(p.Smudging(tok), n, *seed)
	} else {
		mag, neg, err = smudge.Sample(p.Smudging(tok), n)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("collective: %w", err)
	}
	lo, hi = make([]int64, n), make([]int64, n)
	for i := range lo {
		// |e0 + e + E| < 2^64: the magnitude and sign of the sum.
		small := e0[i] + eNoise[i]
		var m uint64
		sign := neg[i]
		switch {
		case sign == (small < 0) || small == 0:
			m = mag[i] + uint64(abs64(small))
		case uint64(abs64(small)) > mag[i]:
			m, sign = uint64(abs64(small))-mag[i], !sign
		default:
			m = mag[i] - uint64(abs64(small))
		}
		l, h := int64(m&(1<<epsSplit-1)), int64(m>>epsSplit)
		if sign {
			l, h = -l, -h
		}
		lo[i], hi[i] = l, h
	}
	return lo, hi, nil
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// VerifyKeySwitchShare checks a proof of the key-switch share share of ct
// towards target, made with context by the member whose CKG share of the
// epoch of crs is ckgShare.
func VerifyKeySwitchShare(p homomorphic.Params, target *homomorphic.PublicKey, ct *homomorphic.Ciphertext, crs, ckgShare, share, proof, context []byte) error {
	c, crp, err := switchInputs(p, target, ct, crs)
	if err != nil {
		return err
	}
	r := p.BGV(tok).RingQ()
	level := c.Level()
	ckg, h0, h1 := r.NewPoly(), r.NewPoly(), r.NewPoly()
	if _, err := decode(p, polycodec.KindCKGShare, level, ckgShare, ckg); err != nil {
		return err
	}
	if _, err := decode(p, polycodec.KindKeySwitchShare, level, share, h0, h1); err != nil {
		return err
	}
	if err := shortproof.Verify(ksStatement(p, crp, ckg, target, c.Value[1], h0, h1, context), proof); err != nil {
		return fmt.Errorf("%w: %v", ErrKeySwitchProof, err)
	}
	return nil
}

// KeySwitchProofSize is the length in bytes of a proof of a key-switch
// share.
func KeySwitchProofSize(p homomorphic.Params) int {
	r := p.BGV(tok).RingQ()
	return ksStatement(p, r.NewPoly(), r.NewPoly(), nil, r.NewPoly(), r.NewPoly(), r.NewPoly(), nil).Size()
}
