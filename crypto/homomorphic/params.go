// Package homomorphic wraps Lattigo's BGV scheme for fedstat: parameter
// sets, keys, packed encryption of int64 vectors with centred encoding,
// additions of ciphertexts and decryption of key-switched totals.
//
// It is the only place (together with the other packages under crypto/)
// that knows about Lattigo; nothing in its exported API outside the
// low-level accessors (which need a crypto/internal token) exposes Lattigo
// types.
//
// Concurrency: all package functions and methods are safe to call from many
// goroutines at once, provided a goroutine does not mutate an object another
// one is reading (Add writes its dst argument). Lattigo objects are
// allocated per call or shallow-copied internally.
package homomorphic

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sync"
	"sync/atomic"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"

	"github.com/fedstat/fedstat/crypto/internal/lowlevel"
	"github.com/fedstat/fedstat/crypto/internal/smudge"
)

// Names of the parameter sets.
const (
	// ProductionSet: ring degree 2^13 (8192 slots), ciphertext modulus Q of
	// two 60-bit primes (log2 Q = 120, no special modulus P), plaintext
	// modulus t = 1099512938497 (about 2^40, prime, 1 mod 2^14), ternary
	// secrets, error sigma 3.2, key-switch smudging sigma 2^60.5. About 192-bit
	// security or more by the HE standard (LogN=13 allows log2(QP) <= 152 for
	// 192-bit and <= 218 for 128-bit). See docs/crypto.md.
	ProductionSet = "bgv-n13-t40-q120"
	// InsecureTestSet is the same construction at ring degree 2^12 with the
	// same moduli: log2 Q = 120 exceeds the 109 bits allowed for 128-bit
	// security at that degree, so it is INSECURE and only for tests.
	InsecureTestSet = "INSECURE-test-n12"
)

// Errors returned by this package, wrapped with %w.
var (
	ErrUnknownParams   = errors.New("homomorphic: unknown parameter set")
	ErrInsecureParams  = errors.New("homomorphic: insecure parameter set refused (tests only)")
	ErrValueOutOfRange = errors.New("homomorphic: value out of plaintext range")
	ErrMalformed       = errors.New("homomorphic: malformed input")
	ErrMismatch        = errors.New("homomorphic: incompatible operands")
	ErrInvalidArgument = errors.New("homomorphic: invalid argument")
	// ErrPadding: a decrypted total has a nonzero slot where every
	// well-formed partial has zero (DecryptTotal).
	ErrPadding = errors.New("homomorphic: a padding slot of the decrypted total is not zero: a member's partial or key-switch share was not well formed; nothing is released")
)

var allowInsecure atomic.Bool

// AllowInsecureForTests lets NewParams return InsecureTestSet. Call it only
// from tests (for example in TestMain); production binaries never do.
func AllowInsecureForTests() { allowInsecure.Store(true) }

// plaintextModulus is prime, about 2^40, and 1 mod 2^16, so it gives full
// batching (N slots) for every ring degree up to 2^15.
const plaintextModulus uint64 = 1099512938497

// The smudging noise each party adds to its key-switch share is the exact
// discrete Gaussian with sigma^2 = smudgingT * smudgingH = 2^121 (sigma =
// 2^60.5), truncated at 10 sigma (see crypto/internal/smudge and
// docs/crypto.md for the derivation).
const (
	smudgingT = 1 << 61
	smudgingH = 1 << 60
)

type paramSpec struct {
	logN     int
	q        []uint64 // pinned, so that keys stay valid across Lattigo versions
	insecure bool
}

var specs = map[string]paramSpec{
	// Two 60-bit primes = 1 mod 2^14 (what Lattigo generates for LogQ {60, 60}).
	ProductionSet:   {logN: 13, q: []uint64{0xfffffffffffc001, 0xffffffffffe8001}},
	InsecureTestSet: {logN: 12, q: []uint64{0xfffffffffffc001, 0x100000000000e001}, insecure: true},
}

// Params is an immutable, validated parameter set. The zero value is not
// usable; get one from NewParams. Params values are cheap to copy and safe
// for concurrent use.
type Params struct {
	s *paramState
}

type paramState struct {
	name     string
	id       [8]byte
	bgv      bgv.Parameters
	slots    int
	meta     rlwe.MetaData // metadata of a fresh ciphertext
	encoders sync.Pool     // *bgv.Encoder
	smudging smudge.Gaussian
	tInvQ    *big.Int // t^-1 mod Q, the scale of an encoded plaintext (proofs of encryption)
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*paramState{}
)

