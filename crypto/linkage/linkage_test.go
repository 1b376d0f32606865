package linkage_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gtank/ristretto255"

	"github.com/fedstat/fedstat/crypto/linkage"
)

// ceremony runs the key ceremony of n members (points 1..n) with threshold
// t, checking every share on the way, and returns the public key and the
// combined shares.
func ceremony(tb testing.TB, n, t int) (*linkage.PublicKey, map[uint64]linkage.Scalar) {
	tb.Helper()
	points := make([]uint64, n)
	for i := range points {
		points[i] = uint64(i + 1)
	}
	dealings := make([]*linkage.Dealing, n)
	commitments := make([][]linkage.Point, n)
	for i := range dealings {
		d, err := linkage.Deal(t, points)
		if err != nil {
			tb.Fatal(err)
		}
		dealings[i], commitments[i] = d, d.Commitments
	}
	shares := map[uint64]linkage.Scalar{}
	for _, j := range points {
		var received []linkage.Scalar
		for i, d := range dealings {
			if err := linkage.VerifyShare(d.Commitments, j, d.Shares[j]); err != nil {
				tb.Fatalf("dealer %d's share for member %d: %v", i, j, err)
			}
			received = append(received, d.Shares[j])
		}
		shares[j] = linkage.CombineShares(received)
	}
	pk, err := linkage.AggregatePublicKey(commitments, points)
	if err != nil {
		tb.Fatal(err)
	}
	for _, j := range points {
		if err := pk.CheckShare(j, shares[j]); err != nil {
			tb.Fatalf("member %d: %v", j, err)
		}
	}
	return pk, shares
}

func scalar(tb testing.TB, s linkage.Scalar) *ristretto255.Scalar {
	tb.Helper()
	x := ristretto255.NewScalar()
	if _, err := x.SetCanonicalBytes(s[:]); err != nil {
		tb.Fatal(err)
	}
	return x
}

func element(tb testing.TB, p linkage.Point) *ristretto255.Element {
	tb.Helper()
	e := ristretto255.NewIdentityElement()
	if _, err := e.SetCanonicalBytes(p[:]); err != nil {
		tb.Fatal(err)
	}
	return e
}

func point(e *ristretto255.Element) linkage.Point { return linkage.Point(e.Bytes()) }

// reconstruct returns s = Σ_{j∈set} λ_j·s_j.
func reconstruct(tb testing.TB, shares map[uint64]linkage.Scalar, set []uint64) *ristretto255.Scalar {
	tb.Helper()
	s := ristretto255.NewScalar()
	for _, j := range set {
		w, err := linkage.Weighted(shares[j], set, j)
		if err != nil {
			tb.Fatal(err)
		}
		s.Add(s, scalar(tb, w))
	}
	return s
}

func TestKeyCeremony(t *testing.T) {
	pk, shares := ceremony(t, 5, 3)
	for _, set := range [][]uint64{{1, 2, 3}, {2, 4, 5}, {5, 1, 3}} {
		s := reconstruct(t, shares, set)
		if got := point(ristretto255.NewIdentityElement().ScalarBaseMult(s)); got != pk.X {
			t.Errorf("set %v: s·B != X", set)
		}
	}
	// Two members are not enough: their weighted sum is not s.
	if s := reconstruct(t, shares, []uint64{1, 2}); point(ristretto255.NewIdentityElement().ScalarBaseMult(s)) == pk.X {
		t.Error("two shares reconstructed the key of a 3-of-5 sharing")
	}
	// A wrong combined share fails CheckShare.
	if err := pk.CheckShare(1, shares[2]); !errors.Is(err, linkage.ErrInvalidShare) {
		t.Errorf("CheckShare with another member's share: %v", err)
	}
	if err := pk.CheckShare(9, shares[2]); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("CheckShare of a non-member: %v", err)
	}
}

