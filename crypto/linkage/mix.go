package linkage

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/gtank/ristretto255"
)

// hashTag separates HashIdentifier from every other use of SHA-512 over
// the same bytes.
const hashTag = "fedstat/linkage/hash-to-group/v1"

// HashIdentifier maps an identifier to a group element: SHA-512 over
// len(tag)‖tag‖len(domain)‖domain‖len(id)‖id (lengths as 8-byte big-endian
// integers, tag a fixed string of this package), then the ristretto255
// one-way map of the 64-byte digest (RFC 9496, section 4.3.4). The length
// prefixes make the encoding injective, so distinct (domain, id) pairs hash
// independently. domain is the identifier system (e.g. the catalogue's
// identifier_system URN); a node-local domain gives points that match
// nothing elsewhere.
//
// The result is a public function of the identifier: anyone can hash a
// candidate id and compare, so a hashed identifier must never be revealed
// unencrypted (see the package doc). Safe for concurrent use.
func HashIdentifier(domain, id string) Point {
	h := sha512.New()
	var n [8]byte
	for _, s := range []string{hashTag, domain, id} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	e := ristretto255.NewIdentityElement()
	if _, err := e.SetUniformBytes(h.Sum(nil)); err != nil {
		panic("linkage: SetUniformBytes: " + err.Error()) // 64 bytes: cannot happen
	}
	return encodePoint(e)
}

