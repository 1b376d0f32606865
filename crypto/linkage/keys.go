package linkage

import (
	"fmt"

	"github.com/gtank/ristretto255"
)

// Dealing is one member's contribution to the key ceremony (Feldman VSS):
// a random polynomial f(x) = a_0 + a_1·x + … + a_{t-1}·x^{t-1} over the
// scalars, published as Commitments[k] = a_k·B, and evaluated at every
// member's point: Shares[j] = f(j). Commitments are public; Shares[j] is
// secret to member j and must travel sealed to it (crypto/envelope). The
// coefficients themselves are not kept.
type Dealing struct {
	Commitments []Point
	Shares      map[uint64]Scalar
}

// PublicKey is the outcome of the key ceremony: X = Σ_n A_{n,0} = s·B,
// the encryption key of the epoch, and Verify[j] = s_j·B, member j's
// verification key (s_j its combined share). All of it is public.
type PublicKey struct {
	X      Point
	Verify map[uint64]Point
}

// Deal draws a random polynomial of degree t-1 with crypto/rand and returns
// its commitments and its evaluations at points.
//
// Checks: points is nonempty, every point is nonzero (f(0) is the secret)
// and distinct, and 1 <= t <= len(points). The coefficients are secret and
// handled with constant-time scalar arithmetic.
func Deal(t int, points []uint64) (*Dealing, error) {
	if err := checkPoints(points); err != nil {
		return nil, err
	}
	if t < 1 || t > len(points) {
		return nil, fmt.Errorf("%w: threshold %d with %d members", ErrInvalidArgument, t, len(points))
	}
	r := newRandReader()
	coeffs := make([]*ristretto255.Scalar, t)
	d := &Dealing{Commitments: make([]Point, t), Shares: make(map[uint64]Scalar, len(points))}
	for k := range coeffs {
		coeffs[k] = r.scalar()
		d.Commitments[k] = encodePoint(ristretto255.NewIdentityElement().ScalarBaseMult(coeffs[k]))
	}
	clear(r.buf[:])
	for _, j := range points {
		// Horner: f(j) = (…(a_{t-1}·j + a_{t-2})·j + …)·j + a_0.
		x := scalarFromUint64(j)
		f := ristretto255.NewScalar()
		for k := t - 1; k >= 0; k-- {
			f.Multiply(f, x).Add(f, coeffs[k])
		}
		d.Shares[j] = encodeScalar(f)
	}
	for _, c := range coeffs {
		c.Zero()
	}
	return d, nil
}

// VerifyShare checks a dealt share against its dealer's commitments:
// share·B == Σ_k point^k·A_k. It returns nil when it holds, ErrInvalidShare
// when it does not, ErrEncoding (naming the commitment's index) for a
// non-canonical commitment or share, and ErrInvalidArgument for a zero point
// or no commitments. The share is multiplied in constant time; the
// right-hand side is public and computed in variable time.
func VerifyShare(commitments []Point, point uint64, share Scalar) error {
	if point == 0 {
		return fmt.Errorf("%w: evaluation point 0", ErrInvalidArgument)
	}
	if len(commitments) == 0 {
		return fmt.Errorf("%w: no commitments", ErrInvalidArgument)
	}
	cs := make([]*ristretto255.Element, len(commitments))
	for k := range commitments {
		e, err := commitments[k].decode()
		if err != nil {
			return fmt.Errorf("commitment %d: %w", k, err)
		}
		cs[k] = e
	}
	s, err := share.decode()
	if err != nil {
		return fmt.Errorf("share for point %d: %w", point, err)
	}
	lhs := ristretto255.NewIdentityElement().ScalarBaseMult(s)
	if lhs.Equal(evalCommitments(cs, point)) != 1 {
		return fmt.Errorf("%w: point %d", ErrInvalidShare, point)
	}
	return nil
}

// evalCommitments returns Σ_k x^k·A_k (public, variable time).
func evalCommitments(cs []*ristretto255.Element, x uint64) *ristretto255.Element {
	xs := scalarFromUint64(x)
	pow := make([]*ristretto255.Scalar, len(cs))
	pow[0] = scalarFromUint64(1)
	for k := 1; k < len(cs); k++ {
		pow[k] = ristretto255.NewScalar().Multiply(pow[k-1], xs)
	}
	return ristretto255.NewIdentityElement().VarTimeMultiScalarMult(pow, cs)
}

