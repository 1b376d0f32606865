// Package shortproof proves knowledge of short integer polynomials that a
// public linear map over R_Q = Z_Q[X]/(X^N + 1) sends to a public image: one
// round of Lyubashevsky's Fiat-Shamir-with-aborts protocol with a sparse
// ternary challenge and uniform masks (docs/crypto.md, "Proofs of fresh
// encryption" and "Proofs of key-switch shares").
//
// A statement has signed components x_1..x_k (N integer coefficients
// each, |x_j| <= Bounds[j]) and optionally one component x_t in R_t (any
// residue modulo a plaintext modulus t, masked uniformly modulo t); the
// wrap of x_t's answer modulo t is moved into the component WrapInto
// (the map must be such that Delta*(a - k*t) = Delta*a - k, i.e. x_t
// enters only as Delta*x_t with Delta = t^-1 mod Q, and WrapInto enters
// with coefficient 1 in the same output).
//
// The answers are uniform on ranges that do not depend on the witness
// (rejection sampling), so an accepted proof reveals nothing about it; a
// prover that can answer two challenges knows a short opening of c_bar
// times the image, c_bar the challenges' difference.
package shortproof

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/tuneinsight/lattigo/v5/ring"
)

const (
	// Weight is the number of nonzero coefficients of a challenge:
	// C(N, 14) * 2^14 challenges, more than 2^145 for N >= 4096.
	Weight = 14
	// Gamma is the ratio of a mask's range to the largest shift it hides;
	// a round is accepted with probability about exp(-kN/Gamma) for k
	// signed components.
	Gamma = 1 << 17
	// attempts bounds the rejection loop.
	attempts = 64
)

// ErrRefused is returned when a proof does not verify.
var ErrRefused = errors.New("proof refused")

// Statement is what is proven: the map, its image and the bounds.
type Statement struct {
	// Domain separates proofs of different relations.
	Domain string
	// Ring is R_Q; N its degree.
	Ring *ring.Ring
	// Bounds are the largest |coefficient| of each signed component.
	Bounds []int64
	// T is the plaintext modulus of the R_t component, 0 when there is
	// none; WrapInto is the signed component that absorbs its wrap.
	T        uint64
	WrapInto int
	// Apply sets out = A(x, xt), in the NTT domain, for integer
	// polynomials x (len(Bounds) of them) and xt (nil when T = 0).
	Apply func(x [][]int64, xt []uint64, out []ring.Poly)
	// Image is A(witness) (NTT domain), which the proof opens.
	Image []ring.Poly
	// Context is bound into the challenge (sender, query, index...).
	Context []byte

	// Linked ties the R_t component to another proof (docs/crypto.md,
	// "The link"): each round's mask of x_t comes from MaskT (prover),
	// which also returns bytes committing to it in the other proof; those
	// bytes are bound into the round's challenge. The verifier gives the
	// accepted round's bytes in Bound. ProveLinked and VerifyLinked return
	// the challenge and the answer modulo t, which the other proof uses.
	Linked bool
	// MaskT draws a round's mask of x_t, uniform modulo T (the caller's
	// duty: the answer modulo t hides x_t only then), and its commitment.
	// Its last call is the accepted round's.
	MaskT func() (yt []uint64, bound []byte, err error)
	// Bound is the accepted round's commitment, for the verifier.
	Bound []byte

	// Uniform is the number of components that may be any element of R_Q
	// (a Shamir share of a secret key), in the representation
	// ApplyUniform takes (Lattigo's secret keys: NTT and Montgomery
	// domain). Their masks are uniform in R_Q, so their answers are
	// exactly uniform and never rejected; a proof carries every limb of
	// them in full.
	Uniform int
	// ApplyUniform adds the uniform components' part of the map to out
	// (NTT domain); the map is Apply's plus this one, and this one must be
	// linear over R_Q (products with public polynomials, sums, scalars).
	ApplyUniform func(xu []ring.Poly, out []ring.Poly)
}

// shifts returns the largest shift c*x of each signed component: Weight
// times its bound, plus Weight for the wrap in WrapInto.
func (st *Statement) shifts() []int64 {
	out := make([]int64, len(st.Bounds))
	for j, b := range st.Bounds {
		out[j] = Weight * b
		if st.T != 0 && j == st.WrapInto {
			out[j] += Weight
		}
	}
	return out
}

