package homomorphic

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"

	"github.com/fedstat/fedstat/crypto/internal/lowlevel"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
)

// Redacted is what secret-bearing types print in place of their contents.
const Redacted = "[redacted]"

// SecretKeyShare is one node's additive share of the collective secret key
// for one key epoch. It never leaves the node (except sealed, via
// MarshalBinary, into the node's own storage). It redacts itself in fmt
// (all verbs) and slog output.
type SecretKeyShare struct {
	p  Params
	sk *rlwe.SecretKey
}

// GenSecretKeyShare samples a fresh ternary secret key share.
func GenSecretKeyShare(p Params) (*SecretKeyShare, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	return &SecretKeyShare{p: p, sk: rlwe.NewKeyGenerator(p.s.bgv).GenSecretKeyNew()}, nil
}

// MarshalBinary encodes the share. The bytes are secret: store them only
// sealed (encrypted at rest, mode 0600).
func (s *SecretKeyShare) MarshalBinary() ([]byte, error) {
	if s == nil || s.sk == nil {
		return nil, fmt.Errorf("%w: nil secret key share", ErrInvalidArgument)
	}
	return encodePolys(s.p, polycodec.KindSecretKey, 0, 0, s.sk.Value.Q)
}

// UnmarshalSecretKeyShare decodes a share written by MarshalBinary.
func UnmarshalSecretKeyShare(p Params, b []byte) (*SecretKeyShare, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	sk := rlwe.NewSecretKey(p.s.bgv)
	if _, err := decodePolys(p, polycodec.KindSecretKey, p.s.bgv.MaxLevel(), b, sk.Value.Q); err != nil {
		return nil, err
	}
	return &SecretKeyShare{p: p, sk: sk}, nil
}

// Params returns the parameter set of the share.
func (s *SecretKeyShare) Params() Params { return s.p }

// RLWE returns the Lattigo secret key. Only for packages under crypto/.
func (s *SecretKeyShare) RLWE(lowlevel.Token) *rlwe.SecretKey { return s.sk }

// WrapSecretKeyShare wraps a Lattigo secret key. Only for packages under crypto/.
func WrapSecretKeyShare(_ lowlevel.Token, p Params, sk *rlwe.SecretKey) *SecretKeyShare {
	return &SecretKeyShare{p: p, sk: sk}
}

// String implements fmt.Stringer without revealing the key.
func (SecretKeyShare) String() string { return Redacted }

// GoString implements fmt.GoStringer without revealing the key.
func (SecretKeyShare) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb redacts.
func (SecretKeyShare) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// LogValue implements slog.LogValuer.
func (SecretKeyShare) LogValue() slog.Value { return slog.StringValue(Redacted) }

// PublicKey is a public encryption key: the collective key of an epoch or the
// public half of a ResultKey.
type PublicKey struct {
	p  Params
	pk *rlwe.PublicKey
}

// MarshalBinary encodes the key.
func (k *PublicKey) MarshalBinary() ([]byte, error) {
	if k == nil || k.pk == nil {
		return nil, fmt.Errorf("%w: nil public key", ErrInvalidArgument)
	}
	return encodePolys(k.p, polycodec.KindPublicKey, 0, 0, k.pk.Value[0].Q, k.pk.Value[1].Q)
}

// UnmarshalPublicKey decodes a key written by MarshalBinary.
func UnmarshalPublicKey(p Params, b []byte) (*PublicKey, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	pk := rlwe.NewPublicKey(p.s.bgv)
	if _, err := decodePolys(p, polycodec.KindPublicKey, p.s.bgv.MaxLevel(), b, pk.Value[0].Q, pk.Value[1].Q); err != nil {
		return nil, err
	}
	return &PublicKey{p: p, pk: pk}, nil
}

// Params returns the parameter set of the key.
func (k *PublicKey) Params() Params { return k.p }

// Equal reports whether two public keys are identical.
func (k *PublicKey) Equal(o *PublicKey) bool {
	return k != nil && o != nil && k.p.Equal(o.p) && k.pk.Equal(o.pk)
}

// RLWE returns the Lattigo public key. Only for packages under crypto/.
func (k *PublicKey) RLWE(lowlevel.Token) *rlwe.PublicKey { return k.pk }

// WrapPublicKey wraps a Lattigo public key. Only for packages under crypto/.
func WrapPublicKey(_ lowlevel.Token, p Params, pk *rlwe.PublicKey) *PublicKey {
	return &PublicKey{p: p, pk: pk}
}

