package protocol_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/fedstat/fedstat/internal/protocol"
)

// TestDealingEvidence: the evidence a recipient reveals about a share
// sealed to its dealing key opens that share for anyone holding the key's
// public half, and convicts the right party. A share that does not open
// (garbage after a good encapsulation, or sealed to another key) is
// ErrShareUnopenable with true evidence. False evidence is
// ErrEvidenceRefused: a point off (another share's, or the recipient's
// point of another key), a proof changed in its challenge or its answer,
// evidence bound to another share's info, evidence checked against
// another member's dealing key, a truncated proof. And the evidence opens
// nothing else: the point of one share does not open another share sealed
// to the same key.
func TestDealingEvidence(t *testing.T) {
	dk := dealingKey(t)
	other := dealingKey(t)
	info := protocol.ThresholdShareInfo(4, "node-3", "node-1")
	seal := func(to *ecdh.PublicKey, info []byte, pt string) []byte {
		t.Helper()
		ct, err := protocol.SealShare(to, info, []byte(pt))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	sealed := seal(dk.PublicKey(), info, "the share node-3 dealt node-1")
	if pt, err := protocol.OpenShare(dk, info, sealed); err != nil || string(pt) != "the share node-3 dealt node-1" {
		t.Fatalf("the recipient opens %q, %v", pt, err)
	}
	evidence := func(sealed, info []byte) (point, proof []byte) {
		t.Helper()
		point, proof, err := protocol.DealingEvidence(dk, sealed, info)
		if err != nil {
			t.Fatal(err)
		}
		return point, proof
	}
	point, proof := evidence(sealed, info)
	pt, err := protocol.OpenWithEvidence(dk.PublicKey(), point, proof, info, sealed)
	if err != nil || string(pt) != "the share node-3 dealt node-1" {
		t.Fatalf("the evidence opened %q, %v", pt, err)
	}

	// Shares that do not open: the dealer's fault, on true evidence.
	garbled := bytes.Clone(sealed)
	garbled[len(garbled)-1] ^= 1
	toOther := seal(other.PublicKey(), info, "sealed to another key")
	for name, s := range map[string][]byte{"a garbled ciphertext": garbled, "a share sealed to another key": toOther} {
		if _, err := protocol.OpenShare(dk, info, s); err == nil {
			t.Fatalf("%s opens for the recipient", name)
		}
		p, pr := evidence(s, info)
		if _, err := protocol.OpenWithEvidence(dk.PublicKey(), p, pr, info, s); !errors.Is(err, protocol.ErrShareUnopenable) {
			t.Errorf("%s, true evidence: %v, want ErrShareUnopenable", name, err)
		}
	}

	// False evidence: the recipient's fault.
	second := seal(dk.PublicKey(), info, "another share")
	point2, proof2 := evidence(second, info)
	otherPoint, otherProof, err := protocol.DealingEvidence(other, sealed, info)
	if err != nil {
		t.Fatal(err)
	}
	offChallenge, offAnswer := bytes.Clone(proof), bytes.Clone(proof)
	offChallenge[31] ^= 1
	offAnswer[63] ^= 1
	for name, c := range map[string]struct {
		key                   *ecdh.PublicKey
		point, proof, info, s []byte
	}{
		"another share's point":          {dk.PublicKey(), point2, proof, info, sealed},
		"another share's evidence":       {dk.PublicKey(), point2, proof2, info, sealed},
		"another key's point and proof":  {dk.PublicKey(), otherPoint, otherProof, info, sealed},
		"a challenge off by one bit":     {dk.PublicKey(), point, offChallenge, info, sealed},
		"an answer off by one bit":       {dk.PublicKey(), point, offAnswer, info, sealed},
		"evidence for another info":      {dk.PublicKey(), point, proof, protocol.ThresholdShareInfo(5, "node-3", "node-1"), sealed},
		"checked against another member": {other.PublicKey(), point, proof, info, sealed},
		"a truncated proof":              {dk.PublicKey(), point, proof[:40], info, sealed},
		"no point":                       {dk.PublicKey(), nil, proof, info, sealed},
	} {
		if _, err := protocol.OpenWithEvidence(c.key, c.point, c.proof, c.info, c.s); !errors.Is(err, protocol.ErrEvidenceRefused) {
			t.Errorf("%s: %v, want ErrEvidenceRefused", name, err)
		}
	}
	// The point of one share opens no other share sealed to the key.
	if _, err := protocol.OpenWithEvidence(dk.PublicKey(), point, proof, info, second); err == nil {
		t.Error("one share's evidence opened another share")
	}
}

func dealingKey(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzOpenWithEvidence: evidence and a sealed share of any bytes never
// panic, and open only as the recipient's true evidence opens the share
// the dealer made (anything else is refused).
func FuzzOpenWithEvidence(f *testing.F) {
	dk := dealingKey(f)
	info := protocol.ThresholdShareInfo(1, "node-2", "node-1")
	sealed, err := protocol.SealShare(dk.PublicKey(), info, []byte("share"))
	if err != nil {
		f.Fatal(err)
	}
	point, proof, err := protocol.DealingEvidence(dk, sealed, info)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(point, proof, sealed)
	f.Add(point[:31], proof, sealed)
	f.Add(point, proof[:63], sealed)
	f.Add(point, proof, sealed[:65])
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, p, pr, s []byte) {
		pt, err := protocol.OpenWithEvidence(dk.PublicKey(), p, pr, info, s)
		if err != nil {
			return
		}
		if string(pt) != "share" || !bytes.Equal(s, sealed) {
			t.Fatalf("opened %q from a share other than the dealer's", pt)
		}
	})
}

// BenchmarkDealingEvidence: making a complaint's evidence, and checking it
// with the share's opening (the coordinator's side).
func BenchmarkDealingEvidence(b *testing.B) {
	dk := dealingKey(b)
	info := protocol.ThresholdShareInfo(1, "node-2", "node-1")
	sealed, err := protocol.SealShare(dk.PublicKey(), info, make([]byte, 131072))
	if err != nil {
		b.Fatal(err)
	}
	point, proof, err := protocol.DealingEvidence(dk, sealed, info)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("make", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := protocol.DealingEvidence(dk, sealed, info); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check-and-open", func(b *testing.B) {
		for b.Loop() {
			if _, err := protocol.OpenWithEvidence(dk.PublicKey(), point, proof, info, sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
}
