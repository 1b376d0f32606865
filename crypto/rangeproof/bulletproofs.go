package rangeproof

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"

	"github.com/gtank/ristretto255"
)

// The aggregated range proof of Bünz et al. (2018), section 4.3, for the m
// values x_j = v_j − Lo_j of a statement, x_j in [0, 2^(w_j)), with the
// inner-product argument of section 3 (Protocol 2), both made
// non-interactive with the transcript. The paper gives every value n bits;
// here value j has its own w_j bits, at offset o_j = w_0 + … + w_(j−1), so
// that a range costs the bits it needs, and a last value 0 (the identity)
// fills N, the total, up to a power of two. Notation: a_L the bits of the
// values, a_R = a_L − 1, y^N = (1, y, …, y^(N−1)), and 2_(j) the vector
// with 2^i at position o_j + i (i < w_j) and zero elsewhere.

// prove makes the proof of the chunk's values vs, with blindings gammas.
func (st *statement) prove(vs []int64, gammas []ristretto255.Scalar) []byte {
	N, m := st.bits(), len(st.widths)
	g := gens(N)
	xs := make([]uint64, m) // the padding value is 0, blinded by 0
	blinds := make([]ristretto255.Scalar, m)
	for j := range vs {
		xs[j] = uint64(vs[j]) - uint64(st.ranges[j].Lo)
		blinds[j].Set(&gammas[j])
	}
	one := scalarUint(1)
	aL := make([]ristretto255.Scalar, N)
	aR := make([]ristretto255.Scalar, N)
	off := 0
	for j, w := range st.widths {
		for i := range w {
			if xs[j]>>i&1 == 1 {
				aL[off+i].Set(one)
			} else {
				aR[off+i].Negate(one)
			}
		}
		off += w
	}
	var alpha, rho, tau1, tau2 ristretto255.Scalar
	randomScalar(&alpha)
	randomScalar(&rho)
	randomScalar(&tau1)
	randomScalar(&tau2)
	sL := make([]ristretto255.Scalar, N)
	sR := make([]ristretto255.Scalar, N)
	for i := range N {
		randomScalar(&sL[i])
		randomScalar(&sR[i])
	}
	// A = α·B̃ + <a_L, G> + <a_R, H>: a_L, a_R are 0 and ±1.
	A := ristretto255.NewIdentityElement().ScalarMult(&alpha, g.blind)
	for i := range N {
		if aL[i].Equal(one) == 1 {
			A.Add(A, g.g[i])
		} else {
			A.Subtract(A, g.h[i])
		}
	}
	// (Fresh slices: g.g[:N] has the shared cache's capacity behind it.)
	S := msm(append(append([]*ristretto255.Scalar{&rho}, ptrs(sL)...), ptrs(sR)...),
		append(append([]*ristretto255.Element{g.blind}, g.g[:N]...), g.h[:N]...), true)
	st.t.appendPoint("A", A)
	st.t.appendPoint("S", S)
	y := st.t.challenge("y")
	z := st.t.challenge("z")

	yN := powers(y, N)
	zs2 := zTwos(z, st.widths)
	// l(X) = (a_L − z) + s_L·X, r(X) = y^N ∘ (a_R + z + s_R·X) + Σ_j z^(2+j)·2_(j).
	l0 := make([]ristretto255.Scalar, N)
	r0 := make([]ristretto255.Scalar, N)
	r1 := make([]ristretto255.Scalar, N)
	var tmp ristretto255.Scalar
	for i := range N {
		l0[i].Subtract(&aL[i], z)
		tmp.Add(&aR[i], z)
		r0[i].Multiply(&yN[i], &tmp)
		r0[i].Add(&r0[i], &zs2[i])
		r1[i].Multiply(&yN[i], &sR[i])
	}
	t1 := ristretto255.NewScalar().Add(inner(l0, r1), inner(sL, r0))
	t2 := inner(sL, r1)
	T1 := ristretto255.NewIdentityElement().MultiScalarMult([]*ristretto255.Scalar{t1, &tau1}, []*ristretto255.Element{ristretto255.NewGeneratorElement(), g.blind})
	T2 := ristretto255.NewIdentityElement().MultiScalarMult([]*ristretto255.Scalar{t2, &tau2}, []*ristretto255.Element{ristretto255.NewGeneratorElement(), g.blind})
	st.t.appendPoint("T1", T1)
	st.t.appendPoint("T2", T2)
	x := st.t.challenge("x")

	// τ_x = τ2·x² + τ1·x + Σ_j z^(2+j)·γ_j, μ = α + ρ·x.
	x2 := ristretto255.NewScalar().Multiply(x, x)
	taux := ristretto255.NewScalar().Multiply(&tau2, x2)
	taux.Add(taux, tmp.Multiply(&tau1, x))
	zj := ristretto255.NewScalar().Multiply(z, z)
	for j := range m {
		taux.Add(taux, tmp.Multiply(zj, &blinds[j]))
		zj.Multiply(zj, z)
	}
	mu := ristretto255.NewScalar().Multiply(&rho, x)
	mu.Add(mu, &alpha)
	l := make([]ristretto255.Scalar, N)
	r := make([]ristretto255.Scalar, N)
	for i := range N {
		l[i].Multiply(&sL[i], x)
		l[i].Add(&l[i], &l0[i])
		r[i].Multiply(&r1[i], x)
		r[i].Add(&r[i], &r0[i])
	}
	that := inner(l, r)
	st.t.appendScalar("taux", taux)
	st.t.appendScalar("mu", mu)
	st.t.appendScalar("that", that)

	out := make([]byte, 0, proofSize(st.ranges))
	for _, p := range []*ristretto255.Element{A, S, T1, T2} {
		out = append(out, p.Bytes()...)
	}
	for _, s := range []*ristretto255.Scalar{taux, mu, that} {
		out = append(out, s.Bytes()...)
	}
	if N <= directBits {
		// l and r themselves (the range proof of section 4.1, which is
		// zero knowledge as it stands): cheaper to make and check than
		// the inner-product argument, and at most 16 KiB.
		for i := range N {
			out = append(out, l[i].Bytes()...)
		}
		for i := range N {
			out = append(out, r[i].Bytes()...)
		}
		return out
	}
	w := st.t.challenge("w")
	Q := ristretto255.NewIdentityElement().ScalarMult(w, g.q)
	// The inner-product argument on G and H'_i = y^(−i)·H_i. The vectors
	// a = l and b = r are not secret (l = a_L − z + x·s_L is uniform given
	// the uniform s_L; the interactive protocol sends l and r in the
	// clear), so its multi-scalar multiplications are variable-time.
	// The generators are folded lazily: ipaGens keeps the last folded
	// vectors and the challenges since, and folds foldEvery rounds at once
	// (one multi-scalar multiplication of 2^foldEvery terms per element,
	// which shares its doublings, in place of foldEvery of two terms).
	v := &ipaGens{g: g.g[:N], h: g.h[:N], hc: powers(ristretto255.NewScalar().Invert(y), N)}
	a, b := ptrs(l), ptrs(r)
	for len(a) > 1 {
		h := len(a) / 2
		cL := inner(deref(a[:h]), deref(b[h:]))
		cR := inner(deref(a[h:]), deref(b[:h]))
		// L = <a_lo, G_hi> + <b_hi, H_lo> + cL·Q, R = <a_hi, G_lo> + <b_lo, H_hi> + cR·Q.
		sL, pL := v.terms(a[:h], h, b[h:], 0)
		sR, pR := v.terms(a[h:], 0, b[:h], h)
		L := msm(append(sL, cL), append(pL, Q), false)
		R := msm(append(sR, cR), append(pR, Q), false)
		st.t.appendPoint("L", L)
		st.t.appendPoint("R", R)
		out = append(out, L.Bytes()...)
		out = append(out, R.Bytes()...)
		u := st.t.challenge("u")
		uInv := ristretto255.NewScalar().Invert(u)
		// a' = u·a_lo + u^-1·a_hi, b' = u^-1·b_lo + u·b_hi,
		// G' = u^-1·G_lo + u·G_hi, H' = u·H_lo + u^-1·H_hi.
		na := make([]*ristretto255.Scalar, h)
		nb := make([]*ristretto255.Scalar, h)
		for i := range h {
			var t ristretto255.Scalar
			na[i] = ristretto255.NewScalar().Multiply(a[i], u)
			na[i].Add(na[i], t.Multiply(a[h+i], uInv))
			nb[i] = ristretto255.NewScalar().Multiply(b[i], uInv)
			nb[i].Add(nb[i], t.Multiply(b[h+i], u))
		}
		a, b = na, nb
		v.fold(u, uInv, h)
	}
	out = append(out, a[0].Bytes()...)
	return append(out, b[0].Bytes()...)
}

