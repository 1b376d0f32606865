package linkage

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/gtank/ristretto255"
)

// ErrInvalidStageProof: a stage's output list is not shown to be a correct
// mix of its input: the proof does not verify against the input, the
// output, the stage's keys and the context.
var ErrInvalidStageProof = errors.New("linkage: the stage's output is not a proven mix of its input")

// StageKeys are the public keys a stage publishes with a proved mix of one
// group (cell): K = k·B for its mixing exponent k (never the identity) and
// V = v·B with v = k·w, the part of the key it strips (the identity for a
// first stage, which strips nothing). Every list of the group is proved
// against the same keys, so all of them were raised to the same k.
type StageKeys struct {
	K, V Point
}

// StageProof is a non-interactive zero-knowledge proof that one output list
// of a Stage is a correct mix of its input list: a permutation of the
// input, every pseudonym (C1, C2) mapped to (k·C1, k·C2 − v·C1) with the k
// and v of the group's StageKeys (v = k·w, w·B the stage's weighted key),
// and every payload re-randomised under X and moved with its pseudonym.
// It is the proof of a shuffle of Terelius and Wikström ("Proofs of
// restricted shuffles", Africacrypt 2010), as the Verificatum mix-net
// implements it, with the re-encryption relation replaced by the stage's:
//
//   - a commitment to the permutation matrix, U_i = s_i·B + h_{σ(i)} for
//     input i going to output σ(i), with generators h_0, h_1, … hashed to
//     the group (nobody knows a relation among them or to B);
//   - challenges e_i hashed from everything so far, e'_j = e_{π(j)};
//   - a chain Ĉ_j = r̂_j·B + e'_j·Ĉ_{j−1} from Ĉ_0 = h_0 that shows
//     Π e'_j = Π e_i;
//   - a Schnorr proof of knowledge of s̄ = Σ s_i, t = Σ e_i·s_i, the chain's
//     R̂, k, v, r̃ = Σ e'_j·r_j, and every e'_j and r̂_j, such that
//     Σ U_i − Σ h_j = s̄·B; Ĉ_n − (Π e_i)·h_0 = R̂·B;
//     Σ e_i·U_i = t·B + Σ e'_j·h_j; Ĉ_j = r̂_j·B + e'_j·Ĉ_{j−1};
//     Σ e'_j·C1'_j = k·Σ e_i·C1_i; Σ e'_j·C2'_j = k·Σ e_i·C2_i − v·Σ e_i·C1_i;
//     Σ e'_j·P1'_j − r̃·B = Σ e_i·P1_i; Σ e'_j·P2'_j − r̃·X = Σ e_i·P2_i;
//     K = k·B; V = v·B; V = k·W.
//
// The first three make U a commitment to a permutation matrix (the
// polynomial identity Π_j (Σ_i M_ji·x_i) = Π_i x_i at random e), the rest
// make the output that permutation of the input under the stage's map.
// Soundness rests on discrete log in ristretto255 (the binding of the
// commitments) and SHA-512 as a random oracle (Fiat–Shamir); it is
// honest-verifier zero knowledge, so the proof reveals nothing of the
// permutation, k, v or the payload randomness beyond K and V. Its wire
// form (MarshalBinary) is 2n points and 2n + 7 scalars for n elements.
type StageProof struct {
	U     []Point  // permutation commitment, one per input element
	Chain []Point  // Ĉ_1 … Ĉ_n
	C     Scalar   // the challenge
	Z     []Scalar // responses: s̄, t, R̂, k, v, r̃, then e'_1 … e'_n, then r̂_1 … r̂_n
}

// Fixed positions of the responses in StageProof.Z.
const (
	zSBar = iota
	zT
	zRHat
	zK
	zV
	zRTilde
	zFixed // e'_j starts here, then r̂_j
)