// limits are the accepted |answer| of each signed component.
func (st *Statement) limits() []int64 {
	s := st.shifts()
	for j := range s {
		s[j] *= Gamma - 1
	}
	return s
}

func (st *Statement) widths() (signed []int, t int) {
	for _, l := range st.limits() {
		signed = append(signed, bits.Len64(uint64(2*l)))
	}
	if st.T != 0 {
		t = bits.Len64(st.T - 1)
	}
	return signed, t
}

// uniformWidth is the bits of one coefficient of a uniform component:
// every limb in full.
func (st *Statement) uniformWidth() int {
	w := 0
	for _, s := range st.Ring.SubRings[:st.Ring.Level()+1] {
		w += bits.Len64(s.Modulus - 1)
	}
	return w
}

// Size is the length in bytes of a proof of st.
func (st *Statement) Size() int {
	signed, t := st.widths()
	total := t + st.Uniform*st.uniformWidth()
	for _, w := range signed {
		total += w
	}
	return sha256.Size + (st.Ring.N()*total+7)/8
}

func (st *Statement) check() error {
	if st.Ring == nil || st.Apply == nil || len(st.Bounds) == 0 {
		return fmt.Errorf("shortproof: incomplete statement")
	}
	for _, b := range st.limits() {
		if b <= 0 || b >= 1<<62 {
			return fmt.Errorf("shortproof: bound out of range")
		}
	}
	if st.T != 0 && (st.WrapInto < 0 || st.WrapInto >= len(st.Bounds)) {
		return fmt.Errorf("shortproof: wrap component %d", st.WrapInto)
	}
	if st.Uniform < 0 || (st.Uniform > 0) != (st.ApplyUniform != nil) {
		return fmt.Errorf("shortproof: %d uniform components and their map", st.Uniform)
	}
	return nil
}

// challenge is a sparse polynomial: Weight distinct positions and signs.
type challenge struct {
	pos  [Weight]int
	sign [Weight]int64
}

// challengeOf expands a hash into a challenge (SHA-256 in counter mode;
// N is a power of two, so masking gives uniform positions).
func challengeOf(n int, h []byte) challenge {
	var c challenge
	seen := map[int]bool{}
	var ctr uint32
	var block []byte
	for k := 0; k < Weight; {
		if len(block) < 3 {
			d := sha256.New()
			d.Write([]byte("fedstat/shortproof/challenge/v1\x00"))
			d.Write(h)
			d.Write(binary.BigEndian.AppendUint32(nil, ctr))
			ctr++
			block = d.Sum(nil)
		}
		v := uint32(block[0])<<16 | uint32(block[1])<<8 | uint32(block[2])
		block = block[3:]
		pos := int(v>>1) & (n - 1)
		if seen[pos] {
			continue
		}
		seen[pos] = true
		c.pos[k] = pos
		c.sign[k] = 1 - 2*int64(v&1)
		k++
	}
	return c
}

// mul returns c*x in Z[X]/(X^N + 1).
func (c challenge) mul(x []int64) []int64 {
	n := len(x)
	out := make([]int64, n)
	for k, pos := range c.pos {
		// X^pos*x: x[i] moves to i+pos, and wraps with a sign change
		// from i = n-pos on.
		s := c.sign[k]
		head, tail := x[:n-pos], x[n-pos:]
		dst := out[pos:]
		for i, v := range head {
			dst[i] += s * v
		}
		dst = out[:pos]
		for i, v := range tail {
			dst[i] -= s * v
		}
	}
	return out
}

// coeffs returns c's n coefficients.
func (c challenge) coeffs(n int) []int64 {
	x := make([]int64, n)
	for k, pos := range c.pos {
		x[pos] = c.sign[k]
	}
	return x
}

// poly sets out to c in R_Q, NTT and Montgomery domain.
func (c challenge) poly(r *ring.Ring, out ring.Poly) {
	for j, s := range r.SubRings[:r.Level()+1] {
		clear(out.Coeffs[j])
		for k, pos := range c.pos {
			if c.sign[k] > 0 {
				out.Coeffs[j][pos] = 1
			} else {
				out.Coeffs[j][pos] = s.Modulus - 1
			}
		}
	}
	r.NTT(out, out)
	r.MForm(out, out)
}