// foldEvery is how many rounds of the inner-product argument the prover's
// generators are folded at once (ipaGens).
const foldEvery = 3

// ipaGens are the prover's generators in the inner-product argument,
// folded lazily. g and h are the vectors as last folded (length m), hc
// factors of h's elements (y^(−i) until the first fold), and us the
// challenges of the k rounds since, latest first; the current vectors have
// n = m/2^k elements:
//
//	G_i = Σ_t cg_t·g[i + t·n],   H_i = Σ_t ch_t·hc[i + t·n]·h[i + t·n]   (t < 2^k),
//
// where bit j of t picks, for the challenge us[j], u (set) or u^-1 (clear)
// in cg_t, the other in ch_t (G' = u^-1·G_lo + u·G_hi, H' = u·H_lo +
// u^-1·H_hi, round after round).
type ipaGens struct {
	g, h      []*ristretto255.Element
	hc        []ristretto255.Scalar
	us, usInv []*ristretto255.Scalar
	cg, ch    []ristretto255.Scalar // cg_t, ch_t
}

// coefs sets cg and ch for the challenges since the last fold.
func (v *ipaGens) coefs() {
	k := len(v.us)
	v.cg = make([]ristretto255.Scalar, 1<<k)
	v.ch = make([]ristretto255.Scalar, 1<<k)
	for t := range v.cg {
		v.cg[t].Set(scalarUint(1))
		v.ch[t].Set(scalarUint(1))
		for j := range k {
			if t>>j&1 == 1 {
				v.cg[t].Multiply(&v.cg[t], v.us[j])
				v.ch[t].Multiply(&v.ch[t], v.usInv[j])
			} else {
				v.cg[t].Multiply(&v.cg[t], v.usInv[j])
				v.ch[t].Multiply(&v.ch[t], v.us[j])
			}
		}
	}
}

