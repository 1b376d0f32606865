package collective

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"

	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// The key check of a member's CKG share. A share s_i·a + e_i is also, with
// the CRS polynomial a, a public key of its own, whose secret is the
// member's s_i. A member that made its share as the protocol says can
// decrypt under it what the collective key will carry: a sum of as many
// fresh encryptions as there are members, with the decryptors' smudging
// noise. One that sent anything else (a share with a large error, or one
// chosen to make the collective key useless) cannot, except with
// probability t^-slots: decrypting is then guessing a random vector.
//
// The challenge is reproducible from a 32-byte seed: the values it
// encrypts, the encryption's randomness and the headroom noise all come
// from it. So a verifier sends the challenge (KeyCheckChallenge), the member
// decrypts it (KeyCheckDecrypt) and commits to what it got, and only then
// is told the seed; it recomputes the challenge from the seed and its own
// share (KeyCheckRecompute), and opens its commitment only if the
// challenge was that. A member therefore never shows the decryption of a
// ciphertext the verifier crafted, and anyone holding the seed and the
// member's signed share can check that a challenge was honest (node and
// coordinator, docs/crypto.md, "The key check").

// KeyCheckSeedSize is the size of a key-check seed.
const KeyCheckSeedSize = 32

// KeyCheckChallenge draws a seed and returns it with the challenge it makes
// (KeyCheckRecompute) and the values the challenge encrypts.
func KeyCheckChallenge(p homomorphic.Params, crs, share []byte, sum, decryptors int) (ct *homomorphic.Ciphertext, values []int64, seed []byte, err error) {
	seed = make([]byte, KeyCheckSeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, nil, nil, err
	}
	ct, values, err = KeyCheckRecompute(p, crs, share, seed, sum, decryptors)
	return ct, values, seed, err
}

// KeyCheckRecompute returns the challenge seed makes under share, a
// member's CKG share of the epoch whose CRS is crs taken as a public key,
// and the values it encrypts (every slot within MaxAbs). Its noise is that
// of a release of sum partials key-switched by decryptors members, or more:
// one encryption of random values (the share's error times a ternary u,
// plus fresh errors) multiplied by sum (the noise of a sum of sum
// encryptions is at most sum times one's), plus a term with at least the
// variance of decryptors smudging draws.
// So a share passes only if its key leaves a release that headroom. The
// same arguments always give the same ciphertext.
func KeyCheckRecompute(p homomorphic.Params, crs, share, seed []byte, sum, decryptors int) (*homomorphic.Ciphertext, []int64, error) {
	if sum < 1 || decryptors < 0 || len(seed) != KeyCheckSeedSize {
		return nil, nil, fmt.Errorf("%w: a key check needs a %d-byte seed (got %d), at least one encryption (%d) and no fewer than 0 decryptors (%d)",
			ErrInvalidArgument, KeyCheckSeedSize, len(seed), sum, decryptors)
	}
	pk, err := CKGAggregate(p, crs, [][]byte{share})
	if err != nil {
		return nil, nil, err
	}
	prng, err := sampling.NewKeyedPRNG(append([]byte("fedstat/key-check/v1\x00"), seed...))
	if err != nil {
		return nil, nil, err
	}
	params := p.BGV(tok)
	rq := params.RingQ()
	slots := p.Slots()
	t := p.PlaintextModulus()
	bound := uint64(p.MaxAbs() / int64(sum)) // slots in [-bound, bound] before the product
	values := make([]int64, slots)
	encoded := make([]uint64, slots)
	buf := make([]byte, 8*slots)
	if _, err := prng.Read(buf); err != nil {
		return nil, nil, err
	}
	for i := range values {
		v := int64(binary.LittleEndian.Uint64(buf[8*i:])%(2*bound+1)) - int64(bound)
		values[i] = v * int64(sum)
		if v < 0 {
			encoded[i] = t - uint64(-v)
		} else {
			encoded[i] = uint64(v)
		}
	}
	// (p_i·u + e0 + pt, a·u + e1), times sum, all from the seed.
	c := bgv.NewCiphertext(params, 1, params.MaxLevel())
	*c.MetaData = p.CiphertextMetaData(tok)
	ct := homomorphic.WrapCiphertext(tok, p, c)
	level := c.Level()
	rq = rq.AtLevel(level)
	pt := bgv.NewPlaintext(params, level)
	if err := bgv.NewEncoder(params).Encode(encoded, pt); err != nil {
		return nil, nil, fmt.Errorf("collective: encode: %w", err)
	}
	xs, err := ring.NewSampler(prng, rq, params.Xs(), false)
	if err != nil {
		return nil, nil, err
	}
	xe, err := ring.NewSampler(prng, rq, params.Xe(), false)
	if err != nil {
		return nil, nil, err
	}
	u, e := rq.NewPoly(), rq.NewPoly()
	xs.Read(u)
	rq.NTT(u, u)
	key := pk.RLWE(tok)
	rq.MulCoeffsMontgomery(u, key.Value[0].Q, c.Value[0])
	rq.MulCoeffsMontgomery(u, key.Value[1].Q, c.Value[1])
	for _, v := range c.Value {
		xe.Read(e)
		rq.NTT(e, e)
		rq.Add(v, e, v)
	}
	rq.Add(c.Value[0], pt.Value, c.Value[0])
	rq.MulScalar(c.Value[0], uint64(sum), c.Value[0])
	rq.MulScalar(c.Value[1], uint64(sum), c.Value[1])
	if decryptors > 0 {
		// The decryptors' smudging noise, or more: m draws uniform over
		// [-2^63, 2^63) summed, with m·2^126/3 (their variance) at least
		// decryptors·sigma^2.
		sigma := p.SmudgingSigma()
		m := int(math.Ceil(float64(decryptors) * sigma * sigma * 3 / math.Exp2(126)))
		if err := uniformNoise(rq, prng, max(m, 1), e); err != nil {
			return nil, nil, err
		}
		rq.NTT(e, e)
		rq.Add(c.Value[0], e, c.Value[0])
	}
	return ct, values, nil
}

