package linkage

import (
	"fmt"

	"github.com/gtank/ristretto255"
)

// EncryptValues encrypts each vs[i] under x in exponential ElGamal with a
// fresh random r: (r·B, v·B + r·X), in the order of vs. A negative v is
// encoded as the scalar −|v| (l − |v|), so sums of positive and negative
// values decrypt to the signed total while |total| stays far below l/2. It
// checks that x is canonical and not the identity. v and r are multiplied
// in constant time. Work is split over GOMAXPROCS goroutines.
func EncryptValues(x Point, vs []int64) ([]ValueCiphertext, error) {
	xe, err := decodeKey(x)
	if err != nil {
		return nil, err
	}
	out := make([]ValueCiphertext, len(vs))
	err = parallel(len(vs), func(lo, hi int) error {
		rr := newRandReader()
		defer clear(rr.buf[:])
		c1, c2, vb := ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement()
		for i := lo; i < hi; i++ {
			r := rr.scalar()
			v := scalarFromInt64(vs[i])
			c1.ScalarBaseMult(r)
			c2.ScalarMult(r, xe)
			vb.ScalarBaseMult(v)
			c2.Add(c2, vb)
			r.Zero()
			v.Zero()
			putPair(out[i][:], c1, c2)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AddValues returns the componentwise sum of ciphertexts under one key: an
// encryption of the sum of their values. The sum of no ciphertexts is
// (identity, identity), an encryption of 0 with randomness 0 (add a fresh
// encryption before revealing it if that matters). It checks every half of
// every ciphertext (the error names the index); it cannot check that they
// share a key.
func AddValues(cs []ValueCiphertext) (ValueCiphertext, error) {
	s1, s2 := ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement()
	for i := range cs {
		c1, c2, err := decodePair(cs[i][:])
		if err != nil {
			return ValueCiphertext{}, fmt.Errorf("value ciphertext %d: %w", i, err)
		}
		s1.Add(s1, c1)
		s2.Add(s2, c2)
	}
	var out ValueCiphertext
	putPair(out[:], s1, s2)
	return out, nil
}

// DecryptShare returns member j's decryption share of c: w_j·C1, with w_j
// its Lagrange-weighted share for the decrypting set (Weighted). It checks
// that w and C1 are canonical; w is multiplied in constant time. Finding w_j
// from the share is a discrete-log problem, but the T shares of a set
// decrypt c, whatever c is: a pseudonym ciphertext passed off as a value
// would be decrypted to H(id), which is a dictionary away from the
// identifier. A member therefore decrypts only sums of payloads: fedstat's
// node does so once per query, for the cells the coordinator names, and
// relies on the coordinator following the protocol (it is semi-honest) to
// name only the sums of matching payloads.
func DecryptShare(w Scalar, c ValueCiphertext) (Point, error) {
	ws, err := w.decode()
	if err != nil {
		return Point{}, fmt.Errorf("weighted share: %w", err)
	}
	defer ws.Zero()
	c1, _, err := decodePair(c[:])
	if err != nil {
		return Point{}, fmt.Errorf("value ciphertext: %w", err)
	}
	return encodePoint(c1.ScalarMult(ws, c1)), nil
}

// CombineDecryption returns C2 − Σ shares, which is v·B when shares are the
// DecryptShare outputs of a full stage set (T members with weights for that
// set); recover v with DiscreteLog. It checks canonical encodings (the error
// names the bad share) but cannot tell a wrong share from a right one: a
// wrong share yields a wrong point, which DiscreteLog will most likely
// report as out of range.
func CombineDecryption(c ValueCiphertext, shares []Point) (Point, error) {
	_, c2, err := decodePair(c[:])
	if err != nil {
		return Point{}, fmt.Errorf("value ciphertext: %w", err)
	}
	for i := range shares {
		d, err := shares[i].decode()
		if err != nil {
			return Point{}, fmt.Errorf("decryption share %d: %w", i, err)
		}
		c2.Subtract(c2, d)
	}
	return encodePoint(c2), nil
}
