package collective

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"

	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// Key-switch shares made again (docs/crypto.md, "On demand"). A member
// proves its key-switch shares only when the coordinator asks, after a
// release's total was refused. Rather than keep each share's randomness
// until then (a secret to guard, and lost when the member restarts), it
// draws that randomness from a key derived from its secret share and from
// every input the share depends on: the caller's nonce, the ciphertext, the
// target key and, for a threshold share, the active points. The same inputs
// give the same share bit for bit, so the member makes the share and its
// witness again when asked. Any other input gives independent randomness
// (HMAC-SHA256 as a pseudorandom function of the secret), so two different
// shares never share their noise: with the same u and eps, shares of c1 and
// c1' would give s*(c1 - c1') away.

// switchSeeds derives the seeds of a key-switch share's randomness (the
// ring samplers', the smudging's) from the member's secret polynomial and
// the share's inputs: k = SHA-256(domain, secret), then HMAC-SHA256_k over
// the parameter set, the nonce, the ciphertext's and the target key's
// SHA-256 (of their coefficients) and the active points, each
// length-prefixed.
func switchSeeds(p homomorphic.Params, secret ring.Poly, nonce []byte, c *rlwe.Ciphertext, target *homomorphic.PublicKey, active []uint64) (samplers, smudging [32]byte) {
	buf := make([]byte, 0, 8<<10)
	defer clear(buf[:cap(buf)])
	key := sha256.New()
	key.Write([]byte("fedstat/key-switch-noise/v1 key"))
	buf = hashPolys(key, buf, secret)
	k := key.Sum(nil)
	defer clear(k)
	mac := hmac.New(sha256.New, k)
	field := func(b []byte) {
		mac.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		mac.Write(b)
	}
	field([]byte(p.Name()))
	field(nonce)
	// The ciphertext and the target key by their coefficients (what the
	// share is computed from), each with its own length prefix.
	h := sha256.New()
	buf = hashPolys(h, buf, c.Value...)
	field(h.Sum(nil))
	h.Reset()
	t := target.RLWE(tok)
	buf = hashPolys(h, buf, t.Value[0].Q, t.Value[1].Q)
	field(h.Sum(nil))
	points := binary.BigEndian.AppendUint64(nil, uint64(len(active)))
	for _, x := range active {
		points = binary.BigEndian.AppendUint64(points, x)
	}
	field(points)
	root := mac.Sum(nil)
	defer clear(root)
	samplers = sha256.Sum256(append([]byte("samplers:"), root...))
	smudging = sha256.Sum256(append([]byte("smudging:"), root...))
	return samplers, smudging
}

// hashPolys writes the polynomials' shapes and coefficients to h, little
// endian, through buf (returned for reuse).
func hashPolys(h hash.Hash, buf []byte, polys ...ring.Poly) []byte {
	for _, pl := range polys {
		buf = binary.BigEndian.AppendUint64(buf[:0], uint64(len(pl.Coeffs)))
		h.Write(buf)
		for _, row := range pl.Coeffs {
			buf = binary.BigEndian.AppendUint64(buf[:0], uint64(len(row)))
			for _, v := range row {
				if len(buf)+8 > cap(buf) {
					h.Write(buf)
					buf = buf[:0]
				}
				buf = binary.LittleEndian.AppendUint64(buf, v)
			}
			h.Write(buf)
		}
	}
	return buf
}