// terms are the scalars and points of <sa, G[ga:ga+len(sa)]> +
// <sb, H[hb:hb+len(sb)]> over the last folded vectors.
func (v *ipaGens) terms(sa []*ristretto255.Scalar, ga int, sb []*ristretto255.Scalar, hb int) ([]*ristretto255.Scalar, []*ristretto255.Element) {
	n := len(v.g) >> len(v.us)
	if v.cg == nil {
		v.coefs()
	}
	k := len(v.cg)
	scalars := make([]ristretto255.Scalar, 0, k*(len(sa)+len(sb)))
	points := make([]*ristretto255.Element, 0, k*(len(sa)+len(sb)))
	for t := range k {
		for i, x := range sa {
			var s ristretto255.Scalar
			scalars = append(scalars, *s.Multiply(x, &v.cg[t]))
			points = append(points, v.g[ga+i+t*n])
		}
		for i, x := range sb {
			var s ristretto255.Scalar
			s.Multiply(x, &v.ch[t])
			scalars = append(scalars, *s.Multiply(&s, &v.hc[hb+i+t*n]))
			points = append(points, v.h[hb+i+t*n])
		}
	}
	return ptrs(scalars), points
}

// fold records a round's challenge u; every foldEvery rounds, while
// generators are still needed (h > 1), it folds them into vectors of h.
func (v *ipaGens) fold(u, uInv *ristretto255.Scalar, h int) {
	v.us = append([]*ristretto255.Scalar{u}, v.us...)
	v.usInv = append([]*ristretto255.Scalar{uInv}, v.usInv...)
	v.cg = nil
	if len(v.us) < foldEvery || h <= 1 {
		return
	}
	v.coefs()
	k := len(v.cg)
	ng := make([]*ristretto255.Element, h)
	nh := make([]*ristretto255.Element, h)
	fold(h, func(lo, hi int) {
		sg := make([]*ristretto255.Scalar, k)
		sh := make([]*ristretto255.Scalar, k)
		pg := make([]*ristretto255.Element, k)
		ph := make([]*ristretto255.Element, k)
		for t := range k {
			sh[t] = ristretto255.NewScalar()
		}
		for i := lo; i < hi; i++ {
			for t := range k {
				sg[t], pg[t], ph[t] = &v.cg[t], v.g[i+t*h], v.h[i+t*h]
				sh[t].Multiply(&v.ch[t], &v.hc[i+t*h])
			}
			ng[i] = ristretto255.NewIdentityElement().VarTimeMultiScalarMult(sg, pg)
			nh[i] = ristretto255.NewIdentityElement().VarTimeMultiScalarMult(sh, ph)
		}
	})
	v.g, v.h = ng, nh
	v.hc = powers(scalarUint(1), h)
	v.us, v.usInv, v.cg = nil, nil, nil
}

