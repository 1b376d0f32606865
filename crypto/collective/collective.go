// Package collective implements fedstat's multiparty protocols on top of
// Lattigo's mhe package: collective public-key generation (CKG), public-key
// switching of an aggregate to a result key (PCKS) with smudging noise, and
// T-out-of-N threshold sharing of the secret key (Thresholdizer/Combiner).
//
// All shares travel as bytes in the strict polycodec format (see
// crypto/internal/polycodec); decoding never panics on hostile input. The
// caller is responsible for authenticating them (crypto/envelope) and for
// encrypting threshold shares in transit.
//
// Concurrency: every function allocates its Lattigo protocol objects per
// call and is safe for concurrent use.
package collective

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/lowlevel"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
	"github.com/fedstat/fedstat/crypto/internal/smudge"
)

// CRSSize is the length of a common reference seed.
const CRSSize = 32

// Errors returned by this package, wrapped with %w.
var (
	ErrMalformed       = errors.New("collective: malformed share")
	ErrInvalidArgument = errors.New("collective: invalid argument")
	ErrMismatch        = errors.New("collective: incompatible inputs")
	ErrThreshold       = errors.New("collective: threshold not met")
)

var tok lowlevel.Token

// NewCRS returns a fresh 32-byte common reference seed from crypto/rand. The
// coordinator draws it once per key epoch and sends it to every node; the
// public polynomial of CKG is expanded from it.
func NewCRS() ([]byte, error) {
	crs := make([]byte, CRSSize)
	if _, err := rand.Read(crs); err != nil {
		return nil, fmt.Errorf("collective: crs: %w", err)
	}
	return crs, nil
}

func ckgCRP(p homomorphic.Params, proto mhe.PublicKeyGenProtocol, crs []byte) (mhe.PublicKeyGenCRP, error) {
	return crpFrom(p, proto, ckgDomain, crs)
}

// The domains a CRS is expanded under: the CKG's polynomial a, and the
// second polynomial a' of the Shamir images (secondPoly).
const (
	ckgDomain       = "fedstat/ckg/v1/"
	secondCRSDomain = "fedstat/shamir-second-crs/v1/"
)

// crpFrom expands crs under domain into a uniform polynomial.
func crpFrom(p homomorphic.Params, proto mhe.PublicKeyGenProtocol, domain string, crs []byte) (mhe.PublicKeyGenCRP, error) {
	if len(crs) != CRSSize {
		return mhe.PublicKeyGenCRP{}, fmt.Errorf("%w: crs of %d bytes, want %d", ErrInvalidArgument, len(crs), CRSSize)
	}
	// Domain-separate the seed by protocol and parameter set.
	key := sha256.Sum256(append([]byte(domain+p.Name()+"\x00"), crs...))
	prng, err := sampling.NewKeyedPRNG(key[:])
	if err != nil {
		return mhe.PublicKeyGenCRP{}, fmt.Errorf("collective: crs prng: %w", err)
	}
	return proto.SampleCRP(prng), nil
}

func checkParams(p homomorphic.Params) error {
	if p.Name() == "" {
		return fmt.Errorf("%w: zero Params", ErrInvalidArgument)
	}
	return nil
}

func checkSK(p homomorphic.Params, sk *homomorphic.SecretKeyShare) error {
	if sk == nil || sk.RLWE(tok) == nil {
		return fmt.Errorf("%w: nil secret key share", ErrInvalidArgument)
	}
	if !sk.Params().Equal(p) {
		return fmt.Errorf("%w: secret key share of another parameter set", ErrMismatch)
	}
	return nil
}

// CKGShare returns this node's share of the collective public key for the
// epoch identified by crs: crp*s_i + e_i.
func CKGShare(p homomorphic.Params, sk *homomorphic.SecretKeyShare, crs []byte) ([]byte, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	if err := checkSK(p, sk); err != nil {
		return nil, err
	}
	proto := mhe.NewPublicKeyGenProtocol(p.BGV(tok))
	crp, err := ckgCRP(p, proto, crs)
	if err != nil {
		return nil, err
	}
	share := proto.AllocateShare()
	proto.GenShare(sk.RLWE(tok), crp, &share)
	return encode(p, polycodec.KindCKGShare, 0, 0, share.Value.Q)
}

