// Package dleq proves, on P-256, that two points have the same discrete
// logarithm to two bases: that Z = x*E for the x of a public key Y = x*G,
// without revealing x (Chaum-Pedersen, made non-interactive with
// Fiat-Shamir over SHA-512).
//
// fedstat uses it for the evidence of a complaint about a dealt share
// (docs/crypto.md, "Checked dealing", Complaints): a member reveals
// Z = dk*enc, the Diffie-Hellman point of a sealed share's encapsulation
// under its dealing key, and proves that Z is that point, so that anyone
// holding the public key can open that one share with Z and nothing else.
//
// The caller must bind the proof to what it is about (context: the share's
// HPKE info); points travel uncompressed (65 bytes), as DHKEM(P-256) and
// crypto/ecdh write them. A proof is 64 bytes: the challenge and the
// answer, big-endian scalars below the group order.
//
// Soundness: a prover that convinces a verifier of a Z other than x*E
// must answer two challenges for the same commitments (which gives x) or
// guess the challenge, 2^-256 per attempt, SHA-512 taken as a random
// oracle. Zero knowledge: honest-verifier, in the random-oracle model
// (a transcript is simulated from the challenge and the answer).
package dleq

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"filippo.io/nistec"
)

// PointLen is the length of an uncompressed P-256 point.
const PointLen = 65

// ProofLen is the length of a proof.
const ProofLen = 64

// ErrProof: a proof does not verify (or a point or the proof is
// malformed).
var ErrProof = errors.New("dleq: the proof of equal discrete logarithms does not verify")

// order is the order of P-256's group.
var order, _ = new(big.Int).SetString("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)

func scalar(x *big.Int) []byte { return x.FillBytes(make([]byte, 32)) }

func challenge(context, y, e, z, a1, a2 []byte) *big.Int {
	h := sha512.New()
	h.Write([]byte("fedstat/dleq/p256/v1\x00"))
	for _, b := range [][]byte{context, y, e, z, a1, a2} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(h.Sum(nil)), order)
}

// Prove returns Z = x*E for the secret x of key, and a proof, bound to
// context, that Z and key's public point have the same discrete logarithm
// to E and the generator. e is E, uncompressed.
func Prove(key *ecdh.PrivateKey, e, context []byte) (z, proof []byte, err error) {
	if key.Curve() != ecdh.P256() {
		return nil, nil, errors.New("dleq: not a P-256 key")
	}
	ep, err := nistec.NewP256Point().SetBytes(e)
	if err != nil {
		return nil, nil, fmt.Errorf("dleq: the base point: %w", err)
	}
	x := key.Bytes()
	zp, err := nistec.NewP256Point().ScalarMult(ep, x)
	if err != nil {
		return nil, nil, err
	}
	r, err := rand.Int(rand.Reader, order)
	if err != nil {
		return nil, nil, err
	}
	a1, err := nistec.NewP256Point().ScalarBaseMult(scalar(r))
	if err != nil {
		return nil, nil, err
	}
	a2, err := nistec.NewP256Point().ScalarMult(ep, scalar(r))
	if err != nil {
		return nil, nil, err
	}
	c := challenge(context, key.PublicKey().Bytes(), e, zp.Bytes(), a1.Bytes(), a2.Bytes())
	s := new(big.Int).Mul(c, new(big.Int).SetBytes(x))
	s.Add(s, r).Mod(s, order)
	return zp.Bytes(), append(scalar(c), scalar(s)...), nil
}

// Verify checks a proof, bound to context, that z = x*e for the x of pub.
// It returns the x-coordinate of z (the Diffie-Hellman secret of e and
// pub's key, as crypto/ecdh returns it), or ErrProof.
func Verify(pub *ecdh.PublicKey, e, z, proof, context []byte) ([]byte, error) {
	if pub.Curve() != ecdh.P256() || len(proof) != ProofLen || len(z) != PointLen {
		return nil, ErrProof
	}
	ep, err := nistec.NewP256Point().SetBytes(e)
	if err != nil {
		return nil, fmt.Errorf("%w: the base point: %v", ErrProof, err)
	}
	zp, err := nistec.NewP256Point().SetBytes(z)
	if err != nil {
		return nil, fmt.Errorf("%w: the point: %v", ErrProof, err)
	}
	yp, err := nistec.NewP256Point().SetBytes(pub.Bytes())
	if err != nil {
		return nil, err
	}
	c, s := new(big.Int).SetBytes(proof[:32]), new(big.Int).SetBytes(proof[32:])
	if c.Cmp(order) >= 0 || s.Cmp(order) >= 0 {
		return nil, fmt.Errorf("%w: a scalar out of range", ErrProof)
	}
	negC := scalar(new(big.Int).Mod(new(big.Int).Neg(c), order))
	// a1 = s*G - c*Y, a2 = s*E - c*Z: the commitments the answer opens.
	sG, err := nistec.NewP256Point().ScalarBaseMult(scalar(s))
	if err != nil {
		return nil, err
	}
	cY, err := nistec.NewP256Point().ScalarMult(yp, negC)
	if err != nil {
		return nil, err
	}
	sE, err := nistec.NewP256Point().ScalarMult(ep, scalar(s))
	if err != nil {
		return nil, err
	}
	cZ, err := nistec.NewP256Point().ScalarMult(zp, negC)
	if err != nil {
		return nil, err
	}
	a1 := nistec.NewP256Point().Add(sG, cY)
	a2 := nistec.NewP256Point().Add(sE, cZ)
	if challenge(context, pub.Bytes(), e, z, a1.Bytes(), a2.Bytes()).Cmp(c) != 0 {
		return nil, ErrProof
	}
	x, err := zp.BytesX()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProof, err)
	}
	return x, nil
}
