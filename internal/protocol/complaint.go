package protocol

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"filippo.io/nistec"
)

// Complaints about a dealing (docs/crypto.md, "Checked dealing",
// Complaints). A threshold share travels sealed (HPKE, RFC 9180:
// DHKEM(P-256), HKDF-SHA256, AES-256-GCM) to its recipient's dealing key,
// a key the recipient made for that one key ceremony and signed
// (SealDealingKey), inside its dealer's signed message. A recipient whose
// share does not open, or opens and fails its check against the dealer's
// images, reveals the Diffie-Hellman point of that message's
// encapsulation, Z = dk*enc, with a proof that Z is dk*enc for the dk of
// its signed dealing key (equal discrete logarithms, Chaum-Pedersen,
// DealingEvidence). Whoever holds the dealer's signed message and the
// recipient's dealing key checks the proof and opens the share with Z's
// x-coordinate, the DHKEM secret (OpenWithEvidence): a share that does not
// open, or opens and fails, convicts the dealer; a proof that fails, or a
// share that opens and passes, convicts the recipient.
//
// Z opens every message sealed to that dealing key under that enc, and the
// key is one ceremony's: what a complaint can open is a share of that
// ceremony, which its recipient then never installs, and a recipient
// reveals at most one Z per ceremony (it deletes the key before its
// complaint leaves it).

// encLen is the length of a DHKEM(P-256) encapsulation (an uncompressed
// point) at the start of HPKE's sealed output.
const encLen = 65

// ThresholdShareInfo is the HPKE info a threshold share of epoch dealt by
// from to to is sealed with; it also binds the evidence of a complaint
// about it (DealingEvidence).
func ThresholdShareInfo(epoch uint64, from, to string) []byte {
	return fmt.Appendf(nil, "fedstat threshold share epoch=%d from=%s to=%s", epoch, from, to)
}

// SealShare seals pt to the holder of a dealing key with info.
func SealShare(to *ecdh.PublicKey, info, pt []byte) ([]byte, error) {
	pk, err := hpke.NewDHKEMPublicKey(to)
	if err != nil {
		return nil, err
	}
	return hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, pt)
}

// OpenShare opens a share sealed to dk with info.
func OpenShare(dk *ecdh.PrivateKey, info, sealed []byte) ([]byte, error) {
	sk, err := hpke.NewDHKEMPrivateKey(dk)
	if err != nil {
		return nil, err
	}
	return hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, sealed)
}

// p256Order is the order of P-256's group.
var p256Order, _ = new(big.Int).SetString("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)

// evidenceLen is the length of a proof: the challenge and the answer,
// 32 bytes each.
const evidenceLen = 64

func scalarBytes(x *big.Int) []byte { return x.FillBytes(make([]byte, 32)) }

// evidenceChallenge is the Fiat-Shamir challenge of a complaint's proof.
func evidenceChallenge(context, pub, enc, z, a1, a2 []byte) *big.Int {
	h := sha512.New()
	h.Write([]byte("fedstat/dealing-evidence/v1\x00"))
	for _, b := range [][]byte{context, pub, enc, z, a1, a2} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(h.Sum(nil)), p256Order)
}

// DealingEvidence returns the evidence a recipient reveals about sealed, a
// share sealed to its dealing key dk: the point Z = dk*enc of the
// share's encapsulation (uncompressed) and a proof that Z and dk's public
// key have the same discrete logarithm to enc and the generator, bound to
// context (ThresholdShareInfo of the share).
func DealingEvidence(dk *ecdh.PrivateKey, sealed, context []byte) (point, proof []byte, err error) {
	if len(sealed) < encLen {
		return nil, nil, errors.New("protocol: sealed share shorter than its encapsulation")
	}
	e, err := nistec.NewP256Point().SetBytes(sealed[:encLen])
	if err != nil {
		return nil, nil, fmt.Errorf("protocol: the share's encapsulation: %w", err)
	}
	x := dk.Bytes()
	z, err := nistec.NewP256Point().ScalarMult(e, x)
	if err != nil {
		return nil, nil, err
	}
	r, err := rand.Int(rand.Reader, p256Order)
	if err != nil {
		return nil, nil, err
	}
	a1, err := nistec.NewP256Point().ScalarBaseMult(scalarBytes(r))
	if err != nil {
		return nil, nil, err
	}
	a2, err := nistec.NewP256Point().ScalarMult(e, scalarBytes(r))
	if err != nil {
		return nil, nil, err
	}
	c := evidenceChallenge(context, dk.PublicKey().Bytes(), sealed[:encLen], z.Bytes(), a1.Bytes(), a2.Bytes())
	s := new(big.Int).Mul(c, new(big.Int).SetBytes(x))
	s.Add(s, r).Mod(s, p256Order)
	return z.Bytes(), append(scalarBytes(c), scalarBytes(s)...), nil
}