// CKGAggregate combines the CKG shares of all members into the collective
// public key. Every member's share is needed: the key's secret is the sum of
// exactly the contributing shares.
func CKGAggregate(p homomorphic.Params, crs []byte, shares [][]byte) (*homomorphic.PublicKey, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	if len(shares) == 0 {
		return nil, fmt.Errorf("%w: no CKG shares", ErrInvalidArgument)
	}
	proto := mhe.NewPublicKeyGenProtocol(p.BGV(tok))
	crp, err := ckgCRP(p, proto, crs)
	if err != nil {
		return nil, err
	}
	agg := proto.AllocateShare()
	tmp := proto.AllocateShare()
	for i, b := range shares {
		if _, err := decode(p, polycodec.KindCKGShare, p.BGV(tok).MaxLevel(), b, tmp.Value.Q); err != nil {
			return nil, fmt.Errorf("CKG share %d: %w", i, err)
		}
		proto.AggregateShares(agg, tmp, &agg)
	}
	pk := rlwe.NewPublicKey(p.BGV(tok))
	proto.GenPublicKey(agg, crp, pk)
	return homomorphic.WrapPublicKey(tok, p, pk), nil
}

func newPCKS(p homomorphic.Params) (mhe.PublicKeySwitchProtocol, error) {
	// The protocol's own sampler adds the ordinary error distribution
	// (sigma 3.2); the wide smudging noise is added by crypto/internal/smudge,
	// because Lattigo's sampler mis-reduces samples larger than a prime.
	pcks, err := mhe.NewPublicKeySwitchProtocol(p.BGV(tok), p.BGV(tok).Xe())
	if err != nil {
		return pcks, fmt.Errorf("collective: pcks: %w", err)
	}
	return pcks, nil
}

// KeySwitchShare returns this node's public-key-switch share for ct towards
// target: s_i*ct[1] + u_i*target[0] + e_0 + smudging, u_i*target[1] + e_1, with
// smudging noise from the exact discrete Gaussian of sigma p.SmudgingSigma()
// (2^60.5) truncated at p.SmudgingBound() (10 sigma). The caller must
// check, before calling, that ct is an aggregate it agreed to release: the
// share lets target's owner decrypt ct once shares of all key holders (or of
// T threshold holders) are combined.
func KeySwitchShare(p homomorphic.Params, sk *homomorphic.SecretKeyShare, target *homomorphic.PublicKey, ct *homomorphic.Ciphertext) ([]byte, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	if err := checkSK(p, sk); err != nil {
		return nil, err
	}
	if target == nil || target.RLWE(tok) == nil || !target.Params().Equal(p) {
		return nil, fmt.Errorf("%w: target key missing or of another parameter set", ErrMismatch)
	}
	c, err := checkCT(p, ct)
	if err != nil {
		return nil, err
	}
	pcks, err := newPCKS(p)
	if err != nil {
		return nil, err
	}
	if !c.IsNTT {
		return nil, fmt.Errorf("%w: ciphertext not in NTT domain", ErrMismatch)
	}
	level := c.Level()
	share := pcks.AllocateShare(level)
	pcks.GenShare(sk.RLWE(tok), target.RLWE(tok), c, &share)
	if err := smudge.AddNTT(p.BGV(tok).RingQ(), level, p.Smudging(tok), share.Value[0]); err != nil {
		return nil, fmt.Errorf("collective: %w", err)
	}
	return encodeAt(p, polycodec.KindKeySwitchShare, level, 0, 0, share.Value[0], share.Value[1])
}