// AggregatePublicKey combines every dealer's commitments (commitments[n] is
// dealer n's Dealing.Commitments) into the epoch's public key:
// X = Σ_n A_{n,0} and, for each j in points, Verify[j] = Σ_n Σ_k j^k·A_{n,k}
// (= s_j·B for the share s_j that CombineShares gives member j).
//
// Checks: at least one dealer; every dealer committed to the same number t
// of coefficients with 1 <= t <= len(points); points are nonzero and
// distinct; every commitment is canonical (the error names dealer and
// index); X is not the identity. It assumes, and cannot check, that the
// dealers' shares were verified by their recipients (VerifyShare) and that
// the set of dealers is the agreed one. As in every Feldman DKG, a dealer
// that deals last can bias the distribution of X (Gennaro et al., 1999);
// it cannot learn s.
func AggregatePublicKey(commitments [][]Point, points []uint64) (*PublicKey, error) {
	if len(commitments) == 0 {
		return nil, fmt.Errorf("%w: no dealers", ErrInvalidArgument)
	}
	if err := checkPoints(points); err != nil {
		return nil, err
	}
	t := len(commitments[0])
	if t < 1 || t > len(points) {
		return nil, fmt.Errorf("%w: dealer 0 committed to %d coefficients with %d members", ErrInvalidArgument, t, len(points))
	}
	sum := make([]*ristretto255.Element, t)
	for k := range sum {
		sum[k] = ristretto255.NewIdentityElement()
	}
	for n, cs := range commitments {
		if len(cs) != t {
			return nil, fmt.Errorf("%w: dealer %d committed to %d coefficients, dealer 0 to %d", ErrInvalidArgument, n, len(cs), t)
		}
		for k := range cs {
			e, err := cs[k].decode()
			if err != nil {
				return nil, fmt.Errorf("dealer %d commitment %d: %w", n, k, err)
			}
			sum[k].Add(sum[k], e)
		}
	}
	pk := &PublicKey{X: encodePoint(sum[0]), Verify: make(map[uint64]Point, len(points))}
	if pk.X == (Point{}) {
		return nil, fmt.Errorf("%w: aggregate public key is the identity", ErrInvalidArgument)
	}
	for _, j := range points {
		pk.Verify[j] = encodePoint(evalCommitments(sum, j))
	}
	return pk, nil
}

// CheckShare reports whether share is member self's combined share s_self,
// that is share·B == Verify[self]. It returns ErrInvalidShare on mismatch,
// ErrInvalidArgument if self has no verification key, ErrEncoding for a
// non-canonical share or key. The share is multiplied in constant time.
func (pk *PublicKey) CheckShare(self uint64, share Scalar) error {
	y, ok := pk.Verify[self]
	if !ok {
		return fmt.Errorf("%w: no verification key for member %d", ErrInvalidArgument, self)
	}
	ye, err := y.decode()
	if err != nil {
		return fmt.Errorf("verification key of member %d: %w", self, err)
	}
	s, err := share.decode()
	if err != nil {
		return fmt.Errorf("share of member %d: %w", self, err)
	}
	if ristretto255.NewIdentityElement().ScalarBaseMult(s).Equal(ye) != 1 {
		return fmt.Errorf("%w: member %d", ErrInvalidShare, self)
	}
	return nil
}

// CombineShares returns member j's share s_j = Σ_n f_n(j) from the shares
// f_n(j) it received from every dealer n (its own included); the sum of no
// shares is 0. It assumes that each share passed VerifyShare, which rejects
// a non-canonical scalar; it does not check again, and reads a
// non-canonical share as the 256-bit little-endian integer it spells,
// reduced modulo l. Constant time in the shares' values.
func CombineShares(shares []Scalar) Scalar {
	sum := ristretto255.NewScalar()
	var wide [64]byte
	for i := range shares {
		copy(wide[:ScalarSize], shares[i][:])
		sum.Add(sum, scalarFromUniform(wide[:]))
	}
	clear(wide[:])
	return encodeScalar(sum)
}

// Lagrange returns λ_self(S) = Π_{m∈S, m≠self} m / (m − self), the Lagrange
// coefficient at x = 0 of member self for the set S = points, so that
// Σ_{j∈S} λ_j·f(j) = f(0) for every polynomial f of degree < |S|.
// Checks: points nonzero and distinct, self among them.
func Lagrange(points []uint64, self uint64) (Scalar, error) {
	l, err := lagrange(points, self)
	if err != nil {
		return Scalar{}, err
	}
	return encodeScalar(l), nil
}

func lagrange(points []uint64, self uint64) (*ristretto255.Scalar, error) {
	if err := checkPoints(points); err != nil {
		return nil, err
	}
	found := false
	num, den := scalarFromUint64(1), scalarFromUint64(1)
	xs := scalarFromUint64(self)
	for _, m := range points {
		if m == self {
			found = true
			continue
		}
		xm := scalarFromUint64(m)
		num.Multiply(num, xm)
		den.Multiply(den, ristretto255.NewScalar().Subtract(xm, xs)) // nonzero: m ≠ self, both < 2^64 < l
	}
	if !found {
		return nil, fmt.Errorf("%w: member %d is not in the set", ErrInvalidArgument, self)
	}
	return num.Multiply(num, ristretto255.NewScalar().Invert(den)), nil
}

// Weighted returns w = λ_self(points)·share, member self's Lagrange-weighted
// share for the stage set points: Σ_{j∈S} w_j = s when every member of S
// uses its combined share. Checks as Lagrange, and that share is canonical.
func Weighted(share Scalar, points []uint64, self uint64) (Scalar, error) {
	s, err := share.decode()
	if err != nil {
		return Scalar{}, fmt.Errorf("share: %w", err)
	}
	l, err := lagrange(points, self)
	if err != nil {
		return Scalar{}, err
	}
	return encodeScalar(l.Multiply(l, s)), nil
}

// checkPoints: nonempty, nonzero, distinct.
func checkPoints(points []uint64) error {
	if len(points) == 0 {
		return fmt.Errorf("%w: no members", ErrInvalidArgument)
	}
	seen := make(map[uint64]bool, len(points))
	for _, p := range points {
		if p == 0 {
			return fmt.Errorf("%w: member point 0", ErrInvalidArgument)
		}
		if seen[p] {
			return fmt.Errorf("%w: member point %d twice", ErrInvalidArgument, p)
		}
		seen[p] = true
	}
	return nil
}
