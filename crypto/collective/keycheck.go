package collective

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/smudge"
)

// The key check of a member's CKG share. A share s_i·a + e_i is also, with
// the CRS polynomial a, a public key of its own, whose secret is the
// member's s_i. A member that made its share as the protocol says can
// decrypt under it what the collective key will carry: a sum of as many
// fresh encryptions as there are members. One that sent anything else (a
// share with a large error, or one chosen to make the collective key
// useless) cannot, except with probability t^-slots: decrypting is then
// guessing a random vector. So a verifier encrypts random values under the
// share (KeyCheckChallenge), the member decrypts them with its secret
// (KeyCheckDecrypt) and commits to what it got before it is told the values
// (node and coordinator, "key check" in docs/crypto.md).

// KeyCheckChallenge returns a ciphertext under share, a member's CKG share
// of the epoch whose CRS is crs taken as a public key, and the values it
// encrypts (every slot within MaxAbs). Its noise is that of a release of
// sum partials key-switched by decryptors members, or more: one fresh
// encryption of random values multiplied by sum (the noise of a sum of sum
// encryptions is at most sum times one's), plus one smudging draw, the
// noise a decryptor's key-switch share adds, multiplied by
// ceil(sqrt(decryptors)) (at least the standard deviation of decryptors
// draws). So a share passes only if its key leaves a release that
// headroom.
func KeyCheckChallenge(p homomorphic.Params, crs, share []byte, sum, decryptors int) (*homomorphic.Ciphertext, []int64, error) {
	if sum < 1 || decryptors < 0 {
		return nil, nil, fmt.Errorf("%w: a key check sums at least one encryption (%d) and the noise of no fewer than 0 decryptors (%d)", ErrInvalidArgument, sum, decryptors)
	}
	pk, err := CKGAggregate(p, crs, [][]byte{share})
	if err != nil {
		return nil, nil, err
	}
	slots := p.Slots()
	bound := uint64(p.MaxAbs() / int64(sum)) // slots in [-bound, bound] before the product
	buf := make([]byte, 8*slots)
	if _, err := rand.Read(buf); err != nil {
		return nil, nil, err
	}
	v := make([]int64, slots)
	want := make([]int64, slots)
	for i := range v {
		v[i] = int64(binary.LittleEndian.Uint64(buf[8*i:])%(2*bound+1)) - int64(bound)
		want[i] = v[i] * int64(sum)
	}
	cts, err := homomorphic.Encrypt(p, pk, v)
	if err != nil {
		return nil, nil, err
	}
	c := cts[0].RLWE(tok)
	rq := p.BGV(tok).RingQ().AtLevel(c.Level())
	rq.MulScalar(c.Value[0], uint64(sum), c.Value[0])
	rq.MulScalar(c.Value[1], uint64(sum), c.Value[1])
	if decryptors > 0 {
		e := rq.NewPoly()
		if err := smudge.AddNTT(p.BGV(tok).RingQ(), c.Level(), p.Smudging(tok), e); err != nil {
			return nil, nil, fmt.Errorf("collective: %w", err)
		}
		rq.MulScalar(e, uint64(math.Ceil(math.Sqrt(float64(decryptors)))), e)
		rq.Add(c.Value[0], e, c.Value[0])
	}
	return cts[0], want, nil
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
