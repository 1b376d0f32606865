package rangeproof

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/bits"
	"runtime"
	"sync"

	"github.com/gtank/ristretto255"
)

// PointSize is the size of a commitment, an encoded ristretto255 element.
const PointSize = 32

const scalarSize = 32

// maxBits is the most bits one aggregated proof covers; a partial with more
// slots gets one proof per chunk of slots (chunks), which keeps the
// generators few (computed once) and lets the chunks be proven and
// verified on every core.
const maxBits = 1 << 12

// ErrProof is the refusal of a range proof: malformed, made for another
// context, or of a value outside its range.
var ErrProof = errors.New("range proof refused")

// Range is a value's public range, both ends included.
type Range struct{ Lo, Hi int64 }

// Committed is a node's side of Prove: the commitments to its values (in
// the signed partial), the proof, and the limbs of the blindings (to be
// encrypted after the values, BlindingLimbs).
type Committed struct {
	// Commitments are the values' Pedersen commitments, PointSize bytes
	// each, in the values' order.
	Commitments []byte
	// Proof is the range proof of every value, one aggregated proof per
	// chunk of values, concatenated.
	Proof []byte
	// Limbs are Limbs limbs per value (value-major), each in [0, 2^LimbBits).
	Limbs []int64

	// values and gammas open the commitments, for the link (Linker).
	values []int64
	gammas []ristretto255.Scalar
}