func TestVerifyShareRejectsTampering(t *testing.T) {
	points := []uint64{1, 2, 3, 4, 5}
	d, err := linkage.Deal(3, points)
	if err != nil {
		t.Fatal(err)
	}
	one := ristretto255.NewScalar()
	one.SetCanonicalBytes(append([]byte{1}, make([]byte, 31)...))
	bad := linkage.Scalar(ristretto255.NewScalar().Add(scalar(t, d.Shares[2]), one).Bytes())
	if err := linkage.VerifyShare(d.Commitments, 2, bad); !errors.Is(err, linkage.ErrInvalidShare) {
		t.Errorf("share+1: %v, want ErrInvalidShare", err)
	}
	if err := linkage.VerifyShare(d.Commitments, 3, d.Shares[2]); !errors.Is(err, linkage.ErrInvalidShare) {
		t.Errorf("share for the wrong point: %v, want ErrInvalidShare", err)
	}
	cs := slices.Clone(d.Commitments)
	cs[1] = linkage.RandomPoint()
	if err := linkage.VerifyShare(cs, 2, d.Shares[2]); !errors.Is(err, linkage.ErrInvalidShare) {
		t.Errorf("tampered commitment: %v, want ErrInvalidShare", err)
	}
	cs[1] = linkage.Point{0xff}
	if err := linkage.VerifyShare(cs, 2, d.Shares[2]); !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "commitment 1") {
		t.Errorf("non-canonical commitment: %v", err)
	}
	if err := linkage.VerifyShare(d.Commitments, 0, d.Shares[2]); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("point 0: %v", err)
	}
}

func TestDealChecks(t *testing.T) {
	for _, c := range []struct {
		t      int
		points []uint64
	}{
		{0, []uint64{1, 2}}, {3, []uint64{1, 2}}, {1, nil}, {1, []uint64{0, 1}}, {2, []uint64{1, 1}},
	} {
		if _, err := linkage.Deal(c.t, c.points); !errors.Is(err, linkage.ErrInvalidArgument) {
			t.Errorf("Deal(%d, %v): %v, want ErrInvalidArgument", c.t, c.points, err)
		}
	}
	if _, err := linkage.Lagrange([]uint64{1, 2, 3}, 4); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("Lagrange of a non-member: %v", err)
	}
	d1, _ := linkage.Deal(2, []uint64{1, 2, 3})
	d2, _ := linkage.Deal(3, []uint64{1, 2, 3})
	if _, err := linkage.AggregatePublicKey([][]linkage.Point{d1.Commitments, d2.Commitments}, []uint64{1, 2, 3}); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("dealers with different thresholds: %v", err)
	}
	neg := []linkage.Point{point(ristretto255.NewIdentityElement().Negate(element(t, d1.Commitments[0]))), d1.Commitments[1]}
	if _, err := linkage.AggregatePublicKey([][]linkage.Point{d1.Commitments, neg}, []uint64{1, 2, 3}); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("commitments cancelling to the identity key: %v", err)
	}
}

// mix runs len(set) stages over the lists of one group, each stage with a
// fresh k and the stage member's weighted share, and returns the product
// of the k's.
func mix(tb testing.TB, pk *linkage.PublicKey, shares map[uint64]linkage.Scalar, set []uint64, lists [][]linkage.Ciphertext, payloads [][]linkage.ValueCiphertext) *ristretto255.Scalar {
	tb.Helper()
	K := ristretto255.NewScalar()
	K.SetCanonicalBytes(append([]byte{1}, make([]byte, 31)...))
	for _, j := range set {
		w, err := linkage.Weighted(shares[j], set, j)
		if err != nil {
			tb.Fatal(err)
		}
		k := linkage.RandomScalar()
		if err := linkage.Stage(k, w, pk.X, lists, payloads); err != nil {
			tb.Fatalf("stage of member %d: %v", j, err)
		}
		K.Multiply(K, scalar(tb, k))
	}
	return K
}

func encrypt(tb testing.TB, x linkage.Point, ms ...linkage.Point) []linkage.Ciphertext {
	tb.Helper()
	cs, err := linkage.EncryptPoints(x, ms)
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

func pseudonyms(cs []linkage.Ciphertext) []linkage.Point {
	out := make([]linkage.Point, len(cs))
	for i, c := range cs {
		out[i] = linkage.Pseudonym(c)
	}
	return out
}

func sorted(ps []linkage.Point) []linkage.Point {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b linkage.Point) int { return bytes.Compare(a[:], b[:]) })
	return ps
}

