package rangeproof

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"slices"
	"sync"

	"github.com/gtank/ristretto255"
)

// The link of a partial's committed values to the slots of the ciphertexts
// that encrypt them (docs/crypto.md, "The link"). The proof of encryption
// of a ciphertext (crypto/homomorphic, EncryptLinked) answers, in each slot
// j, a_j = y_j + c_j*m_j modulo t, with y_j the slot of its mask and c_j
// the slot of its challenge. For each slot j that holds a value v_j with
// commitment V_j = v_j*B + gamma_j*B~, the prover draws y_j as an integer
// in [t*2^40, t*2^40 + t*2^104) (so that y_j mod t, the mask's slot, is
// uniform), commits Y_j = y_j*B + rho_j*B~ before the challenge (bound into
// it), and answers z_j = y_j + c_j*v_j over the integers and tau_j = rho_j
// + c_j*gamma_j. The verifier checks z_j = a_j (mod t) and z_j*B +
// tau_j*B~ = Y_j + c_j*V_j. Since z_j, c_j*v_j (v_j proven small) and the
// group order are such that the second equation holds over the integers
// (which takes v_j's range proof: without one the link proves nothing),
// a member whose slot holds m_j != v_j passes only if c_j*(m_j - v_j)
// equals a difference it fixed before the challenge, modulo t: with
// probability about 1/t per attempt.

const (
	// linkZBytes is the size of an answer z_j, below t*2^105 < 2^145.
	linkZBytes = 19
	// LinkValueSize is the size of the link of one value: Y_j, z_j, tau_j.
	LinkValueSize = PointSize + linkZBytes + scalarSize
	// maskShift and maskBits place y_j in [t*2^maskShift, t*2^maskShift +
	// t*2^maskBits): above |c_j*v_j| < t^2/2 < t*2^40 (an encrypted value
	// is below t/2), and 2^64 times wider than that.
	maskShift, maskBits = 40, 104
)

// ErrLink is the refusal of a link: malformed, or a value slot of a
// ciphertext that does not hold the value committed to.
var ErrLink = errors.New("link of the committed values to the ciphertexts refused")

// paddingSize is the size of a ciphertext's padding record: Y_P, tau_P.
const paddingSize = PointSize + scalarSize

// linkKind is what a link covers: the first n slots of a partial's
// ciphertexts, n the number of its commitments, in a partial of encoded(n)
// slots (after which come the padding slots), its bound bytes under
// domain. A partial's link (valueLink) covers its d values, the limbs
// after them unlinked; the link of its limbs, made when asked (limbLink,
// limbs.go), covers the values and the limbs, 11d slots.
type linkKind struct {
	domain  string
	encoded func(n int) int
	// name names commitment j of n in an error.
	name func(n, j int) string
}

var (
	valueLink = linkKind{"fedstat/rangeproof/link/v1\x00", EncodedLen, func(_, j int) string { return fmt.Sprintf("value %d", j) }}
	limbLink  = linkKind{"fedstat/rangeproof/limb-link/v1\x00", func(n int) int { return n }, func(n, j int) string {
		if d := n / (1 + Limbs); j >= d {
			return fmt.Sprintf("limb %d of value %d", (j-d)%Limbs, (j-d)/Limbs)
		}
		return fmt.Sprintf("value %d", j)
	}}
)

// cts is how many ciphertexts of slots slots hold a partial whose link
// covers n commitments.
func (k linkKind) cts(n, slots int) int { return (k.encoded(n) + slots - 1) / slots }

// size is the size of the link of n commitments: LinkValueSize each, then
// a padding record per ciphertext.
func (k linkKind) size(n, slots int) int { return n*LinkValueSize + k.cts(n, slots)*paddingSize }

// paddingIn is the first padding slot of ciphertext i (slots when it has
// none).
func (k linkKind) paddingIn(n, slots, i int) int {
	return min(slots, max(0, k.encoded(n)-i*slots))
}