// Prove commits to values and proves that each v is in [Lo, Lo + 2^w − 1]
// for its range, w = Width(range): that holds every v in [Lo, Hi], and
// nothing below Lo or at or above Lo + 2^w (less than twice the range's
// width above Lo). It refuses a value outside its range (an honest node
// clamps its partial to the plan's bounds first) or a range with Lo > Hi.
func Prove(values []int64, ranges []Range, context []byte) (*Committed, error) {
	if len(values) != len(ranges) {
		return nil, fmt.Errorf("%w: %d values, %d ranges", ErrProof, len(values), len(ranges))
	}
	if err := checkRanges(ranges); err != nil {
		return nil, err
	}
	for j, v := range values {
		if v < ranges[j].Lo || v > ranges[j].Hi {
			return nil, fmt.Errorf("%w: value %d is outside its range [%d, %d]", ErrProof, j, ranges[j].Lo, ranges[j].Hi)
		}
	}
	out, gammas := commitAll(values)
	starts := chunks(ranges)
	proofs := make([][]byte, len(starts)-1)
	err := eachChunk(len(proofs), func(c int) error {
		lo, hi := starts[c], starts[c+1]
		st, err := newStatement(context, c, out.Commitments[lo*PointSize:hi*PointSize], ranges[lo:hi])
		if err != nil {
			return err
		}
		proofs[c] = st.prove(values[lo:hi], gammas[lo:hi])
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, p := range proofs {
		out.Proof = append(out.Proof, p...)
	}
	return out, nil
}

// Commit commits to values without proving their ranges (a network whose
// members skip range proofs, by policy): the commitments and limbs let the
// release check the total all the same; Proof is empty.
func Commit(values []int64) *Committed {
	out, _ := commitAll(values)
	return out
}

func commitAll(values []int64) (*Committed, []ristretto255.Scalar) {
	gammas := make([]ristretto255.Scalar, len(values))
	out := &Committed{Commitments: make([]byte, 0, PointSize*len(values)), Limbs: make([]int64, 0, Limbs*len(values)),
		values: append([]int64(nil), values...), gammas: gammas}
	for j, v := range values {
		randomScalar(&gammas[j])
		out.Commitments = append(out.Commitments, commit(v, &gammas[j]).Bytes()...)
		out.Limbs = append(out.Limbs, BlindingLimbs(&gammas[j])...)
	}
	return out, gammas
}

// Verify checks proof, Prove's proof that the values committed to in
// commitments are each in [Lo, Lo + 2^w − 1] for its range, for context.
// Its error matches ErrProof and names the values or element at fault.
func Verify(commitments []byte, ranges []Range, context []byte, proof []byte) error {
	starts, offsets, err := layout(commitments, ranges, proof)
	if err != nil {
		return err
	}
	return eachChunk(len(starts)-1, func(c int) error {
		lo, hi := starts[c], starts[c+1]
		st, err := newStatement(context, c, commitments[lo*PointSize:hi*PointSize], ranges[lo:hi])
		if err == nil {
			err = st.verify(proof[offsets[c]:offsets[c+1]])
		}
		if err != nil {
			if hi-lo == 1 {
				return fmt.Errorf("%w (value %d)", err, lo)
			}
			return fmt.Errorf("%w (values %d to %d)", err, lo, hi-1)
		}
		return nil
	})
}

// Item is one proof to check, with Verify's arguments.
type Item struct {
	Commitments []byte
	Ranges      []Range
	Context     []byte
	Proof       []byte
}

// VerifyAll checks every item's proof at once: the chunks of all items in
// one multi-scalar multiplication, each with its own random weight, in
// which the generators they share count once (a decryptor checks every
// partial of a release). It returns one error per item, nil for each that
// verifies: when the batch fails, every item is checked alone to say which
// did not.
func VerifyAll(items []Item) []error {
	errs := make([]error, len(items))
	var acc accumulator
	batched := true
	for _, it := range items {
		starts, offsets, err := layout(it.Commitments, it.Ranges, it.Proof)
		for c := 0; err == nil && c < len(starts)-1; c++ {
			lo, hi := starts[c], starts[c+1]
			var st *statement
			if st, err = newStatement(it.Context, c, it.Commitments[lo*PointSize:hi*PointSize], it.Ranges[lo:hi]); err == nil {
				var w ristretto255.Scalar
				randomScalar(&w)
				err = st.accumulate(it.Proof[offsets[c]:offsets[c+1]], &acc, &w)
			}
		}
		if err != nil {
			batched = false
		}
	}
	if batched && acc.zero() {
		return errs
	}
	for i, it := range items {
		errs[i] = Verify(it.Commitments, it.Ranges, it.Context, it.Proof)
	}
	return errs
}

// layout checks the sizes of commitments and proof against ranges and
// returns where each chunk's values start (starts[c] to starts[c+1]−1) and
// where its proof starts in proof (offsets[c]).
func layout(commitments []byte, ranges []Range, proof []byte) (starts, offsets []int, err error) {
	if len(commitments) != PointSize*len(ranges) {
		return nil, nil, fmt.Errorf("%w: %d bytes of commitments for %d values", ErrProof, len(commitments), len(ranges))
	}
	if err := checkRanges(ranges); err != nil {
		return nil, nil, err
	}
	starts = chunks(ranges)
	offsets = make([]int, len(starts))
	for c := range len(starts) - 1 {
		offsets[c+1] = offsets[c] + proofSize(ranges[starts[c]:starts[c+1]])
	}
	if want := offsets[len(offsets)-1]; len(proof) != want {
		return nil, nil, fmt.Errorf("%w: %d bytes, a proof of %d values in these ranges takes %d", ErrProof, len(proof), len(ranges), want)
	}
	return starts, offsets, nil
}

// Width is the bits the proof of r takes, w = bits.Len64(Hi − Lo), at
// least 1: the value is proven in [Lo, Lo + 2^w − 1].
func Width(r Range) int { return max(1, bits.Len64(uint64(r.Hi)-uint64(r.Lo))) }

func checkRanges(ranges []Range) error {
	for j, r := range ranges {
		if r.Lo > r.Hi {
			return fmt.Errorf("%w: range %d is empty ([%d, %d])", ErrProof, j, r.Lo, r.Hi)
		}
	}
	return nil
}

// chunks splits ranges into runs of at most maxBits bits in all, in order:
// the proof of chunk c covers the values starts[c] to starts[c+1]−1.
func chunks(ranges []Range) (starts []int) {
	starts = append(starts, 0)
	bits := 0
	for j, r := range ranges {
		w := Width(r)
		if bits+w > maxBits {
			starts = append(starts, j)
			bits = 0
		}
		bits += w
	}
	if len(ranges) > 0 {
		starts = append(starts, len(ranges))
	}
	return starts
}

// proofBits is N, the length of the chunk's bit vector: its values' widths
// in all, rounded up to a power of two (the rest proves a zero).
func proofBits(ranges []Range) int {
	total := 0
	for _, r := range ranges {
		total += Width(r)
	}
	return 1 << bits.Len(uint(total-1))
}

// directBits is the largest N whose proof sends l and r themselves (2N
// scalars, at most 16 KiB) rather than the inner-product argument
// (2·log2(N) elements and two scalars), which costs several times more to
// make and check.
const directBits = 256

// proofSize is the size of the proof of a chunk: A, S, T1, T2, then tau_x,
// mu, t-hat, then either l and r (N scalars each, N <= directBits) or
// log2(N) pairs (L, R) and a, b.
func proofSize(ranges []Range) int {
	n := proofBits(ranges)
	if n <= directBits {
		return 4*PointSize + 3*scalarSize + 2*n*scalarSize
	}
	rounds := bits.Len(uint(n)) - 1
	return 4*PointSize + 3*scalarSize + 2*rounds*PointSize + 2*scalarSize
}

// eachChunk runs fn on chunks 0..k-1 on every core and returns the error of
// the lowest chunk that failed.
func eachChunk(k int, fn func(c int) error) error {
	errs := make([]error, k)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for c := range k {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[c] = fn(c)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// statement is one chunk's public input: the commitments to the values
// minus their lower ends (V − Lo·B), the widths of their bits, then, when
// the widths do not fill a power of two, a zero (the identity) proven in
// the remaining bits; and the transcript it starts from.
type statement struct {
	ranges []Range // the values' (not the padding's)
	widths []int
	sides  []*ristretto255.Element
	t      *transcript
}

// bits is N, the length of the statement's bit vector.
func (st *statement) bits() int {
	n := 0
	for _, w := range st.widths {
		n += w
	}
	return n
}

func newStatement(context []byte, chunk int, commitments []byte, ranges []Range) (*statement, error) {
	st := &statement{ranges: ranges, t: newTranscript()}
	st.t.appendBytes("context", context)
	st.t.appendUint("chunk", uint64(chunk))
	st.t.appendUint("values", uint64(len(ranges)))
	total := 0
	for j, r := range ranges {
		v := ristretto255.NewIdentityElement()
		if err := v.Decode(commitments[j*PointSize : (j+1)*PointSize]); err != nil {
			return nil, fmt.Errorf("%w: commitment %d is not a canonical group element", ErrProof, j)
		}
		st.t.appendUint("lo", uint64(r.Lo))
		st.t.appendUint("hi", uint64(r.Hi))
		st.t.appendBytes("V", commitments[j*PointSize:(j+1)*PointSize])
		// v − Lo is V − Lo·B, opened with the same γ.
		lo := ristretto255.NewIdentityElement().ScalarBaseMult(scalarInt(r.Lo))
		st.sides = append(st.sides, ristretto255.NewIdentityElement().Subtract(v, lo))
		st.widths = append(st.widths, Width(r))
		total += Width(r)
	}
	if pad := proofBits(ranges) - total; pad > 0 {
		st.sides = append(st.sides, ristretto255.NewIdentityElement())
		st.widths = append(st.widths, pad)
	}
	return st, nil
}

// commit is v·B + γ·B̃.
func commit(v int64, gamma *ristretto255.Scalar) *ristretto255.Element {
	return commitScalars(scalarInt(v), gamma)
}

// commitScalars is a·B + b·B̃ (constant time).
func commitScalars(a, b *ristretto255.Scalar) *ristretto255.Element {
	return ristretto255.NewIdentityElement().MultiScalarMult([]*ristretto255.Scalar{a, b}, []*ristretto255.Element{ristretto255.NewGeneratorElement(), gens(0).blind})
}

// transcript is the Fiat-Shamir transcript: SHA-512 over length-prefixed,
// labelled messages; each challenge is the hash so far, appended back.
type transcript struct{ h hash.Hash }

func newTranscript() *transcript {
	t := &transcript{h: sha512.New()}
	t.appendBytes("domain", []byte("fedstat/rangeproof/bulletproofs/v1"))
	return t
}

func (t *transcript) appendBytes(label string, b []byte) {
	var l [8]byte
	binary.BigEndian.PutUint64(l[:], uint64(len(label)))
	t.h.Write(l[:])
	t.h.Write([]byte(label))
	binary.BigEndian.PutUint64(l[:], uint64(len(b)))
	t.h.Write(l[:])
	t.h.Write(b)
}

func (t *transcript) appendUint(label string, x uint64) {
	t.appendBytes(label, binary.BigEndian.AppendUint64(nil, x))
}

func (t *transcript) appendPoint(label string, p *ristretto255.Element) {
	t.appendBytes(label, p.Bytes())
}

func (t *transcript) appendScalar(label string, s *ristretto255.Scalar) {
	t.appendBytes(label, s.Bytes())
}

// challenge is a nonzero scalar from the transcript so far.
func (t *transcript) challenge(label string) *ristretto255.Scalar {
	t.appendBytes("challenge", []byte(label))
	sum := t.h.Sum(nil)
	t.h.Write(sum)
	s := ristretto255.NewScalar().FromUniformBytes(sum)
	for s.Equal(ristretto255.NewScalar()) == 1 {
		// Probability 2^-252; a zero challenge has no inverse.
		next := sha512.Sum512(sum)
		sum = next[:]
		s.FromUniformBytes(sum)
	}
	return s
}

// scalarInt is v as a scalar modulo l (negative values wrap).
func scalarInt(v int64) *ristretto255.Scalar {
	if v < 0 {
		return ristretto255.NewScalar().Negate(scalarUint(uint64(-(v + 1)) + 1))
	}
	return scalarUint(uint64(v))
}

func scalarUint(u uint64) *ristretto255.Scalar {
	var b [32]byte
	binary.LittleEndian.PutUint64(b[:], u)
	s, err := ristretto255.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic(err) // below 2^64 < l: always canonical
	}
	return s
}

func randomScalar(s *ristretto255.Scalar) {
	var b [64]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail (Go 1.24)
	}
	s.FromUniformBytes(b[:])
}

// generators are the fixed group elements: B̃ (blinding), Q (the
// inner-product argument's) and G_i, H_i, each SHA-512 of a label mapped
// to the group, so that nobody knows a discrete-log relation among them
// or to B.
type generators struct {
	blind, q *ristretto255.Element
	g, h     []*ristretto255.Element
}

var (
	genMu    sync.Mutex
	genCache = &generators{blind: hashToGroup("blinding", 0), q: hashToGroup("inner-product", 0)}
)

// gens returns the generators with at least n G's and H's. They are
// shared: callers never write to (or append to) the slices.
func gens(n int) *generators {
	genMu.Lock()
	defer genMu.Unlock()
	if len(genCache.g) < n {
		g := &generators{blind: genCache.blind, q: genCache.q, g: genCache.g[:len(genCache.g):len(genCache.g)], h: genCache.h[:len(genCache.h):len(genCache.h)]}
		for i := len(g.g); i < n; i++ {
			g.g = append(g.g, hashToGroup("G", uint64(i)))
			g.h = append(g.h, hashToGroup("H", uint64(i)))
		}
		genCache = g
	}
	out := *genCache
	out.g, out.h = out.g[:len(out.g):len(out.g)], out.h[:len(out.h):len(out.h)]
	return &out
}

func hashToGroup(label string, i uint64) *ristretto255.Element {
	h := sha512.New()
	h.Write([]byte("fedstat/rangeproof/generator/v1\x00" + label + "\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, i))
	return ristretto255.NewIdentityElement().FromUniformBytes(h.Sum(nil))
}