func TestStageLinks(t *testing.T) {
	pk, shares := ceremony(t, 5, 3)
	const domain = "urn:oid:2.16.840.1.113883.2.4.6.3"
	a, b, c, d := linkage.HashIdentifier(domain, "1001"), linkage.HashIdentifier(domain, "1002"),
		linkage.HashIdentifier(domain, "1003"), linkage.HashIdentifier(domain, "1004")
	dummy, id := linkage.RandomPoint(), linkage.Point{}
	// Two nodes encrypt independently (fresh randomness each).
	hospital := encrypt(t, pk.X, a, b, id, dummy, c)
	registry := encrypt(t, pk.X, b, a, dummy, d, id)
	lists := [][]linkage.Ciphertext{hospital, registry}
	K := mix(t, pk, shares, []uint64{2, 4, 5}, lists, nil)

	want := func(ms ...linkage.Point) []linkage.Point {
		var out []linkage.Point
		for _, m := range ms {
			out = append(out, point(ristretto255.NewIdentityElement().ScalarMult(K, element(t, m))))
		}
		return sorted(out)
	}
	if got := sorted(pseudonyms(lists[0])); !slices.Equal(got, want(a, b, id, dummy, c)) {
		t.Error("hospital list: pseudonyms are not K·M of its inputs")
	}
	if got := sorted(pseudonyms(lists[1])); !slices.Equal(got, want(b, a, dummy, d, id)) {
		t.Error("registry list: pseudonyms are not K·M of its inputs")
	}
	// Directly: the common residents and the dummy match, the others and
	// the identity behave.
	common := 0
	for _, p := range pseudonyms(lists[0]) {
		if p != (linkage.Point{}) && slices.Contains(pseudonyms(lists[1]), p) {
			common++
		}
	}
	if common != 3 {
		t.Errorf("%d pseudonyms in common, want 3 (a, b, dummy)", common)
	}
	for l := range lists {
		ps := pseudonyms(lists[l])
		if n := len(slices.Compact(sorted(ps))); n != len(ps) {
			t.Errorf("list %d: distinct identifiers share a pseudonym", l)
		}
		ids := 0
		for _, p := range ps {
			if p == (linkage.Point{}) {
				ids++
			}
		}
		if ids != 1 {
			t.Errorf("list %d: %d identity pseudonyms, want 1", l, ids)
		}
	}
	// A second group (its own k's) gives other pseudonyms for the same ids.
	other := [][]linkage.Ciphertext{encrypt(t, pk.X, a)}
	mix(t, pk, shares, []uint64{2, 4, 5}, other, nil)
	if slices.Contains(pseudonyms(lists[0]), linkage.Pseudonym(other[0][0])) {
		t.Error("two groups gave the same pseudonym")
	}
	// A stage set with a wrong weight leaves the key in: no match.
	wrong := [][]linkage.Ciphertext{encrypt(t, pk.X, a), encrypt(t, pk.X, a)}
	for _, j := range []uint64{2, 4} {
		w, _ := linkage.Weighted(shares[j], []uint64{2, 4, 5}, j)
		if err := linkage.Stage(linkage.RandomScalar(), w, pk.X, wrong, nil); err != nil {
			t.Fatal(err)
		}
	}
	if linkage.Pseudonym(wrong[0][0]) == linkage.Pseudonym(wrong[1][0]) {
		t.Error("an incomplete stage set produced matching pseudonyms")
	}
}

// TestStageShuffles: the output order is a permutation of the input, not
// the input order, different from run to run, and payloads follow their
// pseudonyms.
func TestStageShuffles(t *testing.T) {
	pk, shares := ceremony(t, 3, 2)
	set := []uint64{1, 3}
	s := reconstruct(t, shares, set)
	const n = 40
	ms := make([]linkage.Point, n)
	vs := make([]int64, n)
	for i := range ms {
		ms[i] = linkage.HashIdentifier("test", fmt.Sprint(i))
		vs[i] = int64(i) - 7
	}
	seen := map[string]bool{}
	for run := range 4 {
		lists := [][]linkage.Ciphertext{encrypt(t, pk.X, ms...)}
		ps, err := linkage.EncryptValues(pk.X, vs)
		if err != nil {
			t.Fatal(err)
		}
		payloads := [][]linkage.ValueCiphertext{ps}
		K := mix(t, pk, shares, set, lists, payloads)
		where := map[linkage.Point]int{}
		for i, m := range ms {
			where[point(ristretto255.NewIdentityElement().ScalarMult(K, element(t, m)))] = i
		}
		perm := make([]int, n)
		for out, c := range lists[0] {
			in, ok := where[linkage.Pseudonym(c)]
			if !ok {
				t.Fatalf("run %d: output %d is no input's pseudonym", run, out)
			}
			perm[out] = in
			// The payload at the same position is the input's value.
			share, err := linkage.DecryptShare(linkage.Scalar(s.Bytes()), payloads[0][out])
			if err != nil {
				t.Fatal(err)
			}
			vb, err := linkage.CombineDecryption(payloads[0][out], []linkage.Point{share})
			if err != nil {
				t.Fatal(err)
			}
			if v, err := linkage.DiscreteLog(vb, 100); err != nil || v != vs[in] {
				t.Fatalf("run %d: payload at %d decrypts to %d (%v), want %d", run, out, v, err, vs[in])
			}
		}
		sortedPerm := slices.Clone(perm)
		slices.Sort(sortedPerm)
		for i := range sortedPerm {
			if sortedPerm[i] != i {
				t.Fatalf("run %d: output is not a permutation of the input: %v", run, perm)
			}
		}
		fixed := 0
		for i, p := range perm {
			if i == p {
				fixed++
			}
		}
		if fixed > n/2 {
			t.Errorf("run %d: %d of %d elements kept their position", run, fixed, n)
		}
		seen[fmt.Sprint(perm)] = true
	}
	if len(seen) != 4 {
		t.Errorf("4 runs gave only %d distinct orders", len(seen))
	}
}

