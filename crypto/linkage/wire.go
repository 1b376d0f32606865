package linkage

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/gtank/ristretto255"
)

// Sizes of the wire forms, in bytes.
const (
	PointSize      = 32
	ScalarSize     = 32
	CiphertextSize = 2 * PointSize
)

// Redacted is what a Scalar prints and logs instead of its value.
const Redacted = "[redacted]"

// Errors returned by this package, wrapped with %w (match with errors.Is).
var (
	// ErrEncoding: bytes that are not the canonical encoding of a group
	// element or scalar, or have the wrong length.
	ErrEncoding = errors.New("linkage: non-canonical encoding")
	// ErrInvalidArgument: an argument outside its documented domain (a zero
	// evaluation point, a threshold out of range, mismatched lengths, a zero
	// mixing scalar, the identity as a public key).
	ErrInvalidArgument = errors.New("linkage: invalid argument")
	// ErrInvalidShare: a dealt share that does not match its dealer's
	// commitments, or a combined share that does not match the public
	// verification key.
	ErrInvalidShare = errors.New("linkage: share does not match commitments")
	// ErrOutOfRange: DiscreteLog found no integer in [-bound, bound].
	ErrOutOfRange = errors.New("linkage: discrete log out of range")
)

// Point is the wire form of a ristretto255 group element: its canonical
// 32-byte encoding (RFC 9496, section 4.3.2). The identity element encodes
// as 32 zero bytes, so the zero Point is the identity. Points are public
// values and compare with ==: two Points are equal exactly when they encode
// the same element, provided both are canonical (every Point this package
// returns is; Points from the wire must be checked, see ParsePoint).
type Point [PointSize]byte

// Scalar is the wire form of an integer modulo the group order
// l = 2^252 + 27742317777372353535851937790883648493: 32 bytes, little
// endian, canonical (less than l). Scalars are usually secret (key shares,
// mixing exponents), so a Scalar prints and logs as Redacted with every fmt
// verb and in slog.
type Scalar [ScalarSize]byte

// Ciphertext is an ElGamal encryption of a group element M under a public
// key X: C1 || C2 with C1 = r·B and C2 = M + r·X. It carries a pseudonym
// through the mix (see Stage). Each half is a canonical Point.
type Ciphertext [CiphertextSize]byte

// ValueCiphertext is an exponential ElGamal encryption of an integer v under
// a public key X: C1 || C2 with C1 = r·B and C2 = v·B + r·X. Ciphertexts under
// the same key add (AddValues); decryption yields v·B, from which
// DiscreteLog recovers a bounded v.
type ValueCiphertext [CiphertextSize]byte

// C1 returns the first half, r·B.
func (c Ciphertext) C1() Point { return Point(c[:PointSize]) }

// C2 returns the second half, M + r·X.
func (c Ciphertext) C2() Point { return Point(c[PointSize:]) }

// C1 returns the first half, r·B.
func (c ValueCiphertext) C1() Point { return Point(c[:PointSize]) }

// C2 returns the second half, v·B + r·X.
func (c ValueCiphertext) C2() Point { return Point(c[PointSize:]) }

// String implements fmt.Stringer without revealing the scalar.
func (Scalar) String() string { return Redacted }

// GoString implements fmt.GoStringer without revealing the scalar.
func (Scalar) GoString() string { return Redacted }

// Format implements fmt.Formatter so that every verb redacts.
func (Scalar) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// LogValue implements slog.LogValuer.
func (Scalar) LogValue() slog.Value { return slog.StringValue(Redacted) }

// ParsePoint checks that b is the canonical encoding of a group element and
// returns it as a Point. It rejects a wrong length and every non-canonical
// encoding with ErrEncoding.
func ParsePoint(b []byte) (Point, error) {
	if len(b) != PointSize {
		return Point{}, fmt.Errorf("%w: point of %d bytes, want %d", ErrEncoding, len(b), PointSize)
	}
	p := Point(b)
	if _, err := p.decode(); err != nil {
		return Point{}, err
	}
	return p, nil
}

// ParseScalar checks that b is a canonical scalar (32 bytes, little endian,
// less than l) and returns it. It rejects anything else with ErrEncoding.
func ParseScalar(b []byte) (Scalar, error) {
	if len(b) != ScalarSize {
		return Scalar{}, fmt.Errorf("%w: scalar of %d bytes, want %d", ErrEncoding, len(b), ScalarSize)
	}
	s := Scalar(b)
	if _, err := s.decode(); err != nil {
		return Scalar{}, err
	}
	return s, nil
}

// ParseCiphertext checks that b is two canonical Points (C1 || C2) and
// returns them as a Ciphertext; the error says which half is bad.
func ParseCiphertext(b []byte) (Ciphertext, error) {
	if len(b) != CiphertextSize {
		return Ciphertext{}, fmt.Errorf("%w: ciphertext of %d bytes, want %d", ErrEncoding, len(b), CiphertextSize)
	}
	c := Ciphertext(b)
	if _, _, err := decodePair(c[:]); err != nil {
		return Ciphertext{}, err
	}
	return c, nil
}

// ParseValueCiphertext is ParseCiphertext for a ValueCiphertext.
func ParseValueCiphertext(b []byte) (ValueCiphertext, error) {
	if len(b) != CiphertextSize {
		return ValueCiphertext{}, fmt.Errorf("%w: value ciphertext of %d bytes, want %d", ErrEncoding, len(b), CiphertextSize)
	}
	c := ValueCiphertext(b)
	if _, _, err := decodePair(c[:]); err != nil {
		return ValueCiphertext{}, err
	}
	return c, nil
}

