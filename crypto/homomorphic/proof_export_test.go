package homomorphic

import "github.com/fedstat/fedstat/crypto/internal/shortproof"

// ProofAnswerStats decodes a proof and returns the smallest, largest and
// mean coefficient of its answer for u (for the test of the answers'
// ranges).
func ProofAnswerStats(p Params, proof []byte) (lo, hi, mean float64) {
	st := p.encStatement(nil, &Ciphertext{p: p, ct: p.newCiphertext()}, nil, 0)
	z, _, err := shortproof.Answers(st, proof)
	if err != nil {
		panic(err)
	}
	zu := z[0]
	lo, hi = float64(zu[0]), float64(zu[0])
	for _, v := range zu {
		f := float64(v)
		lo, hi, mean = min(lo, f), max(hi, f), mean+f
	}
	return lo, hi, mean / float64(len(zu))
}

// ProofLimitU is the largest |answer| for u a proof may carry.
func ProofLimitU(p Params) int64 {
	return p.encStatement(nil, &Ciphertext{p: p, ct: p.newCiphertext()}, nil, 0).Limit(0)
}