// StageProved is Stage with proofs: it mixes lists (one group) in place as
// Stage does and returns the group's StageKeys and one StageProof per list
// (list l proved under context and l). The secret scalars it keeps to
// prove are zeroed before it returns. Checks and errors as Stage.
func StageProved(k, w Scalar, x Point, lists [][]Ciphertext, payloads [][]ValueCiphertext, context []byte) (StageKeys, []StageProof, error) {
	var keys StageKeys
	ins := make([][]Ciphertext, len(lists))
	inP := make([][]ValueCiphertext, len(lists))
	for l := range lists {
		ins[l] = append([]Ciphertext(nil), lists[l]...)
		if payloads != nil && payloads[l] != nil {
			inP[l] = append([]ValueCiphertext(nil), payloads[l]...)
		}
	}
	wit, err := stage(k, w, x, lists, payloads, true)
	if err != nil {
		return keys, nil, err
	}
	defer func() {
		for _, wt := range wit {
			for _, r := range wt.rand {
				r.Zero()
			}
		}
	}()
	ks, _ := k.decode() // checked by stage
	ws, _ := w.decode()
	vs := ristretto255.NewScalar().Multiply(ks, ws)
	defer ks.Zero()
	defer ws.Zero()
	defer vs.Zero()
	keys.K = encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(ks))
	keys.V = encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(vs))
	wkey := encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(ws))
	proofs := make([]StageProof, len(lists))
	for l := range lists {
		var outP []ValueCiphertext
		if payloads != nil {
			outP = payloads[l]
		}
		st, err := newStageStatement(keys, wkey, x, context, l, ins[l], inP[l], lists[l], outP)
		if err != nil {
			return keys, nil, err
		}
		if proofs[l], err = st.prove(ks, vs, wit[l]); err != nil {
			return keys, nil, err
		}
	}
	return keys, proofs, nil
}

// MarshalBinary is the proof's wire form: n as 4 bytes big endian, then
// U, the chain, c and the responses, 32 bytes each.
func (p *StageProof) MarshalBinary() []byte {
	b := make([]byte, 4, 4+PointSize*(len(p.U)+len(p.Chain))+ScalarSize*(1+len(p.Z)))
	binary.BigEndian.PutUint32(b, uint32(len(p.U)))
	for _, x := range p.U {
		b = append(b, x[:]...)
	}
	for _, x := range p.Chain {
		b = append(b, x[:]...)
	}
	b = append(b, p.C[:]...)
	for _, x := range p.Z {
		b = append(b, x[:]...)
	}
	return b
}

// ParseStageProof decodes MarshalBinary's form, checking its length and
// that every point and scalar is canonical (ErrEncoding, naming it).
func ParseStageProof(b []byte) (*StageProof, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: stage proof of %d bytes", ErrEncoding, len(b))
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if uint64(len(b)-4) != n*(2*PointSize+2*ScalarSize)+(1+zFixed)*ScalarSize {
		return nil, fmt.Errorf("%w: stage proof of %d bytes for %d elements", ErrEncoding, len(b), n)
	}
	p := &StageProof{U: make([]Point, n), Chain: make([]Point, n), Z: make([]Scalar, zFixed+2*n)}
	off := 4
	for _, dst := range [][]Point{p.U, p.Chain} {
		for i := range dst {
			pt, err := ParsePoint(b[off : off+PointSize])
			if err != nil {
				return nil, fmt.Errorf("stage proof point %d: %w", i, err)
			}
			dst[i], off = pt, off+PointSize
		}
	}
	var err error
	if p.C, err = ParseScalar(b[off : off+ScalarSize]); err != nil {
		return nil, fmt.Errorf("stage proof challenge: %w", err)
	}
	off += ScalarSize
	for i := range p.Z {
		if p.Z[i], err = ParseScalar(b[off : off+ScalarSize]); err != nil {
			return nil, fmt.Errorf("stage proof response %d: %w", i, err)
		}
		off += ScalarSize
	}
	return p, nil
}

