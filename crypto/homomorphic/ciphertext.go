package homomorphic

import (
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"

	"github.com/fedstat/fedstat/crypto/internal/lowlevel"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
)

// Ciphertext is one BGV ciphertext (degree 1, top level) packing Slots()
// integers modulo t.
type Ciphertext struct {
	p  Params
	ct *rlwe.Ciphertext
}

// MarshalBinary encodes the ciphertext (Params.CiphertextSize bytes).
func (c *Ciphertext) MarshalBinary() ([]byte, error) {
	if err := c.valid(); err != nil {
		return nil, err
	}
	return encodePolys(c.p, polycodec.KindCiphertext, 0, 0, c.ct.Value[0], c.ct.Value[1])
}

// UnmarshalCiphertext decodes and validates a ciphertext: exact size, degree
// 1, top level, ring degree and parameter set, and every coefficient reduced
// modulo its prime. It never panics on hostile input.
func UnmarshalCiphertext(p Params, b []byte) (*Ciphertext, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	ct := p.newCiphertext()
	if _, err := decodePolys(p, polycodec.KindCiphertext, p.s.bgv.MaxLevel(), b, ct.Value[0], ct.Value[1]); err != nil {
		return nil, err
	}
	return &Ciphertext{p: p, ct: ct}, nil
}

// Params returns the parameter set of the ciphertext.
func (c *Ciphertext) Params() Params { return c.p }

// Equal reports whether c and o are the same ciphertext (same parameter set
// and identical coefficients). A node uses it to check that the aggregate it
// is asked to key-switch is the sum it recomputed from the signed partials.
func (c *Ciphertext) Equal(o *Ciphertext) bool {
	return c != nil && o != nil && c.ct != nil && o.ct != nil && c.p.Equal(o.p) && c.ct.Equal(o.ct)
}

// Clone returns a deep copy.
func (c *Ciphertext) Clone() *Ciphertext { return &Ciphertext{p: c.p, ct: c.ct.CopyNew()} }

// RLWE returns the Lattigo ciphertext. Only for packages under crypto/.
func (c *Ciphertext) RLWE(lowlevel.Token) *rlwe.Ciphertext { return c.ct }

// WrapCiphertext wraps a Lattigo ciphertext. Only for packages under crypto/.
func WrapCiphertext(_ lowlevel.Token, p Params, ct *rlwe.Ciphertext) *Ciphertext {
	return &Ciphertext{p: p, ct: ct}
}

func (p Params) newCiphertext() *rlwe.Ciphertext {
	ct := bgv.NewCiphertext(p.s.bgv, 1, p.s.bgv.MaxLevel())
	*ct.MetaData = p.s.meta
	return ct
}

func (c *Ciphertext) valid() error {
	if c == nil || c.ct == nil || !c.p.valid() {
		return fmt.Errorf("%w: nil ciphertext", ErrInvalidArgument)
	}
	if c.ct.Degree() != 1 || c.ct.Level() != c.p.s.bgv.MaxLevel() {
		return fmt.Errorf("%w: ciphertext degree %d level %d", ErrMismatch, c.ct.Degree(), c.ct.Level())
	}
	return nil
}

func (c *Ciphertext) validFor(p Params) error {
	if err := c.valid(); err != nil {
		return err
	}
	if !c.p.Equal(p) {
		return fmt.Errorf("%w: ciphertext of parameter set %q used with %q", ErrMismatch, c.p.Name(), p.Name())
	}
	return nil
}

// NumCiphertexts returns how many ciphertexts Encrypt produces for n values.
func (p Params) NumCiphertexts(n int) int {
	if n <= 0 {
		return 0
	}
	return (n + p.s.slots - 1) / p.s.slots
}