// EncryptPoints encrypts each ms[i] under x with a fresh random r:
// (r·B, ms[i] + r·X), in the order of ms. It checks that x is canonical and
// not the identity and that every ms[i] is canonical (the error names the
// first bad index; nothing is returned then). The identity is a valid
// message (padding). Work is split over GOMAXPROCS goroutines; r is secret
// and multiplied in constant time.
func EncryptPoints(x Point, ms []Point) ([]Ciphertext, error) {
	xe, err := decodeKey(x)
	if err != nil {
		return nil, err
	}
	out := make([]Ciphertext, len(ms))
	err = parallel(len(ms), func(lo, hi int) error {
		rr := newRandReader()
		defer clear(rr.buf[:])
		c1, c2 := ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement()
		for i := lo; i < hi; i++ {
			m, err := ms[i].decode()
			if err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
			r := rr.scalar()
			c1.ScalarBaseMult(r)
			c2.ScalarMult(r, xe).Add(c2, m)
			r.Zero()
			putPair(out[i][:], c1, c2)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Pseudonym returns C2 of a ciphertext that has been through every stage of
// the mix with every stage's share taken off: then C2 = K·M with K the
// product of the stages' exponents, the pseudonym of M for this query and
// group (when a share was kept back, Finish gives the pseudonyms instead). It does not check anything: on a
// ciphertext from Stage, C2 is canonical; the identity (the zero Point)
// marks padding.
func Pseudonym(c Ciphertext) Point { return c.C2() }

// Stage applies one stage of the exponentiation mix, in place, to lists
// that share the mixing exponent k (one group of one query): every
// pseudonym ciphertext (C1, C2) becomes
//
//	(k·C1, k·C2 − w·(k·C1))
//
// (exponentiate by k, then strip this member's Lagrange-weighted share w of
// the key), every payload (C1, C2) is re-randomised under x:
// (C1 + r·B, C2 + r·X) with a fresh r, and then each list is shuffled with a
// uniformly random permutation from crypto/rand, its payloads (if any) with
// the same permutation. Each stage must draw a fresh k (RandomScalar) per
// query and group and use it for all lists of that group, and no other.
//
// Shapes: payloads is nil, or has one entry per list, each nil or as long
// as its list.
//
// Checks, all before anything is written: k is canonical and nonzero, w is
// canonical, x is a canonical non-identity point, the shapes above, and
// every C1 and C2 of every pseudonym and payload ciphertext is canonical. On
// any failure it returns an error that names the list (and "payload") and
// index of the first bad element, and leaves lists and payloads exactly as
// they were. On success every element has been transformed and shuffled.
//
// It assumes (and cannot check) that w is this member's share weighted for
// the agreed stage set, and that the lists are the ones the coordinator
// forwarded. Secret scalars (k, w, r) are used only in constant-time
// multiplications. Work is split over GOMAXPROCS goroutines; the caller must
// not touch lists or payloads concurrently.
func Stage(k, w Scalar, x Point, lists [][]Ciphertext, payloads [][]ValueCiphertext) error {
	_, err := stage(k, w, x, lists, payloads, false)
	return err
}

// stageWitness is what a stage did to one list, kept only to prove it
// (StageProved): perm[j] is the input index of output j, and rand[j] the
// payload randomness output j was re-randomised with (nil without
// payloads). Both are secret.
type stageWitness struct {
	perm []int
	rand []*ristretto255.Scalar
	// matrix, when set, replaces perm in the permutation commitment and
	// the challenges: matrix[i] lists the outputs j with M_ji ≠ 0 and
	// their coefficients. Only the tests set it, to play a stage whose
	// output is not a permutation of its input.
	matrix [][]matrixEntry
	// commit, when set, is the matrix committed to instead (tests only).
	commit [][]matrixEntry
}

type matrixEntry struct {
	j int
	c *ristretto255.Scalar
}

// stage is Stage; with keep it also returns each list's witness.
func stage(k, w Scalar, x Point, lists [][]Ciphertext, payloads [][]ValueCiphertext, keep bool) ([]stageWitness, error) {
	ks, err := k.decode()
	if err != nil {
		return nil, fmt.Errorf("mixing exponent k: %w", err)
	}
	if ks.Equal(ristretto255.NewScalar()) == 1 {
		return nil, fmt.Errorf("%w: mixing exponent k is zero", ErrInvalidArgument)
	}
	ws, err := w.decode()
	if err != nil {
		return nil, fmt.Errorf("weighted share w: %w", err)
	}
	xe, err := decodeKey(x)
	if err != nil {
		return nil, err
	}
	if payloads != nil && len(payloads) != len(lists) {
		return nil, fmt.Errorf("%w: %d payload lists for %d lists", ErrInvalidArgument, len(payloads), len(lists))
	}
	for l := range payloads {
		if payloads[l] != nil && len(payloads[l]) != len(lists[l]) {
			return nil, fmt.Errorf("%w: list %d has %d elements and %d payloads", ErrInvalidArgument, l, len(lists[l]), len(payloads[l]))
		}
	}
	// −k·w, so that C2' = k·C2 + (−k·w)·C1 is one two-point multiplication.
	nkw := ristretto255.NewScalar().Multiply(ks, ws)
	nkw.Negate(nkw)
	defer nkw.Zero()
	defer ks.Zero()

	// Phase 1: compute into fresh buffers; the inputs stay untouched.
	type ref struct{ list, index int }
	var refs []ref // flattened (list, index) of every element
	for l := range lists {
		for i := range lists[l] {
			refs = append(refs, ref{l, i})
		}
	}
	out := make([][]Ciphertext, len(lists))
	outP := make([][]ValueCiphertext, len(lists))
	var wit []stageWitness
	if keep {
		wit = make([]stageWitness, len(lists))
	}
	for l := range lists {
		out[l] = make([]Ciphertext, len(lists[l]))
		if payloads != nil && payloads[l] != nil {
			outP[l] = make([]ValueCiphertext, len(lists[l]))
			if keep {
				wit[l].rand = make([]*ristretto255.Scalar, len(lists[l]))
			}
		}
	}
	err = parallel(len(refs), func(lo, hi int) error {
		rr := newRandReader()
		defer clear(rr.buf[:])
		c1k := ristretto255.NewIdentityElement()
		c2k := ristretto255.NewIdentityElement()
		rb, rx := ristretto255.NewIdentityElement(), ristretto255.NewIdentityElement()
		sc := []*ristretto255.Scalar{ks, nkw}
		pts := make([]*ristretto255.Element, 2)
		for _, at := range refs[lo:hi] {
			l, i := at.list, at.index
			c1, c2, err := decodePair(lists[l][i][:])
			if err != nil {
				return fmt.Errorf("list %d element %d: %w", l, i, err)
			}
			c1k.ScalarMult(ks, c1)
			pts[0], pts[1] = c2, c1
			c2k.MultiScalarMult(sc, pts)
			putPair(out[l][i][:], c1k, c2k)
			if outP[l] == nil {
				continue
			}
			p1, p2, err := decodePair(payloads[l][i][:])
			if err != nil {
				return fmt.Errorf("list %d payload %d: %w", l, i, err)
			}
			r := rr.scalar()
			rb.ScalarBaseMult(r)
			rx.ScalarMult(r, xe)
			if keep {
				wit[l].rand[i] = r
			} else {
				r.Zero()
			}
			putPair(outP[l][i][:], p1.Add(p1, rb), p2.Add(p2, rx))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Phase 2 (cannot fail): shuffle and write back.
	rr := newRandReader()
	defer clear(rr.buf[:])
	for l := range lists {
		var perm []int
		if keep {
			perm = make([]int, len(lists[l]))
			for i := range perm {
				perm[i] = i
			}
		}
		shuffle(rr, out[l], outP[l], perm)
		copy(lists[l], out[l])
		if outP[l] != nil {
			copy(payloads[l], outP[l])
		}
		if keep {
			wit[l].perm = perm
			if r := wit[l].rand; r != nil {
				byOut := make([]*ristretto255.Scalar, len(r))
				for j, i := range perm {
					byOut[j] = r[i]
				}
				wit[l].rand = byOut
			}
		}
	}
	return wit, nil
}

// shuffle permutes cs uniformly at random (Fisher–Yates with unbiased
// bounded draws from crypto/rand) and ps and idx, if not nil, with the same
// permutation.
func shuffle(rr *randReader, cs []Ciphertext, ps []ValueCiphertext, idx []int) {
	for i := len(cs) - 1; i > 0; i-- {
		j := uniform(rr, uint64(i)+1)
		cs[i], cs[j] = cs[j], cs[i]
		if ps != nil {
			ps[i], ps[j] = ps[j], ps[i]
		}
		if idx != nil {
			idx[i], idx[j] = idx[j], idx[i]
		}
	}
}

// uniform returns an unbiased draw from [0, n), n > 0 (Lemire's
// multiply-and-reject method).
func uniform(rr *randReader, n uint64) uint64 {
	hi, lo := bits.Mul64(binary.LittleEndian.Uint64(rr.next(8)), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(binary.LittleEndian.Uint64(rr.next(8)), n)
		}
	}
	return hi
}

// PartialDecrypt returns w·C1 for every C1 of a list of pseudonym
// ciphertexts, given only their C1 components: the last share of the key,
// which the first stage keeps back (docs/linkage.md), is taken off without
// its holder seeing any C2, so no member ever holds a finished pseudonym.
// It checks w and every point (the error names the index of the first bad
// one); w is used only in constant-time multiplications; work is split over
// GOMAXPROCS goroutines.
func PartialDecrypt(w Scalar, c1s []Point) ([]Point, error) {
	ws, err := w.decode()
	if err != nil {
		return nil, fmt.Errorf("weighted share: %w", err)
	}
	defer ws.Zero()
	out := make([]Point, len(c1s))
	err = parallel(len(c1s), func(lo, hi int) error {
		e := ristretto255.NewIdentityElement()
		for i := lo; i < hi; i++ {
			c1, err := c1s[i].decode()
			if err != nil {
				return fmt.Errorf("element %d: C1: %w", i, err)
			}
			out[i] = encodePoint(e.ScalarMult(ws, c1))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Finish returns the pseudonyms C2 − share of a list whose remaining key is
// the one share that PartialDecrypt took off (shares[i] for cts[i]).
func Finish(cts []Ciphertext, shares []Point) ([]Point, error) {
	if len(shares) != len(cts) {
		return nil, fmt.Errorf("%w: %d shares for %d ciphertexts", ErrInvalidArgument, len(shares), len(cts))
	}
	out := make([]Point, len(cts))
	err := parallel(len(cts), func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			_, c2, err := decodePair(cts[i][:])
			if err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
			d, err := shares[i].decode()
			if err != nil {
				return fmt.Errorf("share %d: %w", i, err)
			}
			out[i] = encodePoint(c2.Subtract(c2, d))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