// VerifyStage checks the proof that out (with outP, nil without payloads)
// is a correct mix of in (with inP) by the stage whose weighted key is wkey
// (the identity for a first stage, which strips nothing), under the
// group's keys, the linkage key x, context and the list's index l. It
// returns nil when the proof holds, ErrInvalidStageProof when it does not
// (or K is the identity, or the lengths differ), and ErrEncoding naming
// the element for bytes that are not canonical. Everything it computes is
// public (variable time), in chunks over GOMAXPROCS goroutines.
func VerifyStage(keys StageKeys, wkey, x Point, context []byte, l int, in []Ciphertext, inP []ValueCiphertext, out []Ciphertext, outP []ValueCiphertext, proof *StageProof) error {
	st, err := newStageStatement(keys, wkey, x, context, l, in, inP, out, outP)
	if err != nil {
		return err
	}
	return st.verify(proof)
}

// stageStatement is one list's statement, decoded.
type stageStatement struct {
	n          int
	payload    bool
	k, v, w, x *ristretto255.Element
	a, b       []*ristretto255.Element // input pseudonyms (C1, C2)
	p, q       []*ristretto255.Element // input payloads
	a2, b2     []*ristretto255.Element // output pseudonyms
	p2, q2     []*ristretto255.Element // output payloads
	h          []*ristretto255.Element // h_1 … h_n
	h0         *ristretto255.Element
	seed       hash.Hash // everything public so far; U is added by seed1
}

func newStageStatement(keys StageKeys, wkey, x Point, context []byte, l int, in []Ciphertext, inP []ValueCiphertext, out []Ciphertext, outP []ValueCiphertext) (*stageStatement, error) {
	n := len(in)
	if len(out) != n {
		return nil, fmt.Errorf("%w: %d outputs for %d inputs", ErrInvalidStageProof, len(out), n)
	}
	payload := inP != nil || outP != nil
	if payload && (len(inP) != n || len(outP) != n) {
		return nil, fmt.Errorf("%w: %d input and %d output payloads for %d elements", ErrInvalidStageProof, len(inP), len(outP), n)
	}
	st := &stageStatement{n: n, payload: payload}
	var err error
	if st.k, err = keys.K.decode(); err != nil {
		return nil, fmt.Errorf("stage key K: %w", err)
	}
	if keys.K == (Point{}) {
		return nil, fmt.Errorf("%w: K is the identity (a zero exponent)", ErrInvalidStageProof)
	}
	if st.v, err = keys.V.decode(); err != nil {
		return nil, fmt.Errorf("stage key V: %w", err)
	}
	if st.w, err = wkey.decode(); err != nil {
		return nil, fmt.Errorf("weighted key: %w", err)
	}
	if st.x, err = decodeKey(x); err != nil {
		return nil, err
	}
	decodeAll := func(what string, cs [][CiphertextSize]byte) (c1, c2 []*ristretto255.Element, err error) {
		c1, c2 = make([]*ristretto255.Element, len(cs)), make([]*ristretto255.Element, len(cs))
		err = parallel(len(cs), func(lo, hi int) error {
			for i := lo; i < hi; i++ {
				var err error
				if c1[i], c2[i], err = decodePair(cs[i][:]); err != nil {
					return fmt.Errorf("%s %d: %w", what, i, err)
				}
			}
			return nil
		})
		return c1, c2, err
	}
	if st.a, st.b, err = decodeAll("input element", asArrays(in)); err != nil {
		return nil, err
	}
	if st.a2, st.b2, err = decodeAll("output element", asArrays(out)); err != nil {
		return nil, err
	}
	if st.payload {
		if st.p, st.q, err = decodeAll("input payload", asArrays(inP)); err != nil {
			return nil, err
		}
		if st.p2, st.q2, err = decodeAll("output payload", asArrays(outP)); err != nil {
			return nil, err
		}
	}
	gens := shuffleGenerators(n + 1)
	st.h0, st.h = gens[0], gens[1:n+1]
	h := sha512.New()
	writeLen(h, stageProofDomain)
	writeLen(h, context)
	writeUint(h, uint64(l))
	writeUint(h, uint64(n))
	for _, p := range []Point{keys.K, keys.V, wkey, x} {
		h.Write(p[:])
	}
	if st.payload {
		writeUint(h, 1)
	} else {
		writeUint(h, 0)
	}
	for i := range in {
		h.Write(in[i][:])
	}
	for i := range inP {
		h.Write(inP[i][:])
	}
	for i := range out {
		h.Write(out[i][:])
	}
	for i := range outP {
		h.Write(outP[i][:])
	}
	st.seed = h
	return st, nil
}