func TestPayloadSums(t *testing.T) {
	pk, shares := ceremony(t, 5, 3)
	vs := []int64{12, -5, 100000, -99999, 0, 7, -1, 250}
	var want int64
	ms := make([]linkage.Point, len(vs))
	for i, v := range vs {
		want += v
		ms[i] = linkage.HashIdentifier("claims", fmt.Sprint(i))
	}
	ps, err := linkage.EncryptValues(pk.X, vs)
	if err != nil {
		t.Fatal(err)
	}
	lists, payloads := [][]linkage.Ciphertext{encrypt(t, pk.X, ms...)}, [][]linkage.ValueCiphertext{ps}
	mix(t, pk, shares, []uint64{1, 2, 3}, lists, payloads)
	sum, err := linkage.AddValues(payloads[0])
	if err != nil {
		t.Fatal(err)
	}
	// Decrypt with another set of T members.
	set := []uint64{5, 3, 4}
	var ds []linkage.Point
	for _, j := range set {
		w, err := linkage.Weighted(shares[j], set, j)
		if err != nil {
			t.Fatal(err)
		}
		d, err := linkage.DecryptShare(w, sum)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	vb, err := linkage.CombineDecryption(sum, ds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := linkage.DiscreteLog(vb, 1_000_000)
	if err != nil || got != want {
		t.Fatalf("decrypted sum %d (%v), want %d", got, err, want)
	}
	// T−1 shares do not decrypt.
	partial, _ := linkage.CombineDecryption(sum, ds[:2])
	if _, err := linkage.DiscreteLog(partial, 1_000_000); !errors.Is(err, linkage.ErrOutOfRange) {
		t.Errorf("two of three shares: %v, want ErrOutOfRange", err)
	}
	// The empty sum is an encryption of 0.
	zero, err := linkage.AddValues(nil)
	if err != nil {
		t.Fatal(err)
	}
	vb, _ = linkage.CombineDecryption(zero, nil)
	if v, err := linkage.DiscreteLog(vb, 10); err != nil || v != 0 {
		t.Errorf("empty sum: %d, %v", v, err)
	}
}

func TestDiscreteLog(t *testing.T) {
	vb := func(v int64) linkage.Point {
		s := scalarOf(uint64(v))
		if v < 0 {
			s.Negate(scalarOf(uint64(-v)))
		}
		return point(ristretto255.NewIdentityElement().ScalarBaseMult(s))
	}
	for _, c := range []struct{ v, bound int64 }{
		{0, 0}, {0, 1}, {1, 1}, {-1, 1}, {-5, 5}, {5, 5}, {123456, 1 << 20}, {-(1 << 20), 1 << 20},
		{999_999_999, 1_000_000_000}, {-1_000_000_000, 1_000_000_000}, {31337, 1_000_000_000},
	} {
		got, err := linkage.DiscreteLog(vb(c.v), c.bound)
		if err != nil || got != c.v {
			t.Errorf("DiscreteLog(%d·B, %d) = %d, %v", c.v, c.bound, got, err)
		}
	}
	for _, c := range []struct{ v, bound int64 }{{1, 0}, {-1, 0}, {6, 5}, {-6, 5}, {1<<20 + 1, 1 << 20}, {1_000_000_001, 1_000_000_000}} {
		_, err := linkage.DiscreteLog(vb(c.v), c.bound)
		if !errors.Is(err, linkage.ErrOutOfRange) {
			t.Errorf("DiscreteLog(%d·B, %d): %v, want ErrOutOfRange", c.v, c.bound, err)
		} else if !strings.Contains(err.Error(), fmt.Sprint(c.bound)) {
			t.Errorf("error %q does not name the bound", err)
		}
	}
	if _, err := linkage.DiscreteLog(linkage.RandomPoint(), 1000); !errors.Is(err, linkage.ErrOutOfRange) {
		t.Errorf("random point: %v", err)
	}
	for _, bound := range []int64{-1, linkage.MaxBound + 1} {
		if _, err := linkage.DiscreteLog(linkage.Point{}, bound); !errors.Is(err, linkage.ErrInvalidArgument) {
			t.Errorf("bound %d: %v", bound, err)
		}
	}
	if _, err := linkage.DiscreteLog(linkage.Point{1}, 10); !errors.Is(err, linkage.ErrEncoding) {
		t.Errorf("non-canonical point: %v", err)
	}
}

// TestDiscreteLogConcurrent: callers racing for the same table wait for one
// build (run with -race).
// TestDiscreteLogLooseBound: a small value under the largest bound is
// found in about |v|/m giant steps, not bound/m.
func TestDiscreteLogLooseBound(t *testing.T) {
	for _, v := range []int64{0, 77, -123_456_789} {
		s := scalarOf(uint64(max(v, -v)))
		if v < 0 {
			s.Negate(s)
		}
		p := point(ristretto255.NewIdentityElement().ScalarBaseMult(s))
		if got, err := linkage.DiscreteLog(p, linkage.MaxBound); err != nil || got != v {
			t.Errorf("DiscreteLog(%d·B, MaxBound) = %d, %v", v, got, err)
		}
	}
}

func TestDiscreteLogConcurrent(t *testing.T) {
	p := point(ristretto255.NewIdentityElement().ScalarBaseMult(scalarOf(4242)))
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if v, err := linkage.DiscreteLog(p, 1<<22); err != nil || v != 4242 {
				t.Errorf("got %d, %v", v, err)
			}
		})
	}
	wg.Wait()
}