// Encrypt encodes values centred modulo t (negative v as t+v) and encrypts
// them under pk, Slots() values per ciphertext; it returns
// ceil(len(values)/Slots()) ciphertexts, the last one zero-padded. Every
// |v| must be at most MaxAbs().
func Encrypt(p Params, pk *PublicKey, values []int64) ([]*Ciphertext, error) {
	if err := p.checkKey(pk); err != nil {
		return nil, err
	}
	if len(values) == 0 {
		return nil, fmt.Errorf("%w: no values", ErrInvalidArgument)
	}
	maxAbs := p.MaxAbs()
	for i, v := range values {
		if v > maxAbs || v < -maxAbs {
			return nil, fmt.Errorf("%w: values[%d] has |v| > %d", ErrValueOutOfRange, i, maxAbs)
		}
	}
	t := p.PlaintextModulus()
	ecd := p.encoder()
	defer p.putEncoder(ecd)
	enc := rlwe.NewEncryptor(p.s.bgv, pk.pk)
	slots := p.s.slots
	buf := make([]uint64, slots)
	out := make([]*Ciphertext, 0, p.NumCiphertexts(len(values)))
	for start := 0; start < len(values); start += slots {
		chunk := values[start:min(start+slots, len(values))]
		clear(buf)
		for i, v := range chunk {
			if v < 0 {
				buf[i] = t - uint64(-v)
			} else {
				buf[i] = uint64(v)
			}
		}
		pt := bgv.NewPlaintext(p.s.bgv, p.s.bgv.MaxLevel())
		if err := ecd.Encode(buf, pt); err != nil {
			return nil, fmt.Errorf("homomorphic: encode: %w", err)
		}
		ct := p.newCiphertext()
		if err := enc.Encrypt(pt, ct); err != nil {
			return nil, fmt.Errorf("homomorphic: encrypt: %w", err)
		}
		out = append(out, &Ciphertext{p: p, ct: ct})
	}
	return out, nil
}

// Add sets dst = dst + src. dst must not be read or written by another
// goroutine during the call.
func Add(p Params, dst, src *Ciphertext) error {
	if err := dst.validFor(p); err != nil {
		return err
	}
	if err := src.validFor(p); err != nil {
		return err
	}
	rQ := p.ringQ().AtLevel(dst.ct.Level())
	rQ.Add(dst.ct.Value[0], src.ct.Value[0], dst.ct.Value[0])
	rQ.Add(dst.ct.Value[1], src.ct.Value[1], dst.ct.Value[1])
	return nil
}

// Sub sets dst = dst - src, the encryption of the difference of the
// plaintexts. The product never subtracts partials; the security tests use
// it to play a member that sends the negation of another's partial. dst
// must not be read or written by another goroutine during the call.
func Sub(p Params, dst, src *Ciphertext) error {
	if err := dst.validFor(p); err != nil {
		return err
	}
	if err := src.validFor(p); err != nil {
		return err
	}
	rQ := p.ringQ().AtLevel(dst.ct.Level())
	rQ.Sub(dst.ct.Value[0], src.ct.Value[0], dst.ct.Value[0])
	rQ.Sub(dst.ct.Value[1], src.ct.Value[1], dst.ct.Value[1])
	return nil
}

// Sum returns the element-wise sum of several encrypted vectors, which must
// all have the same number of ciphertexts. The inputs are not modified.
func Sum(p Params, vectors [][]*Ciphertext) ([]*Ciphertext, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if len(vectors) == 0 || len(vectors[0]) == 0 {
		return nil, fmt.Errorf("%w: nothing to sum", ErrInvalidArgument)
	}
	n := len(vectors[0])
	for i, v := range vectors {
		if len(v) != n {
			return nil, fmt.Errorf("%w: vector %d has %d ciphertexts, want %d", ErrMismatch, i, len(v), n)
		}
	}
	out := make([]*Ciphertext, n)
	for j := range n {
		if err := vectors[0][j].validFor(p); err != nil {
			return nil, fmt.Errorf("vector 0, ciphertext %d: %w", j, err)
		}
		out[j] = vectors[0][j].Clone()
		for i := 1; i < len(vectors); i++ {
			if err := Add(p, out[j], vectors[i][j]); err != nil {
				return nil, fmt.Errorf("vector %d, ciphertext %d: %w", i, j, err)
			}
		}
	}
	return out, nil
}

// Aggregator accumulates encrypted vectors of a fixed length, one partial at
// a time. It is not safe for concurrent use; guard it with a mutex.
type Aggregator struct {
	p   Params
	sum []*Ciphertext
	n   int
}

// NewAggregator returns an empty aggregator for vectors of numCiphertexts
// ciphertexts.
func NewAggregator(p Params, numCiphertexts int) (*Aggregator, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if numCiphertexts <= 0 {
		return nil, fmt.Errorf("%w: %d ciphertexts", ErrInvalidArgument, numCiphertexts)
	}
	return &Aggregator{p: p, sum: make([]*Ciphertext, numCiphertexts)}, nil
}

