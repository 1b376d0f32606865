package protocol

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hpke"
	"crypto/x509"
	"errors"
	"fmt"
)

// Complaints about a dealing (docs/crypto.md, "Checked dealing",
// Complaints). A threshold share travels sealed to its recipient (HPKE,
// RFC 9180: DHKEM(P-256), HKDF-SHA256, AES-256-GCM) inside its dealer's
// signed message. A recipient whose share opens but fails its check
// against the dealer's images reveals the Diffie-Hellman secret of that
// message's encapsulation, dh = sk_recipient * enc: with it, whoever holds
// the dealer's signed message opens that share (OpenRevealed) and checks
// it, so the complaint is evidence, not the recipient's word. AES-GCM's
// tag stands in for a proof that dh is the right secret: the dealer fixed
// the ciphertext and its tag under the key the right dh gives, and a
// recipient that reveals another dh finds no key that opens them (one
// chance in 2^128 per guess).
//
// The secret is revealed only for a share that opened: the dealer then
// knew dh for this enc (it made the ciphertext under it), so dh opens
// nothing the dealer could not open already, and nothing of another
// dealer's. A share that does not open is refused without evidence: its
// enc might be another dealer's (copied to have the recipient reveal the
// secret that opens that dealer's share), and revealing dh would open it.

// encLen is the length of a DHKEM(P-256) encapsulation (an uncompressed
// point) at the start of HPKE's sealed output.
const encLen = 65

// ThresholdShareInfo is the HPKE info a threshold share of epoch dealt by
// from to to is sealed with.
func ThresholdShareInfo(epoch uint64, from, to string) []byte {
	return fmt.Appendf(nil, "fedstat threshold share epoch=%d from=%s to=%s", epoch, from, to)
}

// DealingSecret returns the Diffie-Hellman secret of the encapsulation of
// sealed (a share sealed to the holder of key): what its recipient reveals
// to complain about a share that opened and failed its check.
func DealingSecret(key *ecdsa.PrivateKey, sealed []byte) ([]byte, error) {
	if len(sealed) < encLen {
		return nil, errors.New("protocol: sealed share shorter than its encapsulation")
	}
	enc, err := ecdh.P256().NewPublicKey(sealed[:encLen])
	if err != nil {
		return nil, fmt.Errorf("protocol: the share's encapsulation: %w", err)
	}
	k, err := key.ECDH()
	if err != nil {
		return nil, err
	}
	return k.ECDH(enc)
}

// ErrSecretRefused: a revealed Diffie-Hellman secret does not open the
// sealed share it was revealed for.
var ErrSecretRefused = errors.New("protocol: the revealed secret does not open the sealed share")

// OpenRevealed opens sealed, a share sealed to the holder of recipient with
// info, with the Diffie-Hellman secret dh its recipient revealed
// (DealingSecret). It is ErrSecretRefused when dh is not that secret.
func OpenRevealed(recipient *x509.Certificate, dh, info, sealed []byte) ([]byte, error) {
	pub, ok := recipient.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("protocol: the recipient's certificate key is not ECDSA")
	}
	epub, err := pub.ECDH()
	if err != nil {
		return nil, err
	}
	if len(sealed) < encLen {
		return nil, fmt.Errorf("%w: sealed share shorter than its encapsulation", ErrSecretRefused)
	}
	sk, err := hpke.NewDHKEMPrivateKey(revealedKey{pub: epub, enc: sealed[:encLen], dh: dh})
	if err != nil {
		return nil, err
	}
	pt, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSecretRefused, err)
	}
	return pt, nil
}

// revealedKey is the recipient's key as far as one encapsulation goes: its
// public key, and the secret it revealed for enc.
type revealedKey struct {
	pub     *ecdh.PublicKey
	enc, dh []byte
}

func (k revealedKey) PublicKey() *ecdh.PublicKey { return k.pub }
func (k revealedKey) Curve() ecdh.Curve          { return ecdh.P256() }
func (k revealedKey) ECDH(peer *ecdh.PublicKey) ([]byte, error) {
	if !bytes.Equal(peer.Bytes(), k.enc) {
		return nil, errors.New("protocol: the secret was revealed for another encapsulation")
	}
	return bytes.Clone(k.dh), nil
}