// numCiphertexts is how many ciphertexts of slots slots hold d values and
// their limbs.
func numCiphertexts(d, slots int) int { return valueLink.cts(d, slots) }

// LinkSize is the size of the link of d values in ciphertexts of slots
// slots: LinkValueSize per value, then a padding record per ciphertext.
func LinkSize(d, slots int) int { return valueLink.size(d, slots) }

// The padding slots (after the values and their limbs) must hold zero. A
// ciphertext's are linked together: the prover commits to Y_P = S*B +
// rho_P*B~ with S = Σ_k w_k*y_k over its padding slots k (w_k public
// 64-bit weights, paddingWeights), bound into the challenge with the
// values' commitments, and answers tau_P = rho_P; the verifier requires
// (Σ_k w_k*a_k)*B + tau_P*B~ = Y_P, a_k the answer's slots. With zero in
// every padding slot a_k = y_k; a member with m_k != 0 passes only if
// Σ_k w_k*((y_k + c_k*m_k) mod t - y_k) hits a value it fixed before the
// challenge, about 1/t per attempt as for a value.

var (
	padWeightsMu sync.Mutex
	padWeights   []uint64
)

// paddingWeights are the weights w_k of the first n slots (SHA-512 in
// counter mode, 64 bits each; any weights would do for the argument, which
// rests on the challenge, but fixed pseudo-random ones keep the slots
// apart).
func paddingWeights(n int) []uint64 {
	padWeightsMu.Lock()
	defer padWeightsMu.Unlock()
	for k := len(padWeights); k < n; k += 8 {
		h := sha512.Sum512(binary.BigEndian.AppendUint64([]byte("fedstat/rangeproof/padding-weights/v1\x00"), uint64(k/8)))
		for q := range 8 {
			padWeights = append(padWeights, binary.LittleEndian.Uint64(h[8*q:]))
		}
	}
	return padWeights[:n:n]
}

// paddingIn is the first padding slot of ciphertext i of a partial of d
// values (slots when it has none).
func paddingIn(d, slots, i int) int { return valueLink.paddingIn(d, slots, i) }

// paddingSum is Σ_k w_k*x_k over the slots k from first on (each x_k below
// 2^64, fewer than 2^60 slots: the sum is below 2^188), as a scalar.
func paddingSum(x []uint64, first int) *ristretto255.Scalar {
	w := paddingWeights(len(x))
	var lo, mid, hi uint64 // the sum, 192 bits
	for k := first; k < len(x); k++ {
		ph, pl := bits.Mul64(w[k], x[k])
		var c uint64
		lo, c = bits.Add64(lo, pl, 0)
		mid, c = bits.Add64(mid, ph, c)
		hi += c
	}
	var le [64]byte
	binary.LittleEndian.PutUint64(le[0:], lo)
	binary.LittleEndian.PutUint64(le[8:], mid)
	binary.LittleEndian.PutUint64(le[16:], hi)
	s, err := ristretto255.NewScalar().SetUniformBytes(le[:])
	if err != nil {
		panic(err)
	}
	return s
}

// Linker makes the link of the values of c, encrypted in ciphertexts of
// slots slots each under plaintext modulus t (after them come their
// blindings' limbs, which it does not link). It is a
// homomorphic.SlotLink: Mask and Answer for each ciphertext, then Link.
func (c *Committed) Linker(slots int, t uint64) *Linker {
	return newLinker(valueLink, c, slots, t)
}

func newLinker(kind linkKind, c *Committed, slots int, t uint64) *Linker {
	return &Linker{kind: kind, c: c, slots: slots, t: t, state: map[int]*linkRound{}, out: make([]byte, kind.size(len(c.values), slots))}
}

// Linker: see Committed.Linker.
type Linker struct {
	kind  linkKind
	c     *Committed
	slots int
	t     uint64
	mu    sync.Mutex
	state map[int]*linkRound
	out   []byte
}