// Add adds one encrypted vector. On error the aggregate is unchanged.
func (a *Aggregator) Add(v []*Ciphertext) error {
	if len(v) != len(a.sum) {
		return fmt.Errorf("%w: vector has %d ciphertexts, want %d", ErrMismatch, len(v), len(a.sum))
	}
	for j, c := range v {
		if err := c.validFor(a.p); err != nil {
			return fmt.Errorf("ciphertext %d: %w", j, err)
		}
	}
	for j, c := range v {
		if a.sum[j] == nil {
			a.sum[j] = c.Clone()
			continue
		}
		_ = Add(a.p, a.sum[j], c) // validated above
	}
	a.n++
	return nil
}

// Count returns the number of vectors added.
func (a *Aggregator) Count() int { return a.n }

// Result returns a copy of the current sum, or an error if nothing was added.
func (a *Aggregator) Result() ([]*Ciphertext, error) {
	if a.n == 0 {
		return nil, fmt.Errorf("%w: nothing aggregated", ErrInvalidArgument)
	}
	out := make([]*Ciphertext, len(a.sum))
	for j, c := range a.sum {
		out[j] = c.Clone()
	}
	return out, nil
}

// Decrypt decrypts ciphertexts that were key-switched to k and returns the
// first n values, centred in [-MaxAbs(), MaxAbs()].
func Decrypt(p Params, k *ResultKey, cts []*Ciphertext, n int) ([]int64, error) {
	return decrypt(p, k, cts, n, false)
}

// DecryptTotal is Decrypt for the total of a release: cts must be exactly
// the ciphertexts n values take (NumCiphertexts), and the slots after the
// first n, which every well-formed partial and key-switch share leave zero
// (Encrypt pads with zeros), must decrypt to zero. A total with anything
// else there is refused with ErrPadding: some member's partial or
// key-switch share changed every slot of the sum (a value beyond the
// plan's vector, a key-switch share of another sum, or the one shift a
// proof of encryption does not exclude: docs/crypto.md, "What the
// relaxation allows"), and the values in the plan's slots are not
// returned. Padding slots carry no data and no noise, so the check
// reveals nothing; a vector that fills its last ciphertext has none, and
// is left to the release's range check (dp.CheckTotals).
func DecryptTotal(p Params, k *ResultKey, cts []*Ciphertext, n int) ([]int64, error) {
	return decrypt(p, k, cts, n, true)
}

// decrypt is Decrypt, and DecryptTotal when padding is set.
func decrypt(p Params, k *ResultKey, cts []*Ciphertext, n int, padding bool) ([]int64, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if want := p.NumCiphertexts(n); padding && len(cts) != want {
		return nil, fmt.Errorf("%w: %d ciphertexts for %d values, want %d", ErrInvalidArgument, len(cts), n, want)
	}
	if k == nil || k.sk == nil || !k.p.Equal(p) {
		return nil, fmt.Errorf("%w: result key missing or of another parameter set", ErrMismatch)
	}
	slots := p.s.slots
	if n < 0 || n > len(cts)*slots {
		return nil, fmt.Errorf("%w: n=%d for %d ciphertexts of %d slots", ErrInvalidArgument, n, len(cts), slots)
	}
	t := p.PlaintextModulus()
	half := (t - 1) / 2
	ecd := p.encoder()
	defer p.putEncoder(ecd)
	dec := rlwe.NewDecryptor(p.s.bgv, k.sk)
	out := make([]int64, 0, n)
	buf := make([]uint64, slots)
	for j := 0; len(out) < n || (padding && j < len(cts)); j++ {
		if err := cts[j].validFor(p); err != nil {
			return nil, fmt.Errorf("ciphertext %d: %w", j, err)
		}
		pt := bgv.NewPlaintext(p.s.bgv, cts[j].ct.Level())
		dec.Decrypt(cts[j].ct, pt)
		if err := ecd.Decode(pt, buf); err != nil {
			return nil, fmt.Errorf("homomorphic: decode: %w", err)
		}
		used := min(slots, n-len(out))
		for _, u := range buf[:used] {
			if u > half {
				out = append(out, -int64(t-u))
			} else {
				out = append(out, int64(u))
			}
		}
		if !padding {
			continue
		}
		for i, u := range buf[used:] {
			if u != 0 {
				return nil, fmt.Errorf("%w: ciphertext %d, slot %d is not zero (one of the %d slots after the total's first %d)", ErrPadding, j, used+i, slots-used, n)
			}
		}
	}
	return out, nil
}
