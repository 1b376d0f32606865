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
	coeffs, err := noise(p, k, ct, values)
	if err != nil {
		return 0, err
	}
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

// NoiseL2Log2 returns log2 of the Euclidean norm of ct's noise polynomial
// under k (see NoiseLog2), the quantity the statistical-distance bound of
// the smudging uses. A measurement tool for tests under crypto/.
func NoiseL2Log2(_ lowlevel.Token, p Params, k *ResultKey, ct *Ciphertext, values []int64) (float64, error) {
	coeffs, err := noise(p, k, ct, values)
	if err != nil {
		return 0, err
	}
	sumSq := new(big.Int)
	sq := new(big.Int)
	for _, c := range coeffs {
		sumSq.Add(sumSq, sq.Mul(c, c))
	}
	if sumSq.Sign() == 0 {
		return 0, nil
	}
	f, _ := new(big.Float).SetInt(sumSq).Float64()
	return math.Log2(f) / 2, nil
}

// noise returns the centred noise coefficients of ct under k.
func noise(p Params, k *ResultKey, ct *Ciphertext, values []int64) ([]*big.Int, error) {
	if err := ct.validFor(p); err != nil {
		return nil, err
	}
	if len(values) > p.s.slots {
		return nil, fmt.Errorf("%w: %d values for %d slots", ErrInvalidArgument, len(values), p.s.slots)
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
		return nil, err
	}
	rQ.Sub(phase.Value, want.Value, phase.Value)
	rQ.INTT(phase.Value, phase.Value)
	coeffs := make([]*big.Int, rQ.N())
	for i := range coeffs {
		coeffs[i] = new(big.Int)
	}
	rQ.PolyToBigintCentered(phase.Value, 1, coeffs)
	return coeffs, nil
}