// uniformNoise sets e to the sum of m polynomials with coefficients
// uniform over [-2^63, 2^63), drawn from prng.
func uniformNoise(rq *ring.Ring, prng sampling.PRNG, m int, e ring.Poly) error {
	moduli := rq.ModuliChain()[:rq.Level()+1]
	buf := make([]byte, 8*len(e.Coeffs[0]))
	for i := range moduli {
		clear(e.Coeffs[i])
	}
	for range m {
		if _, err := prng.Read(buf); err != nil {
			return err
		}
		for j := range e.Coeffs[0] {
			r := int64(binary.LittleEndian.Uint64(buf[8*j:]))
			for i, q := range moduli {
				v := uint64(r) % q // r >= 0
				if r < 0 {
					v = (q - uint64(-(r+1))%q - 1) % q // q - |r| mod q
				}
				e.Coeffs[i][j] = (e.Coeffs[i][j] + v) % q
			}
		}
	}
	return nil
}

// KeyCheckDecrypt decrypts a key-check challenge with sk, the member's
// secret whose CKG share the challenge was made under.
func KeyCheckDecrypt(p homomorphic.Params, sk *homomorphic.SecretKeyShare, ct *homomorphic.Ciphertext) ([]int64, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	if err := checkSK(p, sk); err != nil {
		return nil, err
	}
	if _, err := checkCT(p, ct); err != nil {
		return nil, err
	}
	return homomorphic.Decrypt(p, homomorphic.WrapResultKey(tok, p, sk.RLWE(tok), nil), []*homomorphic.Ciphertext{ct}, p.Slots())
}

// KeyCheckHonest reports whether challenge (a marshalled ciphertext) is the
// one seed makes under share (KeyCheckRecompute), and returns the values it
// encrypts.
func KeyCheckHonest(p homomorphic.Params, crs, share, seed []byte, sum, decryptors int, challenge []byte) (bool, []int64, error) {
	ct, values, err := KeyCheckRecompute(p, crs, share, seed, sum, decryptors)
	if err != nil {
		return false, nil, err
	}
	b, err := ct.MarshalBinary()
	if err != nil {
		return false, nil, err
	}
	return bytes.Equal(b, challenge), values, nil
}