// verify checks one chunk's proof (its size already checked) in one
// multi-scalar multiplication.
func (st *statement) verify(proof []byte) error {
	var a accumulator
	if err := st.accumulate(proof, &a, scalarUint(1)); err != nil {
		return err
	}
	if !a.zero() {
		return errNotVerified
	}
	return nil
}

var errNotVerified = fmt.Errorf("%w: the proof does not verify (a value outside its range, or a proof made for another context or commitment)", ErrProof)

// accumulate adds to a, times weight, the terms that sum to zero when the
// chunk's proof verifies: the two equations of the range proof, the second
// directly on l and r or through the inner-product argument, the first
// weighted by a random c so that they cannot cancel. A batch of proofs
// accumulates each with its own random weight (VerifyAll).
func (st *statement) accumulate(proof []byte, acc *accumulator, weight *ristretto255.Scalar) error {
	N, m := st.bits(), len(st.widths)
	acc.grow(N)
	rd := reader{b: proof}
	A, S, T1, T2 := rd.point(), rd.point(), rd.point(), rd.point()
	taux, mu, that := rd.scalar(), rd.scalar(), rd.scalar()
	var ls, rs []*ristretto255.Scalar
	var lr []*ristretto255.Element
	var a, b *ristretto255.Scalar
	if N <= directBits {
		for range 2 * N {
			ls = append(ls, rd.scalar())
		}
		ls, rs = ls[:N], ls[N:]
	} else {
		for range 2 * (bits.Len(uint(N)) - 1) {
			lr = append(lr, rd.point())
		}
		a, b = rd.scalar(), rd.scalar()
	}
	if rd.err != nil {
		return rd.err
	}

	st.t.appendPoint("A", A)
	st.t.appendPoint("S", S)
	y := st.t.challenge("y")
	z := st.t.challenge("z")
	st.t.appendPoint("T1", T1)
	st.t.appendPoint("T2", T2)
	x := st.t.challenge("x")
	st.t.appendScalar("taux", taux)
	st.t.appendScalar("mu", mu)
	st.t.appendScalar("that", that)

	var tmp ristretto255.Scalar
	one := scalarUint(1)
	yN := powers(y, N)
	yInv := powers(ristretto255.NewScalar().Invert(y), N)
	zs2 := zTwos(z, st.widths)
	z2 := ristretto255.NewScalar().Multiply(z, z)
	x2 := ristretto255.NewScalar().Multiply(x, x)
	// δ(y, z) = (z − z²)·<1, y^N> − Σ_j z^(3+j)·(2^(w_j) − 1).
	sumY := ristretto255.NewScalar()
	for i := range N {
		sumY.Add(sumY, &yN[i])
	}
	delta := ristretto255.NewScalar().Subtract(z, z2)
	delta.Multiply(delta, sumY)
	zj := ristretto255.NewScalar().Multiply(z2, z)
	for _, w := range st.widths {
		ones := ristretto255.NewScalar().Subtract(powerOfTwo(w), one)
		delta.Subtract(delta, tmp.Multiply(zj, ones))
		zj.Multiply(zj, z)
	}
	var c ristretto255.Scalar
	randomScalar(&c)
	// neg is −weight·s.
	neg := func(s *ristretto255.Scalar) *ristretto255.Scalar {
		out := ristretto255.NewScalar().Multiply(s, weight)
		return out.Negate(out)
	}
	var t ristretto255.Scalar

	// The second equation, moved to one side, is
	//   <l, G> + <r, H'> − A − x·S + z·Σ G_i − Σ (z + z^(2+j)2^i y^-i)·H_i + μ·B̃ = 0
	// with H'_i = y^-i·H_i; with the inner-product argument, l and r are
	// a·s and b·s^-1 on the folded generators, plus w(ab − t̂)·Q −
	// Σ (u_k²·L_k + u_k^-2·R_k). The first, times c, is
	//   (t̂ − δ)·B + τ_x·B̃ − Σ_j z^(2+j)·V_j − x·T1 − x²·T2 = 0.
	gs, hs := ls, rs // the coefficients of G_i and y^-i·H_i
	if N > directBits {
		rounds := len(lr) / 2
		us := make([]*ristretto255.Scalar, rounds)
		uInv := make([]*ristretto255.Scalar, rounds)
		w := st.t.challenge("w")
		for k := range rounds {
			st.t.appendPoint("L", lr[2*k])
			st.t.appendPoint("R", lr[2*k+1])
			us[k] = st.t.challenge("u")
			uInv[k] = ristretto255.NewScalar().Invert(us[k])
		}
		// s_i = Π_k u_k^(±1), + when bit (rounds−1−k) of i is set.
		s := make([]ristretto255.Scalar, N)
		sInv := make([]ristretto255.Scalar, N)
		s[0].Set(one)
		for k := range rounds {
			s[0].Multiply(&s[0], uInv[k])
		}
		sInv[0].Invert(&s[0])
		for i := 1; i < N; i++ {
			hb := 63 - bits.LeadingZeros64(uint64(i))
			k := rounds - 1 - hb
			u2 := ristretto255.NewScalar().Multiply(us[k], us[k])
			s[i].Multiply(&s[i-(1<<hb)], u2)
			u2.Multiply(uInv[k], uInv[k])
			sInv[i].Multiply(&sInv[i-(1<<hb)], u2)
		}
		gs, hs = make([]*ristretto255.Scalar, N), make([]*ristretto255.Scalar, N)
		for i := range N {
			gs[i] = ristretto255.NewScalar().Multiply(a, &s[i])
			hs[i] = ristretto255.NewScalar().Multiply(b, &sInv[i])
		}
		qs := ristretto255.NewScalar().Multiply(a, b)
		qs.Subtract(qs, that)
		qs.Multiply(qs, w)
		acc.q.Add(&acc.q, t.Multiply(qs, weight))
		for k := range rounds {
			acc.add(neg(ristretto255.NewScalar().Multiply(us[k], us[k])), lr[2*k])
			acc.add(neg(ristretto255.NewScalar().Multiply(uInv[k], uInv[k])), lr[2*k+1])
		}
	} else if inner(deref(ls), deref(rs)).Equal(that) != 1 {
		return fmt.Errorf("%w: t-hat is not <l, r>", ErrProof)
	}
	var gi, hi ristretto255.Scalar
	for i := range N {
		gi.Add(gs[i], z)
		acc.g[i].Add(&acc.g[i], t.Multiply(&gi, weight))
		hi.Subtract(hs[i], &zs2[i])
		hi.Multiply(&hi, &yInv[i])
		hi.Subtract(&hi, z)
		acc.h[i].Add(&acc.h[i], t.Multiply(&hi, weight))
	}
	bs := ristretto255.NewScalar().Subtract(that, delta)
	bs.Multiply(bs, &c)
	acc.base.Add(&acc.base, t.Multiply(bs, weight))
	blind := ristretto255.NewScalar().Multiply(taux, &c)
	blind.Add(blind, mu)
	acc.blind.Add(&acc.blind, t.Multiply(blind, weight))
	acc.add(neg(one), A)
	acc.add(neg(x), S)
	acc.add(neg(ristretto255.NewScalar().Multiply(x, &c)), T1)
	acc.add(neg(ristretto255.NewScalar().Multiply(x2, &c)), T2)
	zj.Multiply(z2, &c)
	for j := range m {
		acc.add(neg(zj), st.sides[j])
		zj = ristretto255.NewScalar().Multiply(zj, z)
	}
	return nil
}

