package homomorphic

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// FingerprintPoints is how many challenge points a fingerprint evaluates
// each polynomial at, per prime of Q.
const FingerprintPoints = 2

// A fingerprint is a short, linear digest of a ciphertext at challenge
// points: each of its two components is read, for each prime q of Q, as the
// polynomial A(X) = sum_i a_i X^i over Z_q whose coefficients a_i are the
// stored residues (in whatever domain the ciphertext is stored: the map is
// linear either way), and evaluated at FingerprintPoints points z of Z_q
// drawn from a seed. Because evaluation is linear, the fingerprint of a sum
// of ciphertexts is the sum of their fingerprints modulo each prime
// (FingerprintAdd).
//
// It lets a decryptor check that a ciphertext S is the sum of partials it
// never downloads: every sender signs the fingerprint of its own partial at
// points derived from a digest of S and of the partial set, and the
// decryptor compares the fingerprint of S with the sum of the signed ones.
// If S differs from the true sum in any residue, the difference D is a
// nonzero polynomial of degree below N over some Z_q, which has at most N-1
// roots, so one random point misses it with probability at most (N-1)/q,
// about 2^-47 for N = 2^13 and 60-bit primes, and FingerprintPoints
// independent points with probability 2^-94. The points come from a hash of
// S itself, so a coordinator that wants a false S accepted must find one
// whose hash lands on roots of its own difference: each try succeeds with
// probability at most 2^-94 (docs/crypto.md, "Checking a sum without its
// partials").

// FingerprintLen is the length of a ciphertext's fingerprint: two
// components, each prime of Q, FingerprintPoints points.
func (p Params) FingerprintLen() int {
	return 2 * len(p.ringQ().ModuliChain()) * FingerprintPoints
}

// fingerprintPoints derives the challenge points of seed: for each prime q,
// FingerprintPoints values uniform in [0, q) (SHA-256 in counter mode,
// rejection sampling).
func (p Params) fingerprintPoints(seed []byte) [][]uint64 {
	moduli := p.ringQ().ModuliChain()
	out := make([][]uint64, len(moduli))
	var ctr uint64
	next := func() uint64 {
		h := sha256.New()
		h.Write([]byte("fedstat/fingerprint/v1\x00"))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(seed))))
		h.Write(seed)
		h.Write(binary.BigEndian.AppendUint64(nil, ctr))
		ctr++
		return binary.BigEndian.Uint64(h.Sum(nil))
	}
	for k, q := range moduli {
		limit := ^uint64(0) - (^uint64(0) % q) // largest multiple of q, exclusive bound for uniformity
		for len(out[k]) < FingerprintPoints {
			if v := next(); v < limit {
				out[k] = append(out[k], v%q)
			}
		}
	}
	return out
}

// Fingerprint is ct's fingerprint at the challenge points of seed, in the
// order component, prime, point.
func Fingerprint(p Params, ct *Ciphertext, seed []byte) ([]uint64, error) {
	if err := ct.validFor(p); err != nil {
		return nil, err
	}
	moduli := p.ringQ().ModuliChain()
	points := p.fingerprintPoints(seed)
	out := make([]uint64, 0, p.FingerprintLen())
	for c := range 2 {
		poly := ct.ct.Value[c]
		for k, q := range moduli {
			coeffs := poly.Coeffs[k]
			for _, z := range points[k] {
				// Horner from the highest coefficient: acc < q and z < q,
				// so the high word of acc*z is below q and Div64 cannot
				// overflow.
				var acc uint64
				for i := len(coeffs) - 1; i >= 0; i-- {
					hi, lo := bits.Mul64(acc, z)
					_, acc = bits.Div64(hi, lo, q)
					acc += coeffs[i] // both < q < 2^63: no overflow
					if acc >= q {
						acc -= q
					}
				}
				out = append(out, acc)
			}
		}
	}
	return out, nil
}

// FingerprintAdd returns a + b, each entry modulo its prime. Both must be
// fingerprints of p (FingerprintLen entries, each reduced).
func FingerprintAdd(p Params, a, b []uint64) ([]uint64, error) {
	n := p.FingerprintLen()
	if len(a) != n || len(b) != n {
		return nil, fmt.Errorf("%w: fingerprints of %d and %d entries, want %d", ErrInvalidArgument, len(a), len(b), n)
	}
	moduli := p.ringQ().ModuliChain()
	out := make([]uint64, n)
	for i := range n {
		q := moduli[(i/FingerprintPoints)%len(moduli)]
		if a[i] >= q || b[i] >= q {
			return nil, fmt.Errorf("%w: fingerprint entry %d is not reduced", ErrInvalidArgument, i)
		}
		s := a[i] + b[i]
		if s >= q {
			s -= q
		}
		out[i] = s
	}
	return out, nil
}

// ZeroFingerprint is the fingerprint of the zero ciphertext (the neutral
// element of FingerprintAdd).
func (p Params) ZeroFingerprint() []uint64 { return make([]uint64, p.FingerprintLen()) }