func asArrays[T ~[CiphertextSize]byte](cs []T) [][CiphertextSize]byte {
	out := make([][CiphertextSize]byte, len(cs))
	for i := range cs {
		out[i] = cs[i]
	}
	return out
}

// stageProofDomain separates stage-proof hashes from every other use of
// SHA-512 in fedstat.
var stageProofDomain = []byte("fedstat/linkage/stage-proof/v1")

// challenges returns seed1 = H(statement, U) and e_i = H(seed1, i).
func (st *stageStatement) challenges(u []Point) ([]byte, []*ristretto255.Scalar) {
	h := st.seed
	for i := range u {
		h.Write(u[i][:])
	}
	seed1 := h.Sum(nil)
	e := make([]*ristretto255.Scalar, st.n)
	_ = parallel(st.n, func(lo, hi int) error {
		var buf [8]byte
		for i := lo; i < hi; i++ {
			hh := sha512.New()
			hh.Write(seed1)
			hh.Write([]byte("e"))
			binary.BigEndian.PutUint64(buf[:], uint64(i))
			hh.Write(buf[:])
			e[i] = scalarFromUniform(hh.Sum(nil))
		}
		return nil
	})
	return seed1, e
}

// commitments are the Schnorr commitments T of the equations, in the order
// the challenge hashes them: T1 (Σ U), T2 (chain end), T3 (Σ e·U), T5, T6
// (pseudonyms), T7, T8 (payloads, identity without), T9 (K), T10 (V),
// T11 (V = k·W), then T4_1 … T4_n (the chain links).
type commitments struct {
	fixed [10]*ristretto255.Element
	links []*ristretto255.Element
}

// challenge is c = H(seed1, Ĉ, T).
func challenge(seed1 []byte, chain []Point, t *commitments) *ristretto255.Scalar {
	h := sha512.New()
	h.Write(seed1)
	h.Write([]byte("c"))
	for i := range chain {
		h.Write(chain[i][:])
	}
	for _, e := range t.fixed {
		h.Write(e.Encode(nil))
	}
	for _, e := range t.links {
		h.Write(e.Encode(nil))
	}
	return scalarFromUniform(h.Sum(nil))
}

// publicSums are the sums of the input under e: A1 = Σ e_i·C1_i,
// A2 = Σ e_i·C2_i, P = Σ e_i·P1_i and Q = Σ e_i·P2_i (identities without
// payloads).
func (st *stageStatement) publicSums(e []*ristretto255.Scalar) (a1, a2, p, q *ristretto255.Element) {
	a1, a2 = msm(e, st.a, false), msm(e, st.b, false)
	p, q = ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement()
	if st.payload {
		p, q = msm(e, st.p, false), msm(e, st.q, false)
	}
	return a1, a2, p, q
}

