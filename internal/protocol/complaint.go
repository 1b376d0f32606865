package protocol

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"fmt"

	"github.com/fedstat/fedstat/crypto/dleq"
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

// LinkShareInfo is the HPKE info a linkage-key share of epoch dealt by
// from to to is sealed with; it also binds the evidence of a complaint
// about it.
func LinkShareInfo(epoch uint64, from, to string) []byte {
	return fmt.Appendf(nil, "fedstat linkage share epoch=%d from=%s to=%s", epoch, from, to)
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

// DealingEvidence returns the evidence a recipient reveals about sealed, a
// share sealed to its dealing key dk: the point Z = dk*enc of the
// share's encapsulation (uncompressed) and a proof that Z and dk's public
// key have the same discrete logarithm to enc and the generator
// (crypto/dleq), bound to context (ThresholdShareInfo of the share).
func DealingEvidence(dk *ecdh.PrivateKey, sealed, context []byte) (point, proof []byte, err error) {
	if len(sealed) < encLen {
		return nil, nil, errors.New("protocol: sealed share shorter than its encapsulation")
	}
	return dleq.Prove(dk, sealed[:encLen], context)
}

// ErrEvidenceRefused: a complaint's proof does not show that its point is
// the recipient's dealing key times the share's encapsulation (the
// recipient's evidence is false).
var ErrEvidenceRefused = errors.New("protocol: the complaint's proof does not verify for the recipient's dealing key")

// ErrShareUnopenable: with the point a complaint proves, the sealed share
// does not open (its dealer sealed something no key of the recipient
// opens).
var ErrShareUnopenable = errors.New("protocol: the sealed share does not open for its recipient")

// OpenWithEvidence opens sealed, a share sealed with info to the holder of
// the dealing key pub, with the evidence its recipient revealed
// (DealingEvidence, bound to info): ErrEvidenceRefused when the proof does
// not verify, ErrShareUnopenable when it does and the share does not
// open, and the share otherwise.
func OpenWithEvidence(pub *ecdh.PublicKey, point, proof, info, sealed []byte) ([]byte, error) {
	if len(sealed) < encLen {
		return nil, fmt.Errorf("%w: shorter than its encapsulation", ErrShareUnopenable)
	}
	dh, err := dleq.Verify(pub, sealed[:encLen], point, proof, info)
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
