package homomorphic_test

import (
	"errors"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/lowlevel"
)

var tok lowlevel.Token

// withC1 returns a ciphertext (0, c1) of p whose c1 has the coefficients
// coeff(j) (integers, reduced modulo Q), in the NTT domain like every
// ciphertext of this package.
func withC1(p homomorphic.Params, coeff func(j int) *big.Int) *homomorphic.Ciphertext {
	bp := p.BGV(tok)
	ct := rlwe.NewCiphertext(bp, 1, bp.MaxLevel())
	*ct.MetaData = p.CiphertextMetaData(tok)
	rQ := bp.RingQ()
	for j := range bp.N() {
		x := coeff(j)
		for i, q := range rQ.ModuliChain() {
			ct.Value[1].Coeffs[i][j] = new(big.Int).Mod(x, new(big.Int).SetUint64(q)).Uint64()
		}
	}
	rQ.NTT(ct.Value[1], ct.Value[1])
	return homomorphic.WrapCiphertext(tok, p, ct)
}

// withC1NTT returns a ciphertext (0, c1) whose c1 has the residue
// value(i, j) modulo prime i in NTT slot j.
func withC1NTT(p homomorphic.Params, value func(i, j int) uint64) *homomorphic.Ciphertext {
	bp := p.BGV(tok)
	ct := rlwe.NewCiphertext(bp, 1, bp.MaxLevel())
	*ct.MetaData = p.CiphertextMetaData(tok)
	for i := range ct.Value[1].Coeffs {
		for j := range ct.Value[1].Coeffs[i] {
			ct.Value[1].Coeffs[i][j] = value(i, j)
		}
	}
	return homomorphic.WrapCiphertext(tok, p, ct)
}

func modulusQ(p homomorphic.Params) *big.Int { return p.BGV(tok).RingQ().Modulus() }

// uniformMod returns a uniform integer in [0, m).
func uniformMod(rng *rand.Rand, m *big.Int) *big.Int {
	b := make([]byte, (m.BitLen()+7)/8+8)
	for i := range b {
		b[i] = byte(rng.Uint64())
	}
	return new(big.Int).Mod(new(big.Int).SetBytes(b), m) // bias below 2^-64
}

// small returns a uniform integer in [-b, b].
func small(rng *rand.Rand, b int64) *big.Int { return big.NewInt(rng.Int64N(2*b+1) - b) }

// TestCheckKeySwitchable: the naive attack ciphertext (0, 2^100) and the
// other degenerate shapes CheckKeySwitchable documents are refused; uniform
// c1 passes; and, as documented, a small g scaled by a random k (which wraps
// around Q) passes too: the check narrows the attack, it does not stop it.
func TestCheckKeySwitchable(t *testing.T) {
	p := testParams(t)
	Q := modulusQ(p)
	N := p.Slots()
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	two100 := new(big.Int).Lsh(big.NewInt(1), 100)
	k := uniformMod(rng, Q)
	refused := []struct {
		name string
		ct   *homomorphic.Ciphertext
	}{
		{"(0, 2^100)", withC1(p, func(j int) *big.Int {
			if j == 0 {
				return two100
			}
			return new(big.Int)
		})},
		{"zero", withC1(p, func(int) *big.Int { return new(big.Int) })},
		{"constant", withC1(p, func(j int) *big.Int {
			if j == 0 {
				return k
			}
			return new(big.Int)
		})},
		{"uniform on 1/8 of the coefficients", withC1(p, func(j int) *big.Int {
			if j%8 == 0 {
				return uniformMod(rng, Q)
			}
			return new(big.Int)
		})},
		{"N/128 zero coefficients", withC1(p, func(j int) *big.Int {
			if j%128 == 0 {
				return new(big.Int)
			}
			return uniformMod(rng, Q)
		})},
		{"uniform on half the NTT slots", withC1NTT(p, func(i, j int) uint64 {
			if j%2 == 0 {
				return rng.Uint64N(p.BGV(tok).RingQ().ModuliChain()[i])
			}
			return 0
		})},
		{"k * ternary", withC1(p, func(int) *big.Int { return new(big.Int).Mul(k, small(rng, 1)) })},
		{"k * Gaussian-sized g (|g| <= 19)", withC1(p, func(int) *big.Int { return new(big.Int).Mul(k, small(rng, 19)) })},
		// Distinct coefficients (about 0.5 collisions expected), so only
		// the middle-half count of the values modulo Q refuses it.
		{"2^90 * g, |g| <= 2^24 (no wrap around Q)", withC1(p, func(int) *big.Int {
			return new(big.Int).Lsh(small(rng, 1<<24), 90)
		})},
		{"small g, |g| <= 2^40", withC1(p, func(int) *big.Int { return small(rng, 1<<40) })},
		{"zero modulo the second prime", withC1(p, func(int) *big.Int {
			q1 := new(big.Int).SetUint64(p.BGV(tok).RingQ().ModuliChain()[1])
			return new(big.Int).Mul(q1, uniformMod(rng, new(big.Int).Div(Q, q1)))
		})},
	}
	for _, c := range refused {
		if err := homomorphic.CheckKeySwitchable(p, c.ct); !errors.Is(err, homomorphic.ErrDegenerate) {
			t.Errorf("%s: err = %v, want ErrDegenerate", c.name, err)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	for i := range 20 {
		ct := withC1(p, func(int) *big.Int { return uniformMod(rng, Q) })
		if err := homomorphic.CheckKeySwitchable(p, ct); err != nil {
			t.Fatalf("uniform c1 %d refused: %v", i, err)
		}
	}
	// The documented limitation: k * g with a random k and a small g with
	// distinct coefficients looks uniform and passes.
	evading := withC1(p, func(int) *big.Int { return new(big.Int).Mul(k, small(rng, 1<<24)) })
	if err := homomorphic.CheckKeySwitchable(p, evading); err != nil {
		t.Errorf("k*g with random k refused (docs/crypto.md says it passes; update both): %v", err)
	}
	// Nor does "no wrap around Q" suffice to be refused: k = Q/2^25 and
	// |g| <= 2^24 keep |k*g| <= Q/2 (no wrap), yet spread the centred values
	// over the middle half, so this passes as well (docs/crypto.md).
	kNoWrap := new(big.Int).Rsh(Q, 25)
	spread := withC1(p, func(int) *big.Int { return new(big.Int).Mul(kNoWrap, small(rng, 1<<24)) })
	if err := homomorphic.CheckKeySwitchable(p, spread); err != nil {
		t.Errorf("k*g with k = Q/2^25, |g| <= 2^24 refused (docs/crypto.md says it passes; update both): %v", err)
	}
	if N < 4096 {
		t.Fatalf("N = %d: the false-positive bound needs N >= 4096", N)
	}
	if err := homomorphic.CheckKeySwitchable(p, nil); err == nil {
		t.Error("nil ciphertext accepted")
	}
}
