package linkage

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/gtank/ristretto255"
)

// ShareProofSize is the size of a ShareProof in bytes.
const ShareProofSize = 2 * ScalarSize

// ErrInvalidProof: a ShareProof that does not verify: the shares it covers
// were not all made with the weighted share behind the key it was checked
// against (or the proof, the context or the inputs were changed).
var ErrInvalidProof = errors.New("linkage: decryption shares do not match their proof")

// ShareProof is a non-interactive zero-knowledge proof that a batch of
// decryption shares D_i were made as w·C1_i by the holder of the weighted
// share w whose public key is W = w·B (WeightedKey): a Chaum–Pedersen proof
// of equal discrete logs, log_B W = log_{C1_i} D_i for every i, batched by a
// random linear combination and made non-interactive with Fiat–Shamir
// (SHA-512). Its wire form is the challenge c and the response z, 32 bytes
// each.
//
// The batching follows the composite DLEQ proof of RFC 9497 (section 2.2):
// coefficients d_i are hashed from every input, M = Σ d_i·C1_i and
// Z = Σ d_i·D_i, and one proof shows log_B W = log_M Z. A share D_j off by
// any E ≠ 0 makes Z − w·M = d_j·E + (the others), which is zero for at most
// one value of d_j: a cheater passes with probability about 2^-252 per
// hash query. Soundness rests on discrete log in ristretto255 and SHA-512
// as a random oracle; the proof is honest-verifier zero knowledge (a
// simulator picks c and z and sets the commitments), so it tells nothing of
// w beyond W and the shares it covers.
type ShareProof [ShareProofSize]byte

// WeightedKey returns W = λ_self(points)·Y_self, the public key of member
// self's weighted share w = λ_self(points)·s_self (Weighted) for the set
// points: what a ShareProof of self's decryption shares for that set is
// checked against. Checks as Lagrange, and that self has a verification key.
func (pk *PublicKey) WeightedKey(points []uint64, self uint64) (Point, error) {
	y, ok := pk.Verify[self]
	if !ok {
		return Point{}, fmt.Errorf("%w: no verification key for member %d", ErrInvalidArgument, self)
	}
	ye, err := y.decode()
	if err != nil {
		return Point{}, fmt.Errorf("verification key of member %d: %w", self, err)
	}
	l, err := lagrange(points, self)
	if err != nil {
		return Point{}, err
	}
	return encodePoint(ye.ScalarMult(l, ye)), nil
}

// ProveShares proves that shares[i] = w·c1s[i] for every i (the outputs of
// PartialDecrypt or DecryptShare with w), bound to context: the verifier
// must give the same context, so a proof made for one query, list or
// member does not verify for another. It checks every input (the error
// names the first bad one) but not the statement itself: a proof of shares
// that are not w·C1 is made, and does not verify. w is multiplied in
// constant time; work is split over GOMAXPROCS goroutines.
func ProveShares(w Scalar, context []byte, c1s, shares []Point) (ShareProof, error) {
	var proof ShareProof
	ws, err := w.decode()
	if err != nil {
		return proof, fmt.Errorf("weighted share: %w", err)
	}
	defer ws.Zero()
	wkey := encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(ws))
	seed, err := shareSeed(wkey, context, c1s, shares)
	if err != nil {
		return proof, err
	}
	// The prover knows w, so Z = w·M: one multiplication instead of a
	// second sum over the shares (RFC 9497's "fast" composite).
	m, _, err := composite(seed, c1s, shares, false)
	if err != nil {
		return proof, err
	}
	z := ristretto255.NewIdentityElement().ScalarMult(ws, m)
	r := newRandReader().scalar()
	defer r.Zero()
	a1 := ristretto255.NewIdentityElement().ScalarBaseMult(r)
	a2 := ristretto255.NewIdentityElement().ScalarMult(r, m)
	c := shareChallenge(seed, m, z, a1, a2)
	resp := ristretto255.NewScalar().Multiply(c, ws)
	resp.Add(resp, r)
	c.Encode(proof[:0])
	resp.Encode(proof[ScalarSize:ScalarSize])
	return proof, nil
}