func (st *stageStatement) prove(k, v *ristretto255.Scalar, wit stageWitness) (StageProof, error) {
	n := st.n
	if len(wit.perm) != n && wit.matrix == nil {
		return StageProof{}, fmt.Errorf("%w: a witness of %d elements for %d", ErrInvalidArgument, len(wit.perm), n)
	}
	rr := newRandReader()
	defer clear(rr.buf[:])
	var secrets []*ristretto255.Scalar // zeroed at the end
	fresh := func() *ristretto255.Scalar { s := rr.scalar(); secrets = append(secrets, s); return s }
	defer func() {
		for _, s := range secrets {
			s.Zero()
		}
	}()
	// cols[i]: the outputs input i went to (column i of the permutation
	// matrix M, M_ji = 1 for j = σ(i)).
	cols := wit.matrix
	if cols == nil {
		cols = make([][]matrixEntry, n)
		for j, i := range wit.perm {
			cols[i] = append(cols[i], matrixEntry{j: j})
		}
	}
	proof := StageProof{U: make([]Point, n), Chain: make([]Point, n), Z: make([]Scalar, zFixed+2*n)}
	s := make([]*ristretto255.Scalar, n)
	for i := range s {
		s[i] = fresh()
	}
	committed := cols
	if wit.commit != nil {
		committed = wit.commit
	}
	_ = parallel(n, func(lo, hi int) error {
		e := ristretto255.NewIdentityElement()
		for i := lo; i < hi; i++ {
			e.ScalarBaseMult(s[i])
			for _, m := range committed[i] {
				if m.c == nil {
					e.Add(e, st.h[m.j])
				} else {
					e.Add(e, ristretto255.NewIdentityElement().ScalarMult(m.c, st.h[m.j]))
				}
			}
			proof.U[i] = encodePoint(e)
		}
		return nil
	})
	seed1, e := st.challenges(proof.U)
	ep := make([]*ristretto255.Scalar, n) // e' = M·e: e'_j = e_{π(j)}
	for j := range ep {
		ep[j] = ristretto255.NewScalar()
	}
	for i, col := range cols {
		for _, m := range col {
			if m.c == nil {
				ep[m.j].Add(ep[m.j], e[i])
			} else {
				ep[m.j].Add(ep[m.j], ristretto255.NewScalar().Multiply(m.c, e[i]))
			}
		}
	}
	secrets = append(secrets, ep...)
	// The chain, and R̂.
	// Ĉ_j = r̂_j·B + e'_j·Ĉ_{j−1} is P_j·h_0 + R̂_j·B in closed form, with
	// P_j = e'_1⋯e'_j and R̂_j = r̂_j + e'_j·R̂_{j−1}: the scalars in
	// order, the points in parallel.
	rh := make([]*ristretto255.Scalar, n)
	prefP, prefR := make([]*ristretto255.Scalar, n), make([]*ristretto255.Scalar, n)
	rHat, prod := ristretto255.NewScalar(), scalarFromUint64(1)
	secrets = append(secrets, rHat, prod)
	for j := range n {
		rh[j] = fresh()
		rHat.Multiply(rHat, ep[j]).Add(rHat, rh[j])
		prod.Multiply(prod, ep[j])
		prefP[j], prefR[j] = ristretto255.NewScalar().Set(prod), ristretto255.NewScalar().Set(rHat)
	}
	secrets = append(secrets, prefP...)
	secrets = append(secrets, prefR...)
	chain := make([]*ristretto255.Element, n+1)
	chain[0] = st.h0
	_ = parallel(n, func(lo, hi int) error {
		b := ristretto255.NewGeneratorElement()
		for j := lo; j < hi; j++ {
			chain[j+1] = ristretto255.NewIdentityElement().MultiScalarMult([]*ristretto255.Scalar{prefP[j], prefR[j]}, []*ristretto255.Element{st.h0, b})
			proof.Chain[j] = encodePoint(chain[j+1])
		}
		return nil
	})
	// The other witnesses.
	sBar, t, rTilde := ristretto255.NewScalar(), ristretto255.NewScalar(), ristretto255.NewScalar()
	secrets = append(secrets, sBar, t, rTilde)
	tmp := ristretto255.NewScalar()
	for i := range n {
		sBar.Add(sBar, s[i])
		t.Add(t, tmp.Multiply(e[i], s[i]))
	}
	if st.payload {
		for j := range n {
			rTilde.Add(rTilde, tmp.Multiply(ep[j], wit.rand[j]))
		}
	}
	tmp.Zero()
	// Masks, and the commitments.
	om := make([]*ristretto255.Scalar, zFixed+2*n)
	for i := range om {
		om[i] = fresh()
	}
	a1, a2, _, _ := st.publicSums(e)
	tc := st.linear(om, a1, a2, chain, true)
	c := challenge(seed1, proof.Chain, tc)
	proof.C = encodeScalar(c)
	wv := make([]*ristretto255.Scalar, zFixed+2*n)
	wv[zSBar], wv[zT], wv[zRHat], wv[zK], wv[zV], wv[zRTilde] = sBar, t, rHat, k, v, rTilde
	copy(wv[zFixed:], ep)
	copy(wv[zFixed+n:], rh)
	for i := range om {
		z := ristretto255.NewScalar().Multiply(c, wv[i])
		proof.Z[i] = encodeScalar(z.Add(z, om[i]))
		z.Zero()
	}
	return proof, nil
}