func le(x uint64) []byte {
	b := make([]byte, 32)
	for i := range 8 {
		b[i] = byte(x >> (8 * i))
	}
	return b
}

func scalarOf(x uint64) *ristretto255.Scalar {
	s := ristretto255.NewScalar()
	s.SetCanonicalBytes(le(x))
	return s
}

func TestStageRejectsMalformed(t *testing.T) {
	pk, shares := ceremony(t, 3, 2)
	w, _ := linkage.Weighted(shares[1], []uint64{1, 2}, 1)
	k := linkage.RandomScalar()
	fresh := func() ([][]linkage.Ciphertext, [][]linkage.ValueCiphertext) {
		ms := []linkage.Point{linkage.RandomPoint(), linkage.RandomPoint(), linkage.RandomPoint(), linkage.RandomPoint()}
		ps, _ := linkage.EncryptValues(pk.X, []int64{1, 2, 3, 4})
		return [][]linkage.Ciphertext{encrypt(t, pk.X, ms...), encrypt(t, pk.X, ms...)}, [][]linkage.ValueCiphertext{ps, nil}
	}
	same := func(a, b [][]linkage.Ciphertext) bool {
		return slices.EqualFunc(a, b, func(x, y []linkage.Ciphertext) bool { return slices.Equal(x, y) })
	}
	lists, payloads := fresh()
	lists[1][3][63] |= 0x80 // C2 of list 1, element 3: bit 255 set is never a canonical encoding
	before, beforeP := clone(lists), slices.Clone(payloads[0])
	err := linkage.Stage(k, w, pk.X, lists, payloads)
	if !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "list 1 element 3") || !strings.Contains(err.Error(), "C2") {
		t.Errorf("bad ciphertext: %v", err)
	}
	if !same(lists, before) || !slices.Equal(payloads[0], beforeP) {
		t.Error("a failed Stage changed its input")
	}

	lists, payloads = fresh()
	payloads[0][2][0] = 0xff
	before, beforeP = clone(lists), slices.Clone(payloads[0])
	err = linkage.Stage(k, w, pk.X, lists, payloads)
	if !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "list 0 payload 2") || !strings.Contains(err.Error(), "C1") {
		t.Errorf("bad payload: %v", err)
	}
	if !same(lists, before) || !slices.Equal(payloads[0], beforeP) {
		t.Error("a failed Stage changed its input")
	}

	lists, payloads = fresh()
	for name, call := range map[string]func() error{
		"zero k":        func() error { return linkage.Stage(linkage.Scalar{}, w, pk.X, lists, payloads) },
		"identity key":  func() error { return linkage.Stage(k, w, linkage.Point{}, lists, payloads) },
		"payload count": func() error { return linkage.Stage(k, w, pk.X, lists, payloads[:1]) },
		"payload length": func() error {
			return linkage.Stage(k, w, pk.X, lists, [][]linkage.ValueCiphertext{payloads[0][:3], nil})
		},
	} {
		if err := call(); !errors.Is(err, linkage.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	var big linkage.Scalar
	for i := range big {
		big[i] = 0xff
	}
	if err := linkage.Stage(big, w, pk.X, lists, payloads); !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "k") {
		t.Errorf("non-canonical k: %v", err)
	}
	if err := linkage.Stage(k, w, pk.X, nil, nil); err != nil {
		t.Errorf("no lists: %v", err)
	}
}