type linkRound struct {
	y      []*big.Int
	rho    []ristretto255.Scalar
	ycom   [][]byte
	padRho ristretto255.Scalar
	padCom []byte
}

// valuesIn is the range of values in ciphertext i.
func valuesIn(d, slots, i int) (lo, hi int) {
	return min(d, i*slots), min(d, (i+1)*slots)
}

// Mask draws ciphertext i's round of masks: for its value slots y_j as
// above, for the others uniform modulo t; it returns their slots modulo t
// and the bytes bound into the proof of encryption (LinkBound).
func (l *Linker) Mask(i int) ([]uint64, []byte, error) {
	lo, hi := valuesIn(len(l.c.values), l.slots, i)
	tb := new(big.Int).SetUint64(l.t)
	base := new(big.Int).Lsh(tb, maskShift)
	width := new(big.Int).Lsh(tb, maskBits)
	r := &linkRound{y: make([]*big.Int, hi-lo), rho: make([]ristretto255.Scalar, hi-lo), ycom: make([][]byte, hi-lo)}
	slots := make([]uint64, l.slots)
	for k := range hi - lo {
		u, err := rand.Int(rand.Reader, width)
		if err != nil {
			return nil, nil, err
		}
		r.y[k] = u.Add(u, base)
		slots[k] = new(big.Int).Mod(r.y[k], tb).Uint64()
		randomScalar(&r.rho[k])
		r.ycom[k] = commitScalars(bigScalar(r.y[k]), &r.rho[k]).Bytes()
	}
	// The other slots uniform modulo t: 64 random bits each, the top of
	// the 64-bit range (less than 2^-23 of it) drawn again.
	buf := make([]byte, 8*(l.slots-(hi-lo)))
	if _, err := rand.Read(buf); err != nil {
		return nil, nil, err
	}
	limit := ^uint64(0) - ^uint64(0)%l.t
	for k := hi - lo; k < l.slots; k++ {
		v := binary.LittleEndian.Uint64(buf[8*(k-(hi-lo)):])
		for v >= limit {
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return nil, nil, err
			}
			v = binary.LittleEndian.Uint64(b[:])
		}
		slots[k] = v % l.t
	}
	randomScalar(&r.padRho)
	r.padCom = commitScalars(paddingSum(slots, l.kind.paddingIn(len(l.c.values), l.slots, i)), &r.padRho).Bytes()
	l.mu.Lock()
	l.state[i] = r
	l.mu.Unlock()
	return slots, l.kind.bound(l.c.Commitments[lo*PointSize:hi*PointSize], r.ycom, r.padCom), nil
}

// Answer opens ciphertext i's commitments of its accepted round for the
// challenge's slots c.
func (l *Linker) Answer(i int, c []uint64) error {
	lo, hi := valuesIn(len(l.c.values), l.slots, i)
	l.mu.Lock()
	r := l.state[i]
	delete(l.state, i)
	l.mu.Unlock()
	if r == nil || len(c) < hi-lo {
		return fmt.Errorf("rangeproof: link: no round of ciphertext %d", i)
	}
	for k := range hi - lo {
		j := lo + k
		cj := new(big.Int).SetUint64(c[k])
		z := new(big.Int).Mul(cj, big.NewInt(l.c.values[j]))
		z.Add(z, r.y[k])
		if z.Sign() < 0 || z.BitLen() > 8*linkZBytes {
			return fmt.Errorf("rangeproof: link: value %d is too large to link", j)
		}
		tau := ristretto255.NewScalar().Multiply(bigScalar(cj), &l.c.gammas[j])
		tau.Add(tau, &r.rho[k])
		o := l.out[j*LinkValueSize:]
		copy(o, r.ycom[k])
		z.FillBytes(o[PointSize : PointSize+linkZBytes])
		copy(o[PointSize+linkZBytes:], tau.Bytes())
	}
	o := l.out[len(l.c.values)*LinkValueSize+i*paddingSize:]
	copy(o, r.padCom)
	copy(o[PointSize:], r.padRho.Bytes())
	return nil
}