// linear evaluates the left-hand sides of the equations at the scalars z
// (a witness, masks or responses, laid out as StageProof.Z) over the
// statement's public points: the commitments T of the masks, or (for the
// verifier, before it subtracts c times the right-hand sides) of the
// responses. secret makes every multiplication constant time.
func (st *stageStatement) linear(z []*ristretto255.Scalar, a1, a2 *ristretto255.Element, chain []*ristretto255.Element, secret bool) *commitments {
	n := st.n
	zE, zR := z[zFixed:zFixed+n], z[zFixed+n:]
	base := ristretto255.NewGeneratorElement()
	mul := func(s *ristretto255.Scalar, p *ristretto255.Element) *ristretto255.Element {
		if secret {
			return ristretto255.NewIdentityElement().ScalarMult(s, p)
		}
		return ristretto255.NewIdentityElement().VarTimeMultiScalarMult([]*ristretto255.Scalar{s}, []*ristretto255.Element{p})
	}
	neg := func(s *ristretto255.Scalar) *ristretto255.Scalar { return ristretto255.NewScalar().Negate(s) }
	t := &commitments{links: make([]*ristretto255.Element, n)}
	t.fixed[0] = mul(z[zSBar], base)
	t.fixed[1] = mul(z[zRHat], base)
	t.fixed[2] = mul(z[zT], base)
	t.fixed[2].Add(t.fixed[2], msm(zE, st.h, secret))
	t.fixed[3] = msm(zE, st.a2, secret)
	t.fixed[3].Add(t.fixed[3], mul(neg(z[zK]), a1))
	t.fixed[4] = msm(zE, st.b2, secret)
	t.fixed[4].Add(t.fixed[4], mul(neg(z[zK]), a2)).Add(t.fixed[4], mul(z[zV], a1))
	t.fixed[5], t.fixed[6] = ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement()
	if st.payload {
		t.fixed[5] = msm(zE, st.p2, secret)
		t.fixed[5].Add(t.fixed[5], mul(neg(z[zRTilde]), base))
		t.fixed[6] = msm(zE, st.q2, secret)
		t.fixed[6].Add(t.fixed[6], mul(neg(z[zRTilde]), st.x))
	}
	t.fixed[7] = mul(z[zK], base)
	t.fixed[8] = mul(z[zV], base)
	t.fixed[9] = mul(z[zK], st.w)
	t.fixed[9].Add(t.fixed[9], mul(neg(z[zV]), base))
	_ = parallel(n, func(lo, hi int) error {
		for j := lo; j < hi; j++ {
			ss := []*ristretto255.Scalar{zR[j], zE[j]}
			ps := []*ristretto255.Element{base, chain[j]}
			if secret {
				t.links[j] = ristretto255.NewIdentityElement().MultiScalarMult(ss, ps)
			} else {
				t.links[j] = ristretto255.NewIdentityElement().VarTimeMultiScalarMult(ss, ps)
			}
		}
		return nil
	})
	return t
}

