package eval

import "math/bits"

// bitset is a set of row (or patient) indices.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

// full returns the set {0, ..., n-1}.
func full(n int) bitset {
	b := newBitset(n)
	for i := range b {
		b[i] = ^uint64(0)
	}
	if r := n % 64; r != 0 {
		b[len(b)-1] = (1 << uint(r)) - 1
	}
	return b
}

func (b bitset) set(i int)      { b[i>>6] |= 1 << uint(i&63) }
func (b bitset) has(i int) bool { return b[i>>6]&(1<<uint(i&63)) != 0 }

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// each calls f for every member in increasing order.
func (b bitset) each(f func(i int)) {
	for wi, w := range b {
		for w != 0 {
			j := bits.TrailingZeros64(w)
			f(wi<<6 | j)
			w &= w - 1
		}
	}
}

func trailing(w uint64) int { return bits.TrailingZeros64(w) }