// Scratch polynomials of a ring, kept between proofs (a verification
// would otherwise allocate about a megabyte at the production set).
var scratch sync.Map // *ring.Ring -> *sync.Pool of *ring.Poly

// GetPoly returns a polynomial of r with arbitrary coefficients; give it
// back with PutPoly.
func GetPoly(r *ring.Ring) *ring.Poly {
	pool, _ := scratch.LoadOrStore(r, &sync.Pool{New: func() any { p := r.NewPoly(); return &p }})
	return pool.(*sync.Pool).Get().(*ring.Poly)
}

// PutPoly gives back a polynomial GetPoly(r) returned.
func PutPoly(r *ring.Ring, p *ring.Poly) {
	if pool, ok := scratch.Load(r); ok {
		pool.(*sync.Pool).Put(p)
	}
}

// Centred reads an integer polynomial in the coefficient domain back from
// its first limb, centred in (-q/2, q/2] (the inverse of SetSigned for
// values that small).
func Centred(r *ring.Ring, poly ring.Poly) []int64 {
	q := r.SubRings[0].Modulus
	out := make([]int64, r.N())
	for i, c := range poly.Coeffs[0] {
		if c > q/2 {
			out[i] = -int64(q - c)
		} else {
			out[i] = int64(c)
		}
	}
	return out
}

// SetSigned writes the integer polynomial x into every limb of dst.
func SetSigned(r *ring.Ring, dst ring.Poly, x []int64) {
	for j, s := range r.SubRings[:r.Level()+1] {
		q := s.Modulus
		c := dst.Coeffs[j]
		for i, v := range x {
			// Without a division when |v| < q (every witness and answer):
			// a negative v is 2^64 - |v| as a uint64, plus q is q - |v|.
			neg := uint64(v >> 63)
			if abs := (uint64(v) ^ neg) - neg; abs < q {
				c[i] = uint64(v) + q&neg
			} else if v >= 0 {
				c[i] = uint64(v) % q
			} else if m := abs % q; m == 0 {
				c[i] = 0
			} else {
				c[i] = q - m
			}
		}
	}
}

func (st *Statement) hash(w []ring.Poly, bound []byte) []byte {
	h := sha256.New()
	field := func(b []byte) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	field([]byte("fedstat/shortproof/v1"))
	field([]byte(st.Domain))
	field(st.Context)
	if st.Linked {
		field([]byte("linked"))
		field(bound)
	}
	buf := make([]byte, 8*st.Ring.N())
	for _, set := range [][]ring.Poly{st.Image, w} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(set))))
		for _, poly := range set {
			for _, limb := range poly.Coeffs[:st.Ring.Level()+1] {
				b := buf[:8*len(limb)]
				for i, v := range limb {
					binary.LittleEndian.PutUint64(b[8*i:], v)
				}
				h.Write(b)
			}
		}
	}
	return h.Sum(nil)
}

// Prove proves knowledge of x (and xt) with st.Apply(x, xt) = st.Image.
// Every |x[j]| must be at most st.Bounds[j]; xt's coefficients below st.T.
func Prove(st *Statement, x [][]int64, xt []uint64) ([]byte, error) {
	proof, _, err := ProveLinked(st, x, xt)
	return proof, err
}

// ProveUniform is Prove for a statement with uniform components xu (st.Uniform
// of them, in ApplyUniform's representation).
func ProveUniform(st *Statement, x [][]int64, xt []uint64, xu []ring.Poly) ([]byte, error) {
	if len(xu) != st.Uniform {
		return nil, fmt.Errorf("shortproof: %d uniform components for %d", len(xu), st.Uniform)
	}
	proof, _, err := prove(st, x, xt, xu)
	return proof, err
}

// ProveLinked is Prove, which also returns the accepted round's
// challenge (its N coefficients, in {-1, 0, 1}) for a linked statement.
func ProveLinked(st *Statement, x [][]int64, xt []uint64) ([]byte, []int64, error) {
	if st.Uniform != 0 {
		return nil, nil, fmt.Errorf("shortproof: a statement with uniform components needs ProveUniform")
	}
	proof, c, err := prove(st, x, xt, nil)
	if err != nil {
		return nil, nil, err
	}
	return proof, c.coeffs(st.Ring.N()), nil
}