// VerifyShares checks a ShareProof: that shares[i] = w·c1s[i] for every i,
// where wkey = w·B (WeightedKey), under the same context as it was made.
// It returns nil when the proof holds, ErrInvalidProof when it does not,
// and ErrEncoding or ErrInvalidArgument (naming the element) for bytes that
// are not canonical points or scalars, or mismatched lengths. Everything it
// computes is public (variable time).
func VerifyShares(wkey Point, context []byte, c1s, shares []Point, proof ShareProof) error {
	we, err := wkey.decode()
	if err != nil {
		return fmt.Errorf("weighted key: %w", err)
	}
	c := ristretto255.NewScalar()
	if _, err := c.SetCanonicalBytes(proof[:ScalarSize]); err != nil {
		return fmt.Errorf("%w: proof challenge", ErrEncoding)
	}
	resp := ristretto255.NewScalar()
	if _, err := resp.SetCanonicalBytes(proof[ScalarSize:]); err != nil {
		return fmt.Errorf("%w: proof response", ErrEncoding)
	}
	seed, err := shareSeed(wkey, context, c1s, shares)
	if err != nil {
		return err
	}
	m, z, err := composite(seed, c1s, shares, true)
	if err != nil {
		return err
	}
	negC := ristretto255.NewScalar().Negate(c)
	// A1 = z·B − c·W and A2 = z·M − c·Z: the commitments the challenge
	// must have been hashed from.
	a1 := ristretto255.NewIdentityElement().VarTimeDoubleScalarBaseMult(negC, we, resp)
	a2 := ristretto255.NewIdentityElement().VarTimeMultiScalarMult([]*ristretto255.Scalar{resp, negC}, []*ristretto255.Element{m, z})
	if shareChallenge(seed, m, z, a1, a2).Equal(c) != 1 {
		return ErrInvalidProof
	}
	return nil
}

// shareSeed hashes everything a ShareProof is about: the domain, the
// context, W, and every C1 and share, each length-prefixed.
func shareSeed(wkey Point, context []byte, c1s, shares []Point) ([]byte, error) {
	if len(c1s) != len(shares) {
		return nil, fmt.Errorf("%w: %d shares for %d ciphertexts", ErrInvalidArgument, len(shares), len(c1s))
	}
	h := sha512.New()
	writeLen(h, shareProofDomain)
	writeLen(h, context)
	h.Write(wkey[:])
	writeUint(h, uint64(len(c1s)))
	for i := range c1s {
		h.Write(c1s[i][:])
	}
	for i := range shares {
		h.Write(shares[i][:])
	}
	return h.Sum(nil), nil
}

// shareProofDomain separates ShareProof hashes from every other use of
// SHA-512 in fedstat.
var shareProofDomain = []byte("fedstat/linkage/share-proof/v1")

// writeLen writes b length-prefixed (writeUint of its length).
func writeLen(h hash.Hash, b []byte) {
	writeUint(h, uint64(len(b)))
	h.Write(b)
}

// writeUint writes x as 8 bytes, big endian.
func writeUint(h hash.Hash, x uint64) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], x)
	h.Write(n[:])
}

// composite returns M = Σ d_i·C1_i and, with withZ, Z = Σ d_i·D_i, with
// d_i hashed from seed and i, checking every point (the error names the
// first bad one). The sums are of public values (variable time), in chunks
// over GOMAXPROCS goroutines.
func composite(seed []byte, c1s, shares []Point, withZ bool) (m, z *ristretto255.Element, err error) {
	const chunk = 32
	n := len(c1s)
	parts := (n + chunk - 1) / chunk
	ms := make([]*ristretto255.Element, parts)
	zs := make([]*ristretto255.Element, parts)
	err = parallel(parts, func(lo, hi int) error {
		for p := lo; p < hi; p++ {
			a, b := p*chunk, min((p+1)*chunk, n)
			ds := make([]*ristretto255.Scalar, b-a)
			cs := make([]*ristretto255.Element, b-a)
			xs := make([]*ristretto255.Element, b-a)
			for i := a; i < b; i++ {
				c1, err := c1s[i].decode()
				if err != nil {
					return fmt.Errorf("element %d: C1: %w", i, err)
				}
				d, err := shares[i].decode()
				if err != nil {
					return fmt.Errorf("element %d: share: %w", i, err)
				}
				h := sha512.New()
				h.Write(seed)
				writeUint(h, uint64(i))
				ds[i-a], cs[i-a], xs[i-a] = scalarFromUniform(h.Sum(nil)), c1, d
			}
			ms[p] = ristretto255.NewIdentityElement().VarTimeMultiScalarMult(ds, cs)
			if withZ {
				zs[p] = ristretto255.NewIdentityElement().VarTimeMultiScalarMult(ds, xs)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	m, z = ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement()
	for p := range ms {
		m.Add(m, ms[p])
		if withZ {
			z.Add(z, zs[p])
		}
	}
	return m, z, nil
}

// shareChallenge is the Fiat–Shamir challenge c = H(seed, M, Z, A1, A2).
func shareChallenge(seed []byte, m, z, a1, a2 *ristretto255.Element) *ristretto255.Scalar {
	h := sha512.New()
	h.Write(seed)
	h.Write([]byte("challenge"))
	for _, e := range []*ristretto255.Element{m, z, a1, a2} {
		h.Write(e.Encode(nil))
	}
	return scalarFromUniform(h.Sum(nil))
}