// ErrEvidenceRefused: a complaint's proof does not show that its point is
// the recipient's dealing key times the share's encapsulation (the
// recipient's evidence is false).
var ErrEvidenceRefused = errors.New("protocol: the complaint's proof does not verify for the recipient's dealing key")

// ErrShareUnopenable: with the point a complaint proves, the sealed share
// does not open (its dealer sealed something no key of the recipient
// opens).
var ErrShareUnopenable = errors.New("protocol: the sealed share does not open for its recipient")

// checkEvidence verifies a complaint's proof and returns the point Z.
func checkEvidence(pub *ecdh.PublicKey, enc, point, proof, context []byte) (*nistec.P256Point, error) {
	if len(proof) != evidenceLen {
		return nil, fmt.Errorf("%w: a proof of %d bytes", ErrEvidenceRefused, len(proof))
	}
	e, err := nistec.NewP256Point().SetBytes(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: the share's encapsulation: %v", ErrEvidenceRefused, err)
	}
	if len(point) != encLen {
		return nil, fmt.Errorf("%w: a point of %d bytes", ErrEvidenceRefused, len(point))
	}
	z, err := nistec.NewP256Point().SetBytes(point)
	if err != nil {
		return nil, fmt.Errorf("%w: the point: %v", ErrEvidenceRefused, err)
	}
	y, err := nistec.NewP256Point().SetBytes(pub.Bytes())
	if err != nil {
		return nil, err
	}
	c, s := new(big.Int).SetBytes(proof[:32]), new(big.Int).SetBytes(proof[32:])
	if c.Cmp(p256Order) >= 0 || s.Cmp(p256Order) >= 0 {
		return nil, fmt.Errorf("%w: a scalar out of range", ErrEvidenceRefused)
	}
	negC := scalarBytes(new(big.Int).Mod(new(big.Int).Neg(c), p256Order))
	// a1 = s*G - c*Y, a2 = s*E - c*Z
	sG, err := nistec.NewP256Point().ScalarBaseMult(scalarBytes(s))
	if err != nil {
		return nil, err
	}
	cY, err := nistec.NewP256Point().ScalarMult(y, negC)
	if err != nil {
		return nil, err
	}
	sE, err := nistec.NewP256Point().ScalarMult(e, scalarBytes(s))
	if err != nil {
		return nil, err
	}
	cZ, err := nistec.NewP256Point().ScalarMult(z, negC)
	if err != nil {
		return nil, err
	}
	a1 := nistec.NewP256Point().Add(sG, cY)
	a2 := nistec.NewP256Point().Add(sE, cZ)
	if evidenceChallenge(context, pub.Bytes(), enc, point, a1.Bytes(), a2.Bytes()).Cmp(c) != 0 {
		return nil, ErrEvidenceRefused
	}
	return z, nil
}

// OpenWithEvidence opens sealed, a share sealed with info to the holder of
// the dealing key pub, with the evidence its recipient revealed
// (DealingEvidence, bound to info): ErrEvidenceRefused when the proof does
// not verify, ErrShareUnopenable when it does and the share does not
// open, and the share otherwise.
func OpenWithEvidence(pub *ecdh.PublicKey, point, proof, info, sealed []byte) ([]byte, error) {
	if len(sealed) < encLen {
		return nil, fmt.Errorf("%w: shorter than its encapsulation", ErrShareUnopenable)
	}
	z, err := checkEvidence(pub, sealed[:encLen], point, proof, info)
	if err != nil {
		return nil, err
	}
	dh, err := z.BytesX()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEvidenceRefused, err)
	}
	sk, err := hpke.NewDHKEMPrivateKey(revealedKey{pub: pub, enc: sealed[:encLen], dh: dh})
	if err != nil {
		return nil, err
	}
	pt, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrShareUnopenable, err)
	}
	return pt, nil
}

// revealedKey is the recipient's dealing key as far as one encapsulation
// goes: its public key, and the secret its evidence proves for enc.
type revealedKey struct {
	pub     *ecdh.PublicKey
	enc, dh []byte
}

func (k revealedKey) PublicKey() *ecdh.PublicKey { return k.pub }
func (k revealedKey) Curve() ecdh.Curve          { return ecdh.P256() }
func (k revealedKey) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if !bytes.Equal(peer.Bytes(), k.enc) {
		return nil, errors.New("protocol: the evidence was given for another encapsulation")
	}
	return bytes.Clone(k.dh), nil
}