func prove(st *Statement, x [][]int64, xt []uint64, xu []ring.Poly) ([]byte, challenge, error) {
	if err := st.check(); err != nil {
		return nil, challenge{}, err
	}
	if st.Linked && (st.T == 0 || st.MaskT == nil) {
		return nil, challenge{}, fmt.Errorf("shortproof: a linked statement needs an R_t component and MaskT")
	}
	n := st.Ring.N()
	if len(x) != len(st.Bounds) || (st.T != 0) != (xt != nil) {
		return nil, challenge{}, fmt.Errorf("shortproof: witness of %d components for %d", len(x), len(st.Bounds))
	}
	for j, comp := range x {
		if len(comp) != n {
			return nil, challenge{}, fmt.Errorf("shortproof: component %d has %d coefficients", j, len(comp))
		}
		for _, v := range comp {
			if v > st.Bounds[j] || v < -st.Bounds[j] {
				return nil, challenge{}, fmt.Errorf("shortproof: component %d outside its bound", j)
			}
		}
	}
	return proveRounds(st, x, xt, xu)
}

// proveRounds runs the rounds of Prove, without its checks of the witness
// (a test makes a cheating prover of it).
func proveRounds(st *Statement, x [][]int64, xt []uint64, xu []ring.Poly) ([]byte, challenge, error) {
	n := st.Ring.N()
	shifts, limits := st.shifts(), st.limits()
	w := make([]ring.Poly, len(st.Image))
	for i := range w {
		w[i] = st.Ring.NewPoly()
	}
	cx := make([][]int64, 0, len(x))
	var cxt []int64
	for round := 0; round < attempts; round++ {
		y := make([][]int64, len(x))
		for j := range y {
			var err error
			if y[j], err = uniformSigned(n, shifts[j]*Gamma); err != nil {
				return nil, challenge{}, err
			}
		}
		var yt []uint64
		var bound []byte
		switch {
		case st.Linked:
			var err error
			if yt, bound, err = st.MaskT(); err != nil {
				return nil, challenge{}, err
			}
			if len(yt) != n {
				return nil, challenge{}, fmt.Errorf("shortproof: a mask of %d coefficients", len(yt))
			}
		case st.T != 0:
			var err error
			if yt, err = uniformBelow(n, st.T); err != nil {
				return nil, challenge{}, err
			}
		}
		st.Apply(y, yt, w)
		var yu []ring.Poly
		if st.Uniform > 0 {
			yu = make([]ring.Poly, st.Uniform)
			for k := range yu {
				yu[k] = st.Ring.NewPoly()
				for j, sr := range st.Ring.SubRings[:st.Ring.Level()+1] {
					limb, err := uniformBelow(n, sr.Modulus)
					if err != nil {
						return nil, challenge{}, err
					}
					copy(yu[k].Coeffs[j], limb)
				}
			}
			st.ApplyUniform(yu, w)
		}
		h := st.hash(w, bound)
		c := challengeOf(n, h)
		if round == 0 {
			for _, comp := range x {
				cx = append(cx, c.mul(comp))
			}
		} else {
			for j, comp := range x {
				cx[j] = c.mul(comp)
			}
		}
		z := make([][]int64, len(x))
		for j := range z {
			z[j] = cx[j]
			for i := range z[j] {
				z[j][i] += y[j][i]
			}
		}
		var zt []uint64
		if st.T != 0 {
			m := make([]int64, n)
			for i, v := range xt {
				m[i] = int64(v)
			}
			cxt = c.mul(m) // |c*xt| < Weight*t < 2^45
			t := int64(st.T)
			zt = make([]uint64, n)
			for i := range cxt {
				s := int64(yt[i]) + cxt[i]
				red := s % t
				if red < 0 {
					red += t
				}
				z[st.WrapInto][i] += (s - red) / t
				zt[i] = uint64(red)
			}
		}
		ok := true
		for j := range z {
			if !within(z[j], limits[j]) {
				ok = false
				break
			}
		}
		if ok {
			var zu []ring.Poly
			if st.Uniform > 0 {
				// z = y + c*x in R_Q: uniform, never rejected.
				r := st.Ring
				cp := r.NewPoly()
				c.poly(r, cp)
				for k := range yu {
					r.MulCoeffsMontgomeryThenAdd(cp, xu[k], yu[k])
				}
				zu = yu
			}
			return st.encode(h, z, zt, zu), c, nil
		}
	}
	return nil, challenge{}, fmt.Errorf("shortproof: %d rounds rejected (a witness outside its bounds?)", attempts)
}

