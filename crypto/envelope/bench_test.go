package envelope

import (
	"testing"
	"time"
)

// BenchmarkSealOpen signs and verifies an envelope carrying one ciphertext
// (262,176 bytes at the production parameter set).
func BenchmarkSealOpen(b *testing.B) {
	payload := make([]byte, 262176)
	for name, s := range signers(b) {
		b.Run(name+"/seal", func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := Seal(s, bind, payload, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/open", func(b *testing.B) {
			e, _ := Seal(s, bind, payload, t0)
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := Open(s.Public(), e, bind, t0, time.Minute, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