// KeySwitchCombine adds the key-switch shares of all key holders (or of the
// T members of the active set, see ThresholdShare.Additive) and applies them
// to ct. The result is encrypted under the shares' target key and can be
// decrypted with homomorphic.Decrypt and the matching ResultKey.
func KeySwitchCombine(p homomorphic.Params, ct *homomorphic.Ciphertext, shares [][]byte) (*homomorphic.Ciphertext, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	c, err := checkCT(p, ct)
	if err != nil {
		return nil, err
	}
	if len(shares) == 0 {
		return nil, fmt.Errorf("%w: no key-switch shares", ErrInvalidArgument)
	}
	pcks, err := newPCKS(p)
	if err != nil {
		return nil, err
	}
	level := c.Level()
	agg := pcks.AllocateShare(level)
	tmp := pcks.AllocateShare(level)
	for i, b := range shares {
		if _, err := decode(p, polycodec.KindKeySwitchShare, level, b, tmp.Value[0], tmp.Value[1]); err != nil {
			return nil, fmt.Errorf("key-switch share %d: %w", i, err)
		}
		if err := pcks.AggregateShares(agg, tmp, &agg); err != nil {
			return nil, fmt.Errorf("collective: aggregate: %w", err)
		}
	}
	out := rlwe.NewCiphertext(p.BGV(tok), 1, level)
	pcks.KeySwitch(c, agg, out)
	return homomorphic.WrapCiphertext(tok, p, out), nil
}

// KeySwitchCombineAll is KeySwitchCombine over a vector: it applies the
// decryptors' shares (shares[decryptor][ciphertext]) to every ciphertext of
// sum and returns the switched vector.
func KeySwitchCombineAll(p homomorphic.Params, sum []*homomorphic.Ciphertext, shares [][][]byte) ([]*homomorphic.Ciphertext, error) {
	out := make([]*homomorphic.Ciphertext, len(sum))
	per := make([][]byte, len(shares))
	for j, ct := range sum {
		for i, s := range shares {
			if j >= len(s) {
				return nil, fmt.Errorf("%w: key-switch share %d has %d ciphertexts' shares, the sum has %d", ErrMismatch, i, len(s), len(sum))
			}
			per[i] = s[j]
		}
		var err error
		if out[j], err = KeySwitchCombine(p, ct, per); err != nil {
			return nil, fmt.Errorf("ciphertext %d: %w", j, err)
		}
	}
	return out, nil
}

func checkCT(p homomorphic.Params, ct *homomorphic.Ciphertext) (*rlwe.Ciphertext, error) {
	if ct == nil || ct.RLWE(tok) == nil {
		return nil, fmt.Errorf("%w: nil ciphertext", ErrInvalidArgument)
	}
	if !ct.Params().Equal(p) {
		return nil, fmt.Errorf("%w: ciphertext of another parameter set", ErrMismatch)
	}
	c := ct.RLWE(tok)
	if c.Degree() != 1 || c.Level() != p.BGV(tok).MaxLevel() {
		return nil, fmt.Errorf("%w: ciphertext degree %d level %d", ErrMismatch, c.Degree(), c.Level())
	}
	return c, nil
}

// KeySwitchShareSize returns the size in bytes of one key-switch share.
func KeySwitchShareSize(p homomorphic.Params) int {
	return polycodec.Size(p.BGV(tok).N(), 2, p.BGV(tok).MaxLevel())
}

// CKGShareSize returns the size in bytes of one CKG share.
func CKGShareSize(p homomorphic.Params) int {
	return polycodec.Size(p.BGV(tok).N(), 1, p.BGV(tok).MaxLevel())
}

func encode(p homomorphic.Params, kind polycodec.Kind, aux0, aux1 uint64, polys ...ring.Poly) ([]byte, error) {
	return encodeAt(p, kind, p.BGV(tok).MaxLevel(), aux0, aux1, polys...)
}

func encodeAt(p homomorphic.Params, kind polycodec.Kind, level int, aux0, aux1 uint64, polys ...ring.Poly) ([]byte, error) {
	b, err := polycodec.Encode(p.BGV(tok).RingQ(), polycodec.Header{
		Kind: kind, NumPolys: len(polys), Level: level, ParamsID: p.ID(), Aux0: aux0, Aux1: aux1,
	}, polys...)
	if err != nil {
		return nil, fmt.Errorf("collective: %w", err)
	}
	return b, nil
}

func decode(p homomorphic.Params, kind polycodec.Kind, level int, b []byte, polys ...ring.Poly) (polycodec.Header, error) {
	h, err := polycodec.Decode(p.BGV(tok).RingQ(), polycodec.Want{
		Kind: kind, NumPolys: len(polys), Level: level, ParamsID: p.ID(),
	}, b, polys)
	if err != nil {
		return h, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return h, nil
}