// Verify checks a proof of st.
func Verify(st *Statement, proof []byte) error {
	_, _, err := VerifyLinked(st, proof)
	return err
}

// VerifyLinked is Verify, which also returns the challenge (N
// coefficients in {-1, 0, 1}) and the answer modulo t, which the proof
// linked to it checks against (st.Bound is bound into the challenge).
func VerifyLinked(st *Statement, proof []byte) ([]int64, []uint64, error) {
	if err := st.check(); err != nil {
		return nil, nil, err
	}
	if st.Linked && st.T == 0 {
		return nil, nil, fmt.Errorf("shortproof: a linked statement needs an R_t component")
	}
	h, z, zt, zu, err := st.decode(proof)
	if err != nil {
		return nil, nil, err
	}
	r := st.Ring
	w := make([]ring.Poly, len(st.Image))
	for i := range w {
		p := GetPoly(r)
		defer PutPoly(r, p)
		w[i] = *p
	}
	st.Apply(z, zt, w)
	if st.Uniform > 0 {
		st.ApplyUniform(zu, w)
	}
	c := challengeOf(r.N(), h)
	cp, tmp := GetPoly(r), GetPoly(r)
	defer PutPoly(r, cp)
	defer PutPoly(r, tmp)
	c.poly(r, *cp)
	for i, img := range st.Image {
		r.MulCoeffsMontgomery(*cp, img, *tmp)
		r.Sub(w[i], *tmp, w[i])
	}
	if subtle.ConstantTimeCompare(st.hash(w, st.Bound), h) != 1 {
		return nil, nil, fmt.Errorf("%w: the answer does not open the statement", ErrRefused)
	}
	return c.coeffs(r.N()), zt, nil
}

func within(x []int64, lim int64) bool {
	for _, v := range x {
		if v > lim || v < -lim {
			return false
		}
	}
	return true
}

// uniformSigned draws n integers uniform in [-b, b] (crypto/rand).
func uniformSigned(n int, b int64) ([]int64, error) {
	u, err := uniformBelow(n, uint64(2*b+1))
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for i, v := range u {
		out[i] = int64(v) - b
	}
	return out, nil
}

// uniformBelow draws n integers uniform in [0, bound) (crypto/rand,
// rejection sampling): from 32 random bits each when bound <= 2^32, 64
// otherwise, with the top of the range (less than bound of it) drawn
// again.
func uniformBelow(n int, bound uint64) ([]uint64, error) {
	size, top := 8, ^uint64(0)
	if bound <= 1<<32 {
		size, top = 4, 1<<32-1
	}
	limit := top - (top%bound+1)%bound // values above limit are drawn again
	out := make([]uint64, 0, n)
	raw := make([]byte, size*n)
	for len(out) < n {
		need := n - len(out)
		buf := raw[:size*need]
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		for i := range need {
			var v uint64
			if size == 4 {
				v = uint64(binary.LittleEndian.Uint32(buf[4*i:]))
			} else {
				v = binary.LittleEndian.Uint64(buf[8*i:])
			}
			if v <= limit {
				out = append(out, v%bound)
			}
		}
	}
	return out, nil
}

func (st *Statement) encode(h []byte, z [][]int64, zt []uint64, zu []ring.Poly) []byte {
	signed, tw := st.widths()
	limits := st.limits()
	w := bitWriter{buf: append(make([]byte, 0, st.Size()), h...)}
	for j, comp := range z {
		for _, v := range comp {
			w.write(uint64(v+limits[j]), signed[j])
		}
	}
	for _, v := range zt {
		w.write(v, tw)
	}
	for _, poly := range zu {
		for j, sr := range st.Ring.SubRings[:st.Ring.Level()+1] {
			width := bits.Len64(sr.Modulus - 1)
			for _, v := range poly.Coeffs[j] {
				w.write(v, width)
			}
		}
	}
	return w.flush()
}