func clone(ls [][]linkage.Ciphertext) [][]linkage.Ciphertext {
	out := make([][]linkage.Ciphertext, len(ls))
	for i := range ls {
		out[i] = slices.Clone(ls[i])
	}
	return out
}

func TestEncryptChecks(t *testing.T) {
	x := linkage.RandomPoint()
	if _, err := linkage.EncryptPoints(x, []linkage.Point{linkage.RandomPoint(), {0xff, 0xff}}); !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "message 1") {
		t.Errorf("bad message: %v", err)
	}
	if _, err := linkage.EncryptPoints(linkage.Point{}, []linkage.Point{x}); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("identity key: %v", err)
	}
	if _, err := linkage.EncryptValues(linkage.Point{}, []int64{1}); !errors.Is(err, linkage.ErrInvalidArgument) {
		t.Errorf("identity key: %v", err)
	}
	// Ciphertexts of one message differ (fresh randomness), order is kept.
	ms := make([]linkage.Point, 100)
	for i := range ms {
		ms[i] = x
	}
	cs := encrypt(t, x, ms...)
	if len(slices.Compact(sortedC(cs))) != len(cs) {
		t.Error("two encryptions of one message are equal")
	}
	if _, err := linkage.AddValues([]linkage.ValueCiphertext{{}, {1}}); !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "value ciphertext 1") {
		t.Errorf("AddValues: %v", err)
	}
	if _, err := linkage.CombineDecryption(linkage.ValueCiphertext{}, []linkage.Point{{}, {3}}); !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "share 1") {
		t.Errorf("CombineDecryption: %v", err)
	}
}

func sortedC(cs []linkage.Ciphertext) []linkage.Ciphertext {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b linkage.Ciphertext) int { return bytes.Compare(a[:], b[:]) })
	return cs
}

func TestHashIdentifier(t *testing.T) {
	if linkage.HashIdentifier("urn:x", "42") != linkage.HashIdentifier("urn:x", "42") {
		t.Error("not deterministic")
	}
	pairs := [][2]string{{"urn:x", "42"}, {"urn:y", "42"}, {"urn:x", "43"}, {"a", "bc"}, {"ab", "c"}, {"", ""}}
	seen := map[linkage.Point]bool{}
	for _, p := range pairs {
		h := linkage.HashIdentifier(p[0], p[1])
		if seen[h] {
			t.Errorf("%q collides", p)
		}
		seen[h] = true
		if _, err := linkage.ParsePoint(h[:]); err != nil || h == (linkage.Point{}) {
			t.Errorf("%q: hash is not a canonical non-identity point", p)
		}
	}
}

func TestScalarRedacts(t *testing.T) {
	s := linkage.RandomScalar()
	d := linkage.Dealing{Shares: map[uint64]linkage.Scalar{1: s}}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "share", s)
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%x %X %d %v %+v %#v %s %q", s, s, s, s, s, s, s, s), fmt.Sprintf("%v %+v", d, &d), logged.String(),
	} {
		if strings.Contains(strings.ToLower(out), fmt.Sprintf("%x", s[:4])) || strings.Contains(out, fmt.Sprint(s[0])+" "+fmt.Sprint(s[1])) {
			t.Errorf("scalar leaked: %s", out)
		}
		if !strings.Contains(out, linkage.Redacted) {
			t.Errorf("no redaction mark in %s", out)
		}
	}
}

