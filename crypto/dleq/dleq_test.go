package dleq_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/fedstat/fedstat/crypto/dleq"
)

func key(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestProveVerify: a proof verifies for its key, base point, point and
// context, and Verify returns the Diffie-Hellman secret crypto/ecdh
// computes for the key and the base point. Anything else is ErrProof: the
// point of another key or another base, another context, another key's
// public half, a challenge or an answer one bit off, a proof or point
// truncated, an answer at the group order.
func TestProveVerify(t *testing.T) {
	k, other := key(t), key(t)
	e := key(t).PublicKey() // the base: an encapsulation's ephemeral key
	ctx := []byte("fedstat threshold share epoch=4 from=node-3 to=node-1")
	z, proof, err := dleq.Prove(k, e.Bytes(), ctx)
	if err != nil {
		t.Fatal(err)
	}
	dh, err := dleq.Verify(k.PublicKey(), e.Bytes(), z, proof, ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := k.ECDH(e)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dh, want) {
		t.Fatalf("Verify returned %x, ecdh computes %x", dh, want)
	}
	otherZ, otherProof, err := dleq.Prove(other, e.Bytes(), ctx)
	if err != nil {
		t.Fatal(err)
	}
	e2 := key(t).PublicKey()
	z2, _, err := dleq.Prove(k, e2.Bytes(), ctx)
	if err != nil {
		t.Fatal(err)
	}
	offC, offS, atOrder := bytes.Clone(proof), bytes.Clone(proof), bytes.Clone(proof)
	offC[31] ^= 1
	offS[63] ^= 1
	copy(atOrder[32:], []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51})
	for name, c := range map[string]struct {
		pub              *ecdh.PublicKey
		e, z, proof, ctx []byte
	}{
		"another key's point":       {k.PublicKey(), e.Bytes(), otherZ, proof, ctx},
		"another key's proof":       {k.PublicKey(), e.Bytes(), otherZ, otherProof, ctx},
		"the point of another base": {k.PublicKey(), e.Bytes(), z2, proof, ctx},
		"another base":              {k.PublicKey(), e2.Bytes(), z, proof, ctx},
		"another context":           {k.PublicKey(), e.Bytes(), z, proof, []byte("another share")},
		"another public key":        {other.PublicKey(), e.Bytes(), z, proof, ctx},
		"a challenge one bit off":   {k.PublicKey(), e.Bytes(), z, offC, ctx},
		"an answer one bit off":     {k.PublicKey(), e.Bytes(), z, offS, ctx},
		"an answer at the order":    {k.PublicKey(), e.Bytes(), z, atOrder, ctx},
		"a truncated proof":         {k.PublicKey(), e.Bytes(), z, proof[:63], ctx},
		"a truncated point":         {k.PublicKey(), e.Bytes(), z[:64], proof, ctx},
		"no base":                   {k.PublicKey(), nil, z, proof, ctx},
	} {
		if _, err := dleq.Verify(c.pub, c.e, c.z, c.proof, c.ctx); !errors.Is(err, dleq.ErrProof) {
			t.Errorf("%s: %v, want ErrProof", name, err)
		}
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dleq.Prove(x, e.Bytes(), ctx); err == nil {
		t.Error("a proof with an X25519 key")
	}
}

// FuzzVerify: a base, point and proof of any bytes never panic, and
// verify only as the true ones do.
func FuzzVerify(f *testing.F) {
	k := key(f)
	e := key(f).PublicKey().Bytes()
	ctx := []byte("ctx")
	z, proof, err := dleq.Prove(k, e, ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(e, z, proof)
	f.Add(e[:64], z, proof)
	f.Add(e, z, proof[:32])
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, fe, fz, fp []byte) {
		if _, err := dleq.Verify(k.PublicKey(), fe, fz, fp, ctx); err == nil && (!bytes.Equal(fe, e) || !bytes.Equal(fz, z)) {
			t.Fatalf("verified a point other than the key's for its base")
		}
	})
}