func (st *Statement) decode(b []byte) (h []byte, z [][]int64, zt []uint64, zu []ring.Poly, err error) {
	if len(b) != st.Size() {
		return nil, nil, nil, nil, fmt.Errorf("%w: proof of %d bytes, want %d", ErrRefused, len(b), st.Size())
	}
	n := st.Ring.N()
	signed, tw := st.widths()
	limits := st.limits()
	h = b[:sha256.Size]
	rd := bitReader{buf: b[sha256.Size:]}
	z = make([][]int64, len(signed))
	for j := range z {
		z[j] = make([]int64, n)
		for i := range z[j] {
			v := int64(rd.read(signed[j])) - limits[j]
			if v > limits[j] || v < -limits[j] {
				return nil, nil, nil, nil, fmt.Errorf("%w: answer %d, coefficient %d out of range", ErrRefused, j, i)
			}
			z[j][i] = v
		}
	}
	if st.T != 0 {
		zt = make([]uint64, n)
		for i := range zt {
			if zt[i] = rd.read(tw); zt[i] >= st.T {
				return nil, nil, nil, nil, fmt.Errorf("%w: answer modulo t, coefficient %d not below t", ErrRefused, i)
			}
		}
	}
	for k := 0; k < st.Uniform; k++ {
		poly := st.Ring.NewPoly()
		for j, sr := range st.Ring.SubRings[:st.Ring.Level()+1] {
			width := bits.Len64(sr.Modulus - 1)
			for i := range poly.Coeffs[j] {
				if poly.Coeffs[j][i] = rd.read(width); poly.Coeffs[j][i] >= sr.Modulus {
					return nil, nil, nil, nil, fmt.Errorf("%w: uniform answer %d, coefficient %d not below its prime", ErrRefused, k, i)
				}
			}
		}
		zu = append(zu, poly)
	}
	if !rd.done() {
		return nil, nil, nil, nil, fmt.Errorf("%w: nonzero padding", ErrRefused)
	}
	return h, z, zt, zu, nil
}

// bitWriter packs fixed-width values, least significant bits first.
type bitWriter struct {
	buf  []byte
	acc  uint64
	nacc int
}

func (w *bitWriter) write(v uint64, width int) {
	if width > 32 {
		w.write(v&(1<<32-1), 32)
		w.write(v>>32, width-32)
		return
	}
	// Fewer than 8 bits held, at most 32 added: at most 39 bits.
	w.acc |= (v & (1<<width - 1)) << w.nacc
	w.nacc += width
	for w.nacc >= 8 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.buf = append(w.buf, byte(w.acc))
		w.acc, w.nacc = 0, 0
	}
	return w.buf
}

type bitReader struct {
	buf  []byte
	acc  uint64
	nacc int
}

func (r *bitReader) read(width int) uint64 {
	if width > 56 {
		lo := r.read(32)
		return lo | r.read(width-32)<<32
	}
	if r.nacc < width {
		if r.refill(); r.nacc < width {
			// decode checks the length first.
			panic("shortproof: read past the end of a proof")
		}
	}
	v := r.acc & (1<<width - 1)
	r.acc >>= width
	r.nacc -= width
	return v
}

// refill tops the accumulator up to at least 56 bits, or to the end of the
// buffer: with eight bytes left, as many whole bytes as fit below 64 bits
// in one load; otherwise byte by byte.
func (r *bitReader) refill() {
	if len(r.buf) >= 8 {
		take := (63 - r.nacc) >> 3
		r.acc |= binary.LittleEndian.Uint64(r.buf) << r.nacc
		r.nacc += 8 * take
		r.acc &= 1<<r.nacc - 1
		r.buf = r.buf[take:]
		return
	}
	for r.nacc <= 56 && len(r.buf) > 0 {
		r.acc |= uint64(r.buf[0]) << r.nacc
		r.buf = r.buf[1:]
		r.nacc += 8
	}
}

// done reports whether everything was read and the padding bits are zero.
func (r *bitReader) done() bool { return len(r.buf) == 0 && r.acc == 0 }

// Answers decodes a proof of st into its answers (signed components, then
// the component modulo t), without verifying it: for tests of their
// distribution.
func Answers(st *Statement, proof []byte) ([][]int64, []uint64, error) {
	if err := st.check(); err != nil {
		return nil, nil, err
	}
	_, z, zt, _, err := st.decode(proof)
	return z, zt, err
}

// Limit is the largest |answer| of signed component j.
func (st *Statement) Limit(j int) int64 { return st.limits()[j] }