// accumulator sums the terms of one or more proofs' equations by
// generator: G_i, H_i, B, B̃ and Q once each, whatever the number of
// proofs, and the proofs' own elements after them.
type accumulator struct {
	g, h           []ristretto255.Scalar
	base, blind, q ristretto255.Scalar
	scalars        []*ristretto255.Scalar
	points         []*ristretto255.Element
}

func (a *accumulator) grow(n int) {
	for len(a.g) < n {
		a.g = append(a.g, ristretto255.Scalar{})
		a.h = append(a.h, ristretto255.Scalar{})
	}
}

func (a *accumulator) add(s *ristretto255.Scalar, p *ristretto255.Element) {
	a.scalars = append(a.scalars, s)
	a.points = append(a.points, p)
}

// zero reports whether the accumulated terms sum to the identity.
func (a *accumulator) zero() bool {
	g := gens(len(a.g))
	scalars := append(make([]*ristretto255.Scalar, 0, 2*len(a.g)+3+len(a.scalars)), &a.base, &a.blind, &a.q)
	points := append(make([]*ristretto255.Element, 0, cap(scalars)), ristretto255.NewGeneratorElement(), g.blind, g.q)
	for i := range a.g {
		scalars = append(scalars, &a.g[i], &a.h[i])
		points = append(points, g.g[i], g.h[i])
	}
	scalars = append(scalars, a.scalars...)
	points = append(points, a.points...)
	return msm(scalars, points, false).Equal(ristretto255.NewIdentityElement()) == 1
}

