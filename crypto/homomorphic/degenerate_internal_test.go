package homomorphic

import (
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// TestTopDigits checks Garner's top digit against big-integer CRT: v_L =
// floor(x / (Q / q_L)) for x the integer modulo Q with the given residues,
// for two and three primes (the three-prime path is the generic one).
func TestTopDigits(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{3}))
	for _, moduli := range [][]uint64{
		{0xfffffffffffc001, 0xffffffffffe8001},
		{0xfffffffffffc001, 0x100000000000e001},
		{0xfffffffffffc001, 0xffffffffffe8001, 0x100000000000e001},
	} {
		Q := big.NewInt(1)
		for _, q := range moduli {
			Q.Mul(Q, new(big.Int).SetUint64(q))
		}
		qL := new(big.Int).SetUint64(moduli[len(moduli)-1])
		scale := new(big.Int).Div(Q, qL)
		const n = 256
		poly := ring.Poly{Coeffs: make([][]uint64, len(moduli))}
		xs := make([]*big.Int, n)
		for i := range poly.Coeffs {
			poly.Coeffs[i] = make([]uint64, n)
		}
		for c := range xs {
			// Uniform values, and the edges 0, 1, Q-1 and multiples of Q/q_L.
			var x *big.Int
			switch c {
			case 0:
				x = big.NewInt(0)
			case 1:
				x = big.NewInt(1)
			case 2:
				x = new(big.Int).Sub(Q, big.NewInt(1))
			case 3:
				x = new(big.Int).Mul(scale, big.NewInt(5))
			case 4:
				x = new(big.Int).Sub(new(big.Int).Mul(scale, big.NewInt(5)), big.NewInt(1))
			default:
				b := make([]byte, 40)
				for i := range b {
					b[i] = byte(rng.Uint64())
				}
				x = new(big.Int).Mod(new(big.Int).SetBytes(b), Q)
			}
			xs[c] = x
			for i, q := range moduli {
				poly.Coeffs[i][c] = new(big.Int).Mod(x, new(big.Int).SetUint64(q)).Uint64()
			}
		}
		top := new(scratch).topDigits(moduli, poly)
		for c, x := range xs {
			if want := new(big.Int).Div(x, scale); !want.IsUint64() || want.Uint64() != top[c] {
				t.Fatalf("moduli %x, x = %s: top digit %d, want %s", moduli, x, top[c], want)
			}
		}
	}
}

// TestDistinct checks the bucketed distinct count against a map, on uniform
// residues, on values all in one bucket, and with repeats.
func TestDistinct(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{4}))
	q := uint64(0xfffffffffffc001)
	var sc scratch
	values := make([]uint64, 3000)
	for i := range values {
		values[i] = rng.Uint64N(q)
	}
	for _, gen := range []func(i int) uint64{
		func(int) uint64 { return values[rng.IntN(len(values))] }, // repeats in small buckets
		func(int) uint64 { return rng.Uint64N(q) },
		func(i int) uint64 { return uint64(i % 37) },          // one bucket, repeats
		func(i int) uint64 { return q - 1 - uint64(i%1000) },  // the last bucket
		func(i int) uint64 { return rng.Uint64N(q) &^ 0xfff }, // some repeats within buckets
		func(i int) uint64 { return rng.Uint64N(64) << 50 },   // few values, many buckets empty
	} {
		for _, n := range []int{1, 2, 4096, 8192} {
			res := make([]uint64, n)
			seen := map[uint64]bool{}
			for i := range res {
				res[i] = gen(i)
				seen[res[i]] = true
			}
			if got := sc.distinct(res, q); got != len(seen) {
				t.Fatalf("n=%d: distinct %d, want %d", n, got, len(seen))
			}
		}
	}
}