// Link is the link of every value, once every ciphertext is answered.
func (l *Linker) Link() []byte { return l.out }

// bound is what the link of a ciphertext binds into its proof of
// encryption: its values' commitments and the commitments to its masks.
func (k linkKind) bound(commitments []byte, ycom [][]byte, padCom []byte) []byte {
	out := append([]byte(k.domain), commitments...)
	for _, y := range ycom {
		out = append(out, y...)
	}
	return append(out, padCom...)
}

// LinkBound is what the link of ciphertext i bound into its proof of
// encryption, from the partial's commitments (d values) and link.
func LinkBound(commitments, link []byte, slots, i int) ([]byte, error) {
	return valueLink.linkBound(commitments, link, slots, i)
}

func (k linkKind) linkBound(commitments, link []byte, slots, i int) ([]byte, error) {
	d, err := k.layout(commitments, link, slots, i)
	if err != nil {
		return nil, err
	}
	lo, hi := valuesIn(d, slots, i)
	ycom := make([][]byte, 0, hi-lo)
	for j := lo; j < hi; j++ {
		ycom = append(ycom, link[j*LinkValueSize:j*LinkValueSize+PointSize])
	}
	pad := link[d*LinkValueSize+i*paddingSize:]
	return k.bound(commitments[lo*PointSize:hi*PointSize], ycom, pad[:PointSize]), nil
}

// layout checks the sizes of commitments and link and the index i of a
// ciphertext, and returns the number of values.
func (k linkKind) layout(commitments, link []byte, slots, i int) (int, error) {
	d := len(commitments) / PointSize
	if len(commitments) != d*PointSize || slots < 1 || len(link) != k.size(d, slots) {
		return 0, fmt.Errorf("%w: a link of %d bytes for %d commitments", ErrLink, len(link), d)
	}
	if i < 0 || i >= k.cts(d, slots) {
		return 0, fmt.Errorf("%w: no ciphertext %d", ErrLink, i)
	}
	return d, nil
}

// CheckLink checks the link of ciphertext i (slots slots, plaintext
// modulus t) against the slots of its proof of encryption's challenge and
// answer (homomorphic.VerifyEncryptionLinked): that every value slot of
// the ciphertext holds the value its commitment opens to. Its error
// matches ErrLink and names the first value that fails.
func CheckLink(commitments, link []byte, slots int, t uint64, i int, challenge, answer []uint64) error {
	return valueLink.check(commitments, link, slots, t, i, challenge, answer)
}