func TestParse(t *testing.T) {
	if _, err := linkage.ParsePoint(make([]byte, 31)); !errors.Is(err, linkage.ErrEncoding) {
		t.Error("short point accepted")
	}
	// 1 is "negative" in ristretto255's encoding, hence never canonical.
	if _, err := linkage.ParsePoint(le(1)); !errors.Is(err, linkage.ErrEncoding) {
		t.Error("non-canonical point accepted")
	}
	// l itself is not a canonical scalar; l−1 is.
	l := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	if _, err := linkage.ParseScalar(l); !errors.Is(err, linkage.ErrEncoding) {
		t.Error("l accepted as a scalar")
	}
	l[0]--
	if _, err := linkage.ParseScalar(l); err != nil {
		t.Errorf("l−1 rejected: %v", err)
	}
	c := encrypt(t, linkage.RandomPoint(), linkage.RandomPoint())[0]
	if got, err := linkage.ParseCiphertext(c[:]); err != nil || got != c {
		t.Errorf("round trip: %v", err)
	}
	c[63] |= 0x80
	if _, err := linkage.ParseCiphertext(c[:]); !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "C2") {
		t.Errorf("bad C2: %v", err)
	}
	if _, err := linkage.ParseValueCiphertext(c[:]); !errors.Is(err, linkage.ErrEncoding) || !strings.Contains(err.Error(), "C2") {
		t.Errorf("bad C2: %v", err)
	}
}

// TestFirstStageWithholdsItsShare: the protocol as the nodes run it. The
// first stage exponentiates but keeps its share back (w = 0); the later
// stages take theirs off; the last stage's output is then still encrypted
// under the first stage's share alone, so no stage sees a pseudonym: C2 is
// not K·M. The first stage then returns w·C1 from the C1 components only
// (PartialDecrypt), and Finish gives K·M.
func TestFirstStageWithholdsItsShare(t *testing.T) {
	pk, shares := ceremony(t, 5, 3)
	set := []uint64{2, 4, 5}
	const domain = "urn:test"
	a, b := linkage.HashIdentifier(domain, "1001"), linkage.HashIdentifier(domain, "1002")
	lists := [][]linkage.Ciphertext{encrypt(t, pk.X, a, b), encrypt(t, pk.X, b)}
	K := ristretto255.NewScalar()
	K.SetCanonicalBytes(append([]byte{1}, make([]byte, 31)...))
	ws := map[uint64]linkage.Scalar{}
	for i, j := range set {
		w, err := linkage.Weighted(shares[j], set, j)
		if err != nil {
			t.Fatal(err)
		}
		ws[j] = w
		if i == 0 {
			w = linkage.Scalar{} // kept back
		}
		k := linkage.RandomScalar()
		if err := linkage.Stage(k, w, pk.X, lists, nil); err != nil {
			t.Fatal(err)
		}
		K.Multiply(K, scalar(t, k))
	}
	want := func(m linkage.Point) linkage.Point {
		return point(ristretto255.NewIdentityElement().ScalarMult(K, element(t, m)))
	}
	for l := range lists {
		for _, c := range lists[l] {
			if p := linkage.Pseudonym(c); p == want(a) || p == want(b) {
				t.Fatal("the last stage's output holds a finished pseudonym")
			}
		}
	}
	var fin [][]linkage.Point
	for _, list := range lists {
		c1s := make([]linkage.Point, len(list))
		for i, c := range list {
			c1s[i] = c.C1()
		}
		sh, err := linkage.PartialDecrypt(ws[set[0]], c1s)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := linkage.Finish(list, sh)
		if err != nil {
			t.Fatal(err)
		}
		fin = append(fin, ps)
	}
	if got := sorted(fin[0]); !slices.Equal(got, sorted([]linkage.Point{want(a), want(b)})) {
		t.Error("finished pseudonyms are not K·M")
	}
	if fin[1][0] != want(b) {
		t.Error("the common resident does not match across lists")
	}
	if _, err := linkage.PartialDecrypt(ws[set[0]], []linkage.Point{{1}}); err == nil {
		t.Error("a malformed C1 was accepted")
	}
	if _, err := linkage.Finish(lists[1], nil); err == nil {
		t.Error("Finish without shares was accepted")
	}
}
