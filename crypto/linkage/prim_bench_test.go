package linkage

import (
	"testing"

	"github.com/gtank/ristretto255"
)

// The group operations that Stage and friends are made of, so that their
// per-element figures can be read against these on the same machine.

func BenchmarkPrimitiveScalarMult(b *testing.B) {
	s := newRandReader().scalar()
	p := ristretto255.NewGeneratorElement()
	for b.Loop() {
		p.ScalarMult(s, p)
	}
}

func BenchmarkPrimitiveScalarBaseMult(b *testing.B) {
	s := newRandReader().scalar()
	p := ristretto255.NewIdentityElement()
	for b.Loop() {
		p.ScalarBaseMult(s)
	}
}

// Stage computes k·C2 − kw·C1 as one two-point constant-time
// multiplication; this is its cost (compare with two ScalarMults).
func BenchmarkPrimitiveMultiScalarMult2(b *testing.B) {
	rr := newRandReader()
	s := []*ristretto255.Scalar{rr.scalar(), rr.scalar()}
	p := []*ristretto255.Element{ristretto255.NewGeneratorElement(), randomElement()}
	e := ristretto255.NewIdentityElement()
	for b.Loop() {
		e.MultiScalarMult(s, p)
	}
}

func BenchmarkPrimitiveEncode(b *testing.B) {
	p := randomElement()
	var buf [32]byte
	for b.Loop() {
		p.Encode(buf[:0])
	}
}

func BenchmarkPrimitiveDecode(b *testing.B) {
	p := RandomPoint()
	for b.Loop() {
		if _, err := p.decode(); err != nil {
			b.Fatal(err)
		}
	}
}

func randomElement() *ristretto255.Element {
	p := RandomPoint()
	e, _ := p.decode()
	return e
}