func (st *stageStatement) verify(proof *StageProof) error {
	n := st.n
	if len(proof.U) != n || len(proof.Chain) != n || len(proof.Z) != zFixed+2*n {
		return fmt.Errorf("%w: a proof for %d elements, the list has %d", ErrInvalidStageProof, len(proof.U), n)
	}
	c := ristretto255.NewScalar()
	if _, err := c.SetCanonicalBytes(proof.C[:]); err != nil {
		return fmt.Errorf("%w: proof challenge", ErrEncoding)
	}
	z := make([]*ristretto255.Scalar, len(proof.Z))
	for i := range z {
		var err error
		if z[i], err = proof.Z[i].decode(); err != nil {
			return fmt.Errorf("proof response %d: %w", i, err)
		}
	}
	u := make([]*ristretto255.Element, n)
	chain := make([]*ristretto255.Element, n+1)
	chain[0] = st.h0
	err := parallel(n, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			var err error
			if u[i], err = proof.U[i].decode(); err != nil {
				return fmt.Errorf("proof commitment %d: %w", i, err)
			}
			if chain[i+1], err = proof.Chain[i].decode(); err != nil {
				return fmt.Errorf("proof chain %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	seed1, e := st.challenges(proof.U)
	a1, a2, p, q := st.publicSums(e)
	t := st.linear(z, a1, a2, chain, false)
	// Subtract c times each right-hand side.
	nc := ristretto255.NewScalar().Negate(c)
	sub := func(dst, rhs *ristretto255.Element) {
		dst.Add(dst, ristretto255.NewIdentityElement().VarTimeMultiScalarMult([]*ristretto255.Scalar{nc}, []*ristretto255.Element{rhs}))
	}
	sumU, sumH := ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement()
	for i := range n {
		sumU.Add(sumU, u[i])
		sumH.Add(sumH, st.h[i])
	}
	sub(t.fixed[0], sumU.Subtract(sumU, sumH))
	prodE := scalarFromUint64(1)
	for i := range e {
		prodE.Multiply(prodE, e[i])
	}
	end := ristretto255.NewIdentityElement().VarTimeMultiScalarMult([]*ristretto255.Scalar{prodE}, []*ristretto255.Element{st.h0})
	sub(t.fixed[1], end.Subtract(chain[n], end))
	sub(t.fixed[2], msm(e, u, false))
	// T5, T6 have zero right-hand sides.
	if st.payload {
		sub(t.fixed[5], p)
		sub(t.fixed[6], q)
	}
	sub(t.fixed[7], st.k)
	sub(t.fixed[8], st.v)
	// T11's right-hand side is zero.
	_ = parallel(n, func(lo, hi int) error {
		for j := lo; j < hi; j++ {
			t.links[j].Add(t.links[j], ristretto255.NewIdentityElement().VarTimeMultiScalarMult([]*ristretto255.Scalar{nc}, []*ristretto255.Element{chain[j+1]}))
		}
		return nil
	})
	if challenge(seed1, proof.Chain, t).Equal(c) != 1 {
		return ErrInvalidStageProof
	}
	return nil
}

// msm returns Σ s_i·p_i, in chunks over GOMAXPROCS goroutines; in
// constant time when secret.
func msm(s []*ristretto255.Scalar, p []*ristretto255.Element, secret bool) *ristretto255.Element {
	const chunk = 32
	n := len(p)
	parts := (n + chunk - 1) / chunk
	sums := make([]*ristretto255.Element, parts)
	_ = parallel(parts, func(lo, hi int) error {
		for k := lo; k < hi; k++ {
			a, b := k*chunk, min((k+1)*chunk, n)
			if secret {
				sums[k] = ristretto255.NewIdentityElement().MultiScalarMult(s[a:b], p[a:b])
			} else {
				sums[k] = ristretto255.NewIdentityElement().VarTimeMultiScalarMult(s[a:b], p[a:b])
			}
		}
		return nil
	})
	out := ristretto255.NewIdentityElement()
	for _, e := range sums {
		out.Add(out, e)
	}
	return out
}

// shuffleGenerators returns at least n independent generators h_0, h_1, …:
// SHA-512 of a domain and the index, mapped to the group, so that nobody
// knows a discrete-log relation among them or to B. They are computed once
// and kept (about 10-20 µs each).
func shuffleGenerators(n int) []*ristretto255.Element {
	genMu.Lock()
	defer genMu.Unlock()
	for i := len(genCache); i < n; i++ {
		h := sha512.New()
		writeLen(h, []byte("fedstat/linkage/shuffle-generator/v1"))
		writeUint(h, uint64(i))
		genCache = append(genCache, ristretto255.NewIdentityElement().FromUniformBytes(h.Sum(nil)))
	}
	return genCache[:n]
}

var (
	genMu    sync.Mutex
	genCache []*ristretto255.Element
)