// RandomScalar returns a uniformly random scalar (64 bytes from crypto/rand
// reduced modulo l; the bias is below 2^-250). It is nonzero except with
// probability 1/l.
func RandomScalar() Scalar {
	var buf [64]byte
	_, _ = rand.Read(buf[:]) // never fails since Go 1.24 (it crashes the program instead)
	return encodeScalar(scalarFromUniform(buf[:]))
}

// RandomPoint returns a uniformly random group element, whose discrete log
// nobody knows (it is hashed from 64 bytes of crypto/rand). Nodes encrypt
// such a point as a DP dummy resident.
func RandomPoint() Point {
	var buf [64]byte
	_, _ = rand.Read(buf[:])
	e := ristretto255.NewIdentityElement()
	if _, err := e.SetUniformBytes(buf[:]); err != nil {
		panic("linkage: SetUniformBytes: " + err.Error()) // 64 bytes: cannot happen
	}
	return encodePoint(e)
}

// ---- internal codec --------------------------------------------------------

func (p *Point) decode() (*ristretto255.Element, error) {
	e := ristretto255.NewIdentityElement()
	if _, err := e.SetCanonicalBytes(p[:]); err != nil {
		return nil, fmt.Errorf("%w: point", ErrEncoding)
	}
	return e, nil
}

func (s *Scalar) decode() (*ristretto255.Scalar, error) {
	x := ristretto255.NewScalar()
	if _, err := x.SetCanonicalBytes(s[:]); err != nil {
		return nil, fmt.Errorf("%w: scalar", ErrEncoding)
	}
	return x, nil
}

// decodePair decodes 64 bytes as two canonical points, naming the bad half.
func decodePair(b []byte) (c1, c2 *ristretto255.Element, err error) {
	c1 = ristretto255.NewIdentityElement()
	if _, err := c1.SetCanonicalBytes(b[:PointSize]); err != nil {
		return nil, nil, fmt.Errorf("%w: C1 is not a canonical point", ErrEncoding)
	}
	c2 = ristretto255.NewIdentityElement()
	if _, err := c2.SetCanonicalBytes(b[PointSize:CiphertextSize]); err != nil {
		return nil, nil, fmt.Errorf("%w: C2 is not a canonical point", ErrEncoding)
	}
	return c1, c2, nil
}

func encodePoint(e *ristretto255.Element) Point {
	var p Point
	e.Encode(p[:0])
	return p
}

func putPair(dst []byte, c1, c2 *ristretto255.Element) {
	c1.Encode(dst[:0])
	c2.Encode(dst[PointSize:PointSize])
}

func encodeScalar(x *ristretto255.Scalar) Scalar {
	var s Scalar
	x.Encode(s[:0])
	return s
}

func scalarFromUniform(b []byte) *ristretto255.Scalar {
	x := ristretto255.NewScalar()
	if _, err := x.SetUniformBytes(b); err != nil {
		panic("linkage: SetUniformBytes: " + err.Error()) // 64 bytes: cannot happen
	}
	return x
}

// scalarFromUint64 returns x as a scalar (x < 2^64 < l, so it is canonical).
func scalarFromUint64(x uint64) *ristretto255.Scalar {
	var b [ScalarSize]byte
	for i := range 8 {
		b[i] = byte(x >> (8 * i))
	}
	s := ristretto255.NewScalar()
	if _, err := s.SetCanonicalBytes(b[:]); err != nil {
		panic("linkage: small scalar not canonical") // cannot happen
	}
	return s
}

// scalarFromInt64 returns v mod l (a negative v becomes l − |v|) without
// branching on v: uint64(v) is v + 2^64 when v is negative, and the sign bit
// times 2^64 is subtracted back with constant-time scalar arithmetic.
func scalarFromInt64(v int64) *ristretto255.Scalar {
	s := scalarFromUint64(uint64(v))
	sign := scalarFromUint64(uint64(v) >> 63)
	return s.Subtract(s, sign.Multiply(sign, two64))
}

// two64 is the scalar 2^64.
var two64 = func() *ristretto255.Scalar {
	var b [ScalarSize]byte
	b[8] = 1
	s, err := ristretto255.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic("linkage: 2^64 not canonical") // cannot happen
	}
	return s
}()

// decodeKey decodes a public key and rejects the identity, under which
// ElGamal encryption would leave the message in the clear.
func decodeKey(x Point) (*ristretto255.Element, error) {
	e, err := x.decode()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if x == (Point{}) {
		return nil, fmt.Errorf("%w: public key is the identity", ErrInvalidArgument)
	}
	return e, nil
}

// randReader hands out crypto/rand bytes in blocks to amortise the calls.
type randReader struct {
	buf [4096]byte
	off int
}

func newRandReader() *randReader { return &randReader{off: 4096} }

// next returns n fresh bytes (n <= 4096), valid until the next call.
func (r *randReader) next(n int) []byte {
	if r.off+n > len(r.buf) {
		_, _ = rand.Read(r.buf[:])
		r.off = 0
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	return b
}

func (r *randReader) scalar() *ristretto255.Scalar { return scalarFromUniform(r.next(64)) }