// NewParams returns the named parameter set. It refuses InsecureTestSet
// unless AllowInsecureForTests was called. Parameter sets are built once per
// process and shared.
func NewParams(name string) (Params, error) {
	spec, ok := specs[name]
	if !ok {
		return Params{}, fmt.Errorf("%w: %q", ErrUnknownParams, name)
	}
	if spec.insecure && !allowInsecure.Load() {
		return Params{}, fmt.Errorf("%w: %q", ErrInsecureParams, name)
	}
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if st, ok := cache[name]; ok {
		return Params{st}, nil
	}
	bp, err := bgv.NewParametersFromLiteral(bgv.ParametersLiteral{
		LogN:             spec.logN,
		Q:                spec.q,
		Xs:               rlwe.DefaultXs,
		Xe:               rlwe.DefaultXe,
		PlaintextModulus: plaintextModulus,
	})
	if err != nil {
		return Params{}, fmt.Errorf("homomorphic: building %q: %w", name, err)
	}
	if bp.PCount() != 0 {
		return Params{}, fmt.Errorf("homomorphic: building %q: unexpected special modulus P", name)
	}
	if bp.MaxSlots() != bp.N() {
		return Params{}, fmt.Errorf("homomorphic: building %q: plaintext modulus gives %d slots, want %d", name, bp.MaxSlots(), bp.N())
	}
	smudging, err := smudge.NewGaussian(smudgingT, smudgingH)
	if err != nil {
		return Params{}, fmt.Errorf("homomorphic: building %q: %w", name, err)
	}
	st := &paramState{name: name, bgv: bp, slots: bp.MaxSlots(), smudging: smudging,
		tInvQ: new(big.Int).ModInverse(new(big.Int).SetUint64(plaintextModulus), bp.RingQ().Modulus())}
	sum := sha256.Sum256([]byte("fedstat/homomorphic/params/v1\x00" + name))
	copy(st.id[:], sum[:8])
	st.meta = *bgv.NewPlaintext(bp, bp.MaxLevel()).MetaData
	base := bgv.NewEncoder(bp)
	st.encoders.New = func() any { return base.ShallowCopy() }
	cache[name] = st
	return Params{st}, nil
}

func (p Params) valid() bool { return p.s != nil }

func (p Params) check() error {
	if !p.valid() {
		return fmt.Errorf("%w: zero Params", ErrInvalidArgument)
	}
	return nil
}

// checkKey is check, then that pk is a public key of p.
func (p Params) checkKey(pk *PublicKey) error {
	if err := p.check(); err != nil {
		return err
	}
	if pk == nil || pk.pk == nil || !pk.p.Equal(p) {
		return fmt.Errorf("%w: public key missing or of another parameter set", ErrMismatch)
	}
	return nil
}

// Name returns the parameter set's name.
func (p Params) Name() string {
	if !p.valid() {
		return ""
	}
	return p.s.name
}

// String returns the name.
func (p Params) String() string { return p.Name() }

// Slots returns the number of integer slots per ciphertext.
func (p Params) Slots() int {
	if !p.valid() {
		return 0
	}
	return p.s.slots
}

// PlaintextModulus returns t.
func (p Params) PlaintextModulus() uint64 {
	if !p.valid() {
		return 0
	}
	return p.s.bgv.PlaintextModulus()
}

// MaxAbs returns the largest |v| that Encrypt accepts and that Decrypt can
// return: (t-1)/2. Sums wrap modulo t, so callers must keep the absolute value
// of every slot of a sum at or below MaxAbs too.
func (p Params) MaxAbs() int64 {
	if !p.valid() {
		return 0
	}
	return int64((p.PlaintextModulus() - 1) / 2)
}

// SmudgingSigma returns sigma of the smudging noise each party adds to a
// key-switch share: 2^60.5, the parameter of a discrete Gaussian whose
// standard deviation it equals (see crypto/internal/smudge). For headroom
// arithmetic; the sampler itself works with sigma^2 = 2^121 exactly.
func (p Params) SmudgingSigma() float64 {
	if !p.valid() {
		return 0
	}
	return p.s.smudging.Sigma()
}

// SmudgingBound returns the largest absolute value a smudging sample takes:
// floor(10 * 2^60.5), the truncation of the sampler. Every key-switch share
// adds at most this much to every noise coefficient.
func (p Params) SmudgingBound() uint64 {
	if !p.valid() {
		return 0
	}
	return p.s.smudging.Bound()
}

// Smudging returns the sampler of the smudging noise. Only for packages
// under crypto/.
func (p Params) Smudging(lowlevel.Token) smudge.Gaussian { return p.s.smudging }

// LogQ returns log2 of the ciphertext modulus.
func (p Params) LogQ() float64 { return p.s.bgv.LogQ() }

// LogN returns log2 of the ring degree.
func (p Params) LogN() int { return p.s.bgv.LogN() }

// NoiseBudgetBits returns log2(Q / (2t)): decryption is exact while the
// absolute value of every noise coefficient stays below 2^NoiseBudgetBits.
func (p Params) NoiseBudgetBits() float64 {
	return p.LogQ() - math.Log2(float64(p.PlaintextModulus())) - 1
}

// CiphertextSize returns the size in bytes of one marshalled ciphertext.
func (p Params) CiphertextSize() int { return polySize(p, 2) }

// Equal reports whether p and o are the same parameter set.
func (p Params) Equal(o Params) bool { return p.s == o.s }

// ID returns a short identifier of the parameter set, embedded in every
// serialised object so that objects of another set are rejected.
func (p Params) ID() [8]byte { return p.s.id }

// BGV returns the Lattigo parameters. Only for packages under crypto/.
func (p Params) BGV(lowlevel.Token) bgv.Parameters { return p.s.bgv }

// CiphertextMetaData returns the metadata of a ciphertext of this set.
// Only for packages under crypto/.
func (p Params) CiphertextMetaData(lowlevel.Token) rlwe.MetaData { return p.s.meta }

func (p Params) ringQ() *ring.Ring { return p.s.bgv.RingQ() }

func (p Params) encoder() *bgv.Encoder { return p.s.encoders.Get().(*bgv.Encoder) }

func (p Params) putEncoder(e *bgv.Encoder) { p.s.encoders.Put(e) }