func (lk linkKind) check(commitments, link []byte, slots int, t uint64, i int, challenge, answer []uint64) error {
	d, err := lk.layout(commitments, link, slots, i)
	if err != nil {
		return err
	}
	lo, hi := valuesIn(d, slots, i)
	if len(challenge) != slots || len(answer) != slots {
		return fmt.Errorf("%w: %d challenge and %d answer slots for %d", ErrLink, len(challenge), len(answer), slots)
	}
	// The padding slots hold zero: (Σ_k w_k*a_k)*B + tau_P*B~ = Y_P.
	pad := link[d*LinkValueSize+i*paddingSize:]
	var padCom ristretto255.Element
	var padTau ristretto255.Scalar
	if padCom.Decode(pad[:PointSize]) != nil || padTau.Decode(pad[PointSize:paddingSize]) != nil {
		return fmt.Errorf("%w: the padding record of ciphertext %d is not canonical", ErrLink, i)
	}
	for _, a := range answer {
		if a >= t {
			return fmt.Errorf("%w: an answer slot of ciphertext %d is not below t", ErrLink, i)
		}
	}
	first := lk.paddingIn(d, slots, i)
	padOK := ristretto255.NewIdentityElement().VarTimeMultiScalarMult(
		[]*ristretto255.Scalar{paddingSum(answer, first), &padTau},
		[]*ristretto255.Element{ristretto255.NewGeneratorElement(), gens(0).blind}).Equal(&padCom) == 1
	if !padOK {
		return fmt.Errorf("%w: ciphertext %d has something other than zero in its slots after the values and their limbs (from slot %d)", ErrLink, i, first)
	}
	// Every value at once, each equation with a random weight a_j:
	// Σ a_j·z_j·B + Σ a_j·τ_j·B~ − Σ a_j·c_j·V_j − Σ a_j·Y_j = 0; when it
	// fails, value by value to name the first.
	tb := new(big.Int).SetUint64(t)
	n := hi - lo
	zs := make([]ristretto255.Scalar, n)
	taus := make([]ristretto255.Scalar, n)
	cs := make([]ristretto255.Scalar, n)
	vs := make([]ristretto255.Element, n)
	ys := make([]ristretto255.Element, n)
	for k := range n {
		j := lo + k
		o := link[j*LinkValueSize:]
		if err := vs[k].Decode(commitments[j*PointSize : (j+1)*PointSize]); err != nil {
			return fmt.Errorf("%w: commitment %d is not canonical", ErrLink, j)
		}
		if err := ys[k].Decode(o[:PointSize]); err != nil {
			return fmt.Errorf("%w: the link of value %d is not canonical", ErrLink, j)
		}
		if err := taus[k].Decode(o[PointSize+linkZBytes : LinkValueSize]); err != nil {
			return fmt.Errorf("%w: the link of value %d is not canonical", ErrLink, j)
		}
		z := new(big.Int).SetBytes(o[PointSize : PointSize+linkZBytes])
		if new(big.Int).Mod(z, tb).Uint64() != answer[k] || challenge[k] >= t {
			return fmt.Errorf("%w: ciphertext %d does not encrypt the value committed to in slot %d (%s)", ErrLink, i, k, lk.name(d, j))
		}
		zs[k].Set(bigScalar(z))
		cs[k].Set(bigScalar(new(big.Int).SetUint64(challenge[k])))
	}
	holds := func(ks []int) bool {
		var sz, st ristretto255.Scalar
		scalars := []*ristretto255.Scalar{&sz, &st}
		points := []*ristretto255.Element{ristretto255.NewGeneratorElement(), gens(0).blind}
		for _, k := range ks {
			a := ristretto255.NewScalar()
			if len(ks) > 1 {
				randomScalar(a)
			} else {
				a.Set(scalarUint(1))
			}
			var tmp ristretto255.Scalar
			sz.Add(&sz, tmp.Multiply(a, &zs[k]))
			st.Add(&st, tmp.Multiply(a, &taus[k]))
			ac := ristretto255.NewScalar().Multiply(a, &cs[k])
			scalars = append(scalars, ac.Negate(ac), ristretto255.NewScalar().Negate(a))
			points = append(points, &vs[k], &ys[k])
		}
		return msm(scalars, points, false).Equal(ristretto255.NewIdentityElement()) == 1
	}
	all := make([]int, n)
	for k := range all {
		all[k] = k
	}
	if n == 0 || holds(all) {
		return nil
	}
	for k := range n {
		if !holds([]int{k}) {
			return fmt.Errorf("%w: ciphertext %d does not encrypt the value committed to in slot %d (%s)", ErrLink, i, k, lk.name(d, lo+k))
		}
	}
	return fmt.Errorf("%w: ciphertext %d: the values' links do not verify together", ErrLink, i)
}

// bigScalar is x (0 <= x < 2^252) as a scalar.
func bigScalar(x *big.Int) *ristretto255.Scalar {
	var b [64]byte
	le := x.FillBytes(make([]byte, 32))
	slices.Reverse(le)
	copy(b[:], le)
	s, err := ristretto255.NewScalar().SetUniformBytes(b[:])
	if err != nil {
		panic(err)
	}
	return s
}
