package homomorphic

import (
	"fmt"
	"math"
	"math/big"

	"github.com/tuneinsight/lattigo/v5/schemes/bgv"

	"github.com/fedstat/fedstat/crypto/internal/lowlevel"
)

// NoiseLog2 returns log2 of the largest absolute noise coefficient of ct
// under k, given the plaintext values ct encrypts (zero-padded to Slots()).
// Decryption is exact while the result stays below NoiseBudgetBits(). It is a
// measurement tool for tests and benchmarks under crypto/.
func NoiseLog2(_ lowlevel.Token, p Params, k *ResultKey, ct *Ciphertext, values []int64) (float64, error) {
	if err := ct.validFor(p); err != nil {
		return 0, err
	}
	if len(values) > p.s.slots {
		return 0, fmt.Errorf("%w: %d values for %d slots", ErrInvalidArgument, len(values), p.s.slots)
	}
	level := ct.ct.Level()
	rQ := p.ringQ().AtLevel(level)
	dec := bgv.NewDecryptor(p.s.bgv, k.sk)
	phase := bgv.NewPlaintext(p.s.bgv, level)
	dec.Decrypt(ct.ct, phase) // NTT domain: m*t^-1 + e

	t := p.PlaintextModulus()
	buf := make([]uint64, p.s.slots)
	for i, v := range values {
		if v < 0 {
			buf[i] = t - uint64(-v)
		} else {
			buf[i] = uint64(v)
		}
	}
	ecd := p.encoder()
	defer p.putEncoder(ecd)
	want := bgv.NewPlaintext(p.s.bgv, level)
	if err := ecd.Encode(buf, want); err != nil { // NTT domain: m*t^-1
		return 0, err
	}
	rQ.Sub(phase.Value, want.Value, phase.Value)
	rQ.INTT(phase.Value, phase.Value)
	coeffs := make([]*big.Int, rQ.N())
	for i := range coeffs {
		coeffs[i] = new(big.Int)
	}
	rQ.PolyToBigintCentered(phase.Value, 1, coeffs)
	maxAbs := new(big.Int)
	for _, c := range coeffs {
		if c.CmpAbs(maxAbs) > 0 {
			maxAbs.Abs(c)
		}
	}
	if maxAbs.Sign() == 0 {
		return 0, nil
	}
	f, _ := new(big.Float).SetInt(maxAbs).Float64()
	return math.Log2(f), nil
}