// reader decodes a proof's elements and scalars in order, keeping the
// first error.
type reader struct {
	b   []byte
	n   int // elements and scalars read
	err error
}

func (r *reader) point() *ristretto255.Element {
	p := ristretto255.NewIdentityElement()
	r.next(PointSize, "element", p.Decode)
	return p
}

func (r *reader) scalar() *ristretto255.Scalar {
	s := ristretto255.NewScalar()
	r.next(scalarSize, "scalar", s.Decode)
	return s
}

// next decodes the next size bytes with decode, unless an error came first.
func (r *reader) next(size int, what string, decode func([]byte) error) {
	switch {
	case r.err != nil:
	case len(r.b) < size:
		r.err = fmt.Errorf("%w: truncated at %s %d", ErrProof, what, r.n)
	default:
		if err := decode(r.b[:size]); err != nil {
			r.err = fmt.Errorf("%w: %s %d is not canonical", ErrProof, what, r.n)
		}
		r.b = r.b[size:]
	}
	r.n++
}

// powers is (1, x, x², …, x^(k−1)).
func powers(x *ristretto255.Scalar, k int) []ristretto255.Scalar {
	out := make([]ristretto255.Scalar, k)
	if k == 0 {
		return out
	}
	out[0].Set(scalarUint(1))
	for i := 1; i < k; i++ {
		out[i].Multiply(&out[i-1], x)
	}
	return out
}

// zTwos is Σ_j z^(2+j)·2_(j): z^(2+j)·2^i at o_j + i.
func zTwos(z *ristretto255.Scalar, widths []int) []ristretto255.Scalar {
	var out []ristretto255.Scalar
	zj := ristretto255.NewScalar().Multiply(z, z)
	var cur ristretto255.Scalar
	for _, w := range widths {
		cur.Set(zj)
		for range w {
			out = append(out, cur)
			cur.Add(&cur, &cur)
		}
		zj.Multiply(zj, z)
	}
	return out
}

func powerOfTwo(i int) *ristretto255.Scalar {
	if i < 64 {
		return scalarUint(1 << i)
	}
	return ristretto255.NewScalar().Multiply(scalarUint(1<<32), powerOfTwo(i-32))
}

func inner(a, b []ristretto255.Scalar) *ristretto255.Scalar {
	out := ristretto255.NewScalar()
	var t ristretto255.Scalar
	for i := range a {
		out.Add(out, t.Multiply(&a[i], &b[i]))
	}
	return out
}

func ptrs(s []ristretto255.Scalar) []*ristretto255.Scalar {
	out := make([]*ristretto255.Scalar, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}

func deref(s []*ristretto255.Scalar) []ristretto255.Scalar {
	out := make([]ristretto255.Scalar, len(s))
	for i := range s {
		out[i].Set(s[i])
	}
	return out
}

// fold runs fn on [0, h) in two halves at once when h is large enough to
// be worth it (the prover's folds).
func fold(h int, fn func(lo, hi int)) {
	if h < 64 {
		fn(0, h)
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); fn(0, h/2) }()
	fn(h/2, h)
	wg.Wait()
}

// msm is Σ s_i·p_i, in constant time when secret; a large one in two
// halves at once (a decryptor's batch of every partial's range proofs).
func msm(s []*ristretto255.Scalar, p []*ristretto255.Element, secret bool) *ristretto255.Element {
	one := func(s []*ristretto255.Scalar, p []*ristretto255.Element) *ristretto255.Element {
		if secret {
			return ristretto255.NewIdentityElement().MultiScalarMult(s, p)
		}
		return ristretto255.NewIdentityElement().VarTimeMultiScalarMult(s, p)
	}
	if len(s) < 1024 || runtime.GOMAXPROCS(0) < 2 {
		return one(s, p)
	}
	h := len(s) / 2
	var lo *ristretto255.Element
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); lo = one(s[:h], p[:h]) }()
	hi := one(s[h:], p[h:])
	wg.Wait()
	return hi.Add(hi, lo)
}
