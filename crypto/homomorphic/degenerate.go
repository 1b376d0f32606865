package homomorphic

import (
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"slices"
	"sync"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// ErrDegenerate is returned by CheckKeySwitchable for a ciphertext whose c1
// is not shaped like that of an honest sum.
var ErrDegenerate = errors.New("homomorphic: degenerate ciphertext refused for key switching")

// CheckKeySwitchable is a cheap test that a decrypting node can run on a
// summed ciphertext before it makes a key-switch share of it. A key-switch
// share of (c0, c1) carries s_i*c1 plus smudging noise of about 2^60.5, and
// the smudging hides s_i only if c1 is like an honest sum's: sum_j (u_j*a +
// e_j) for the public polynomial a, which is uniform modulo every prime.
// A colluding member can instead make the sum equal to (0, 2^100): the share
// is then 2^100*s_i + noise, and whoever holds the result key rounds s_i out.
//
// CheckKeySwitchable returns an error wrapping ErrDegenerate unless c1 looks
// uniform, in both its NTT and its coefficient representation:
//
//   - modulo every prime, at least N - N/256 of its N residues are distinct
//     (this refuses zero, constant and sparse c1, and any c1 with few
//     distinct values, such as k*g for a ternary or small Gaussian g and any
//     scalar k: (0, 2^100) has 1 distinct residue per prime in the NTT
//     representation and 2 in the coefficient one);
//   - modulo every prime, and for the value modulo Q (the top digit of its
//     mixed-radix form), the share of residues in the middle half [q/4,
//     3q/4) is within 1/8 of 1/2 (this refuses a c1 whose centred values
//     mostly lie below Q/4 in magnitude, e.g. 2^90 * g for distinct |g| <=
//     2^24, whether or not its coefficients are distinct; not every k*g
//     that does not wrap around Q: k = Q/2^25 with |g| <= 2^24 spreads over
//     the middle half and passes).
//
// A uniform c1 fails a check with probability below 2^-180 (collisions
// among N uniform residues of 60 bits, and Hoeffding's bound 2 exp(-N/32) on
// each middle-half count at N >= 4096). An honest sum's c1 = a*U + E is an
// RLWE sample, which no efficient test tells from uniform, so it passes as
// well (TestCheckKeySwitchableHonest in crypto/collective checks many).
//
// It is a narrowing, not a fix: a c1 = k*g mod Q with g small (with distinct
// coefficients) and a scalar k for which k*g wraps around Q evenly (a random
// k, say) passes, and the coordinator that chose k can still recover s_i*g
// from the share coefficient by coefficient (a two-dimensional lattice
// problem per coefficient), as can any adversarial c1 that looks uniform.
// Closing that needs proofs that every partial is a well-formed encryption.
// c0 is not examined: the key-switch share does not depend on it.
//
// It does not modify ct and is safe for concurrent use.
func CheckKeySwitchable(p Params, ct *Ciphertext) error {
	if err := ct.validFor(p); err != nil {
		return err
	}
	level := ct.ct.Level()
	rQ := p.ringQ().AtLevel(level)
	c1 := ct.ct.Value[1]
	other := rQ.NewPoly()
	ntt, coeffs := c1, other
	if ct.ct.IsNTT {
		rQ.INTT(c1, other)
	} else {
		rQ.NTT(c1, other)
		ntt, coeffs = other, c1
	}
	moduli := rQ.ModuliChain()[:level+1]
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	if err := sc.checkUniform(moduli, ntt); err != nil {
		return fmt.Errorf("%w: c1 in the NTT representation: %w", ErrDegenerate, err)
	}
	if err := sc.checkUniform(moduli, coeffs); err != nil {
		return fmt.Errorf("%w: c1 in the coefficient representation: %w", ErrDegenerate, err)
	}
	return nil
}

// checkUniform applies CheckKeySwitchable's tests to one representation of
// a polynomial with the given RNS moduli.
func (sc *scratch) checkUniform(moduli []uint64, poly ring.Poly) error {
	n := len(poly.Coeffs[0])
	for i, q := range moduli {
		res := poly.Coeffs[i][:n]
		if distinct := sc.distinct(res, q); distinct < n-n/256 {
			return fmt.Errorf("%d distinct residues modulo prime %d among %d", distinct, i, n)
		}
		if mid := middleHalf(res, q); !balanced(mid, n) {
			return fmt.Errorf("%d of %d residues modulo prime %d in the middle half", mid, n, i)
		}
	}
	if len(moduli) > 1 {
		top := sc.topDigits(moduli, poly)
		if mid := middleHalf(top, moduli[len(moduli)-1]); !balanced(mid, n) {
			return fmt.Errorf("%d of %d values modulo Q in the middle half", mid, n)
		}
	}
	return nil
}

// scratch holds the buffers of checkUniform; scratchPool keeps them between
// calls.
type scratch struct {
	buf []uint64 // distinct: the values, grouped by bucket
	end []int    // distinct: bucket boundaries in buf
	top []uint64 // topDigits: the result
	v   []uint64 // topDigits: mixed-radix digits of one value
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// distinct returns the number of distinct values among res, all below q. It
// groups them by their top bits into about len(res) buckets (counting sort)
// and sorts only within buckets: linear time for uniform residues, n log n
// at worst.
func (sc *scratch) distinct(res []uint64, q uint64) int {
	n := len(res)
	if n == 0 {
		return 0
	}
	logB := bits.Len(uint(n - 1)) // 2^logB >= n buckets
	shift := 0
	if l := bits.Len64(q - 1); l > logB {
		shift = l - logB
	}
	nb := 1 << logB
	if len(sc.buf) < n {
		sc.buf = make([]uint64, n)
	}
	if len(sc.end) < nb {
		sc.end = make([]int, nb)
	}
	buf, end := sc.buf[:n], sc.end[:nb]
	clear(end)
	for _, r := range res {
		end[r>>shift]++
	}
	for b := 1; b < nb; b++ {
		end[b] += end[b-1]
	}
	// Scatter from the back, moving each bucket's end down to its start.
	for _, r := range slices.Backward(res) {
		b := r >> shift
		end[b]--
		buf[end[b]] = r
	}
	dup := 0
	for b := range nb {
		stop := n
		if b+1 < nb {
			stop = end[b+1]
		}
		bucket := buf[end[b]:stop]
		switch {
		case len(bucket) < 2:
		case len(bucket) <= 8: // a value repeats if an earlier one equals it
			for j := 1; j < len(bucket); j++ {
				for _, x := range bucket[:j] {
					if x == bucket[j] {
						dup++
						break
					}
				}
			}
		default:
			slices.Sort(bucket)
			for j := 1; j < len(bucket); j++ {
				if bucket[j] == bucket[j-1] {
					dup++
				}
			}
		}
	}
	return n - dup
}

// middleHalf counts the residues in [q/4, q - q/4), without branches (the
// outcome of each comparison is a coin toss for uniform residues).
func middleHalf(res []uint64, q uint64) int {
	lo := q / 4
	width := q - q/4 - lo
	mid := uint64(0)
	for _, r := range res {
		_, below := bits.Sub64(r-lo, width, 0) // r - lo < width, as unsigned: lo <= r < q - q/4
		mid += below
	}
	return int(mid)
}

// balanced reports whether mid is within n/8 of n/2.
func balanced(mid, n int) bool {
	d := 2*mid - n
	return d <= n/4 && d >= -n/4
}

// topDigits returns, for every coefficient x of poly (given by its residues
// modulo q_0..q_L), the top digit v_L of its mixed-radix form x = v_0 + q_0
// v_1 + ... + (q_0...q_{L-1}) v_L (Garner's algorithm), so that x/Q lies in
// [v_L/q_L, (v_L+1)/q_L).
func (sc *scratch) topDigits(moduli []uint64, poly ring.Poly) []uint64 {
	L := len(moduli) - 1
	// inv[j][k] = q_j^-1 mod q_k for j < k, and Barrett constants.
	inv := make([][]uint64, L)
	for j := range inv {
		inv[j] = make([]uint64, L+1)
		for k := j + 1; k <= L; k++ {
			x := new(big.Int).ModInverse(new(big.Int).SetUint64(moduli[j]), new(big.Int).SetUint64(moduli[k]))
			inv[j][k] = x.Uint64()
		}
	}
	bred := make([][]uint64, L+1)
	for k, q := range moduli {
		bred[k] = ring.BRedConstant(q)
	}
	n := len(poly.Coeffs[0])
	if cap(sc.top) < n {
		sc.top = make([]uint64, n)
	}
	top := sc.top[:n]
	if L == 1 { // two primes: v_1 = (r_1 - r_0) * q_0^-1 mod q_1
		q1, r0s, r1s := moduli[1], poly.Coeffs[0][:n], poly.Coeffs[1][:n]
		for c := range top {
			d := r0s[c]
			if d >= q1 {
				d %= q1
			}
			t := r1s[c]
			if t >= d {
				t -= d
			} else {
				t += q1 - d
			}
			top[c] = ring.BRed(t, inv[0][1], q1, bred[1])
		}
		return top
	}
	if cap(sc.v) < L+1 {
		sc.v = make([]uint64, L+1)
	}
	v := sc.v[:L+1]
	for c := 0; c < n; c++ {
		for k := 0; k <= L; k++ {
			qk := moduli[k]
			t := poly.Coeffs[k][c]
			for j := 0; j < k; j++ {
				d := v[j]
				if d >= qk {
					d %= qk
				}
				if t >= d {
					t -= d
				} else {
					t += qk - d
				}
				t = ring.BRed(t, inv[j][k], qk, bred[k]) // t * q_j^-1 mod q_k, t and the inverse below q_k
			}
			v[k] = t
		}
		top[c] = v[L]
	}
	return top
}