// ResultKey is the key pair a released total is switched to (held by the
// coordinator or by an analyst). Its secret half redacts itself in fmt and
// slog output.
type ResultKey struct {
	p  Params
	sk *rlwe.SecretKey
	pk *PublicKey
}

// GenResultKey generates a fresh result key pair.
func GenResultKey(p Params) (*ResultKey, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	sk, pk := rlwe.NewKeyGenerator(p.s.bgv).GenKeyPairNew()
	return &ResultKey{p: p, sk: sk, pk: &PublicKey{p: p, pk: pk}}, nil
}

// Public returns the public half, to which key-switch shares are made.
func (k *ResultKey) Public() *PublicKey { return k.pk }

// MarshalBinary encodes the key pair. The bytes are secret.
func (k *ResultKey) MarshalBinary() ([]byte, error) {
	if k == nil || k.sk == nil || k.pk == nil {
		return nil, fmt.Errorf("%w: nil result key", ErrInvalidArgument)
	}
	return encodePolys(k.p, polycodec.KindResultKey, 0, 0, k.sk.Value.Q, k.pk.pk.Value[0].Q, k.pk.pk.Value[1].Q)
}

// UnmarshalResultKey decodes a key pair written by MarshalBinary.
func UnmarshalResultKey(p Params, b []byte) (*ResultKey, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	sk := rlwe.NewSecretKey(p.s.bgv)
	pk := rlwe.NewPublicKey(p.s.bgv)
	if _, err := decodePolys(p, polycodec.KindResultKey, p.s.bgv.MaxLevel(), b, sk.Value.Q, pk.Value[0].Q, pk.Value[1].Q); err != nil {
		return nil, err
	}
	return &ResultKey{p: p, sk: sk, pk: &PublicKey{p: p, pk: pk}}, nil
}

// String implements fmt.Stringer without revealing the key.
func (ResultKey) String() string { return Redacted }

// GoString implements fmt.GoStringer without revealing the key.
func (ResultKey) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb redacts.
func (ResultKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// LogValue implements slog.LogValuer.
func (ResultKey) LogValue() slog.Value { return slog.StringValue(Redacted) }

func polySize(p Params, n int) int {
	return polycodec.Size(p.s.bgv.N(), n, p.s.bgv.MaxLevel())
}

func encodePolys(p Params, kind polycodec.Kind, aux0, aux1 uint64, polys ...ring.Poly) ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	return polycodec.Encode(p.ringQ(), polycodec.Header{
		Kind: kind, NumPolys: len(polys), Level: p.s.bgv.MaxLevel(), ParamsID: p.s.id, Aux0: aux0, Aux1: aux1,
	}, polys...)
}

func decodePolys(p Params, kind polycodec.Kind, level int, b []byte, polys ...ring.Poly) (polycodec.Header, error) {
	h, err := polycodec.Decode(p.ringQ(), polycodec.Want{Kind: kind, NumPolys: len(polys), Level: level, ParamsID: p.s.id}, b, polys)
	if err != nil {
		return h, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return h, nil
}

// WrapResultKey wraps a Lattigo secret key (and optionally its public key)
// as a ResultKey. Only for packages under crypto/ (tests use it to decrypt
// under the collective key to measure noise).
func WrapResultKey(_ lowlevel.Token, p Params, sk *rlwe.SecretKey, pk *rlwe.PublicKey) *ResultKey {
	k := &ResultKey{p: p, sk: sk}
	if pk != nil {
		k.pk = &PublicKey{p: p, pk: pk}
	}
	return k
}

// CheckResultKey checks that k's secret half is the secret of its public
// half, as a verifier of a revealed result key must (a key pair made up
// after the fact would decrypt a switched sum to values of its maker's
// choosing): a random vector encrypted under the public half must decrypt
// under the secret half. A mismatched pair passes with negligible
// probability (the decryption is then close to uniform over the slots).
func CheckResultKey(p Params, k *ResultKey) error {
	if k == nil || k.sk == nil || k.pk == nil {
		return fmt.Errorf("%w: nil result key", ErrInvalidArgument)
	}
	want := make([]int64, min(p.s.slots, 64))
	var b [8]byte
	for i := range want {
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		want[i] = int64(binary.BigEndian.Uint64(b[:])%uint64(2*p.MaxAbs()+1)) - p.MaxAbs()
	}
	cts, err := Encrypt(p, k.pk, want)
	if err != nil {
		return err
	}
	got, err := Decrypt(p, k, cts, len(want))
	if err != nil {
		return err
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("%w: the secret half of the result key does not decrypt under its public half", ErrMismatch)
	}
	return nil
}
