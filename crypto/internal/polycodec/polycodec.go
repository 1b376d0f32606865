// Package polycodec is the strict wire format for every lattice object that
// fedstat serialises: ciphertexts, keys and protocol shares.
//
// Lattigo's own decoders trust their input (length prefixes drive
// allocations, and malformed bytes can panic), so fedstat never feeds
// untrusted bytes to them. Instead every object is a fixed header followed by
// a fixed number of polynomials over the ciphertext modulus Q, each stored as
// (level+1)*N little-endian uint64 coefficients. The decoder checks the exact
// length before allocating and checks every coefficient against its modulus,
// so it cannot panic or over-allocate on hostile input.
//
// Layout (all integers little-endian):
//
//	offset size field
//	0      4    magic "FSHE"
//	4      1    version (1)
//	5      1    kind
//	6      1    number of polynomials
//	7      1    level (number of RNS limbs - 1)
//	8      8    parameter-set identifier
//	16     8    aux0 (kind-specific, e.g. a Shamir point)
//	24     8    aux1 (kind-specific, e.g. a threshold)
//	32     ...  coefficients
package polycodec

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// Kind tags what an encoded object is, so that one kind of object can never
// be decoded as another.
type Kind byte

// Kinds of encoded objects.
const (
	KindCiphertext Kind = iota + 1
	KindPublicKey
	KindSecretKey
	KindResultKey
	KindCKGShare
	KindKeySwitchShare
	KindShamirShare
	KindThresholdShare
	// KindShamirImages: a dealer's images of its Shamir polynomial's
	// coefficients after the constant one (Aux0: the threshold).
	KindShamirImages
	// KindThresholdImage: the image of a member's aggregate Shamir share
	// (Aux0: its point, Aux1: the bound on its error).
	KindThresholdImage
)

// NumPolys returns the polynomial count an encoding's header states (not
// validated: Decode checks it with everything else).
func NumPolys(b []byte) (int, error) {
	if len(b) < HeaderSize {
		return 0, fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(b))
	}
	return int(b[6]), nil
}

// HeaderSize is the size in bytes of the fixed header.
const HeaderSize = 32

const version = 1

var magic = [4]byte{'F', 'S', 'H', 'E'}

// ErrMalformed is returned (wrapped) for any input that is not a well-formed
// encoding of the expected object.
var ErrMalformed = errors.New("polycodec: malformed encoding")

// Header is the decoded fixed header.
type Header struct {
	Kind     Kind
	NumPolys int
	Level    int
	ParamsID [8]byte
	Aux0     uint64
	Aux1     uint64
}

// Size returns the encoded size of numPolys polynomials at the given level
// in a ring of degree n.
func Size(n, numPolys, level int) int {
	return HeaderSize + numPolys*(level+1)*n*8
}

// Encode writes the header and the polynomials. All polynomials must be at
// level h.Level over ringQ.
func Encode(ringQ *ring.Ring, h Header, polys ...ring.Poly) ([]byte, error) {
	if h.NumPolys != len(polys) || h.NumPolys < 1 || h.NumPolys > 255 {
		return nil, fmt.Errorf("polycodec: encode: %d polynomials for header count %d", len(polys), h.NumPolys)
	}
	if h.Level < 0 || h.Level > ringQ.MaxLevel() {
		return nil, fmt.Errorf("polycodec: encode: level %d out of range", h.Level)
	}
	n := ringQ.N()
	out := make([]byte, Size(n, h.NumPolys, h.Level))
	copy(out[0:4], magic[:])
	out[4] = version
	out[5] = byte(h.Kind)
	out[6] = byte(h.NumPolys)
	out[7] = byte(h.Level)
	copy(out[8:16], h.ParamsID[:])
	binary.LittleEndian.PutUint64(out[16:24], h.Aux0)
	binary.LittleEndian.PutUint64(out[24:32], h.Aux1)
	off := HeaderSize
	for _, p := range polys {
		if p.Level() < h.Level || p.N() != n {
			return nil, fmt.Errorf("polycodec: encode: polynomial shape (N=%d, level=%d) does not match (N=%d, level=%d)", p.N(), p.Level(), n, h.Level)
		}
		for i := 0; i <= h.Level; i++ {
			for _, c := range p.Coeffs[i][:n] {
				binary.LittleEndian.PutUint64(out[off:], c)
				off += 8
			}
		}
	}
	return out, nil
}

// Want describes what the decoder accepts.
type Want struct {
	Kind     Kind
	NumPolys int
	// Level is the required level; -1 accepts any level in [0, ringQ.MaxLevel()].
	Level    int
	ParamsID [8]byte
}

// DecodeHeader parses and validates the header against w and the exact total
// length of b. It never allocates more than the header.
func DecodeHeader(ringQ *ring.Ring, w Want, b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(b))
	}
	if [4]byte(b[0:4]) != magic || b[4] != version {
		return h, fmt.Errorf("%w: bad magic or version", ErrMalformed)
	}
	h.Kind = Kind(b[5])
	h.NumPolys = int(b[6])
	h.Level = int(b[7])
	copy(h.ParamsID[:], b[8:16])
	h.Aux0 = binary.LittleEndian.Uint64(b[16:24])
	h.Aux1 = binary.LittleEndian.Uint64(b[24:32])
	if h.Kind != w.Kind {
		return h, fmt.Errorf("%w: kind %d, want %d", ErrMalformed, h.Kind, w.Kind)
	}
	if h.ParamsID != w.ParamsID {
		return h, fmt.Errorf("%w: encoded for another parameter set", ErrMalformed)
	}
	if h.NumPolys != w.NumPolys {
		return h, fmt.Errorf("%w: %d polynomials, want %d", ErrMalformed, h.NumPolys, w.NumPolys)
	}
	if h.Level > ringQ.MaxLevel() || (w.Level >= 0 && h.Level != w.Level) {
		return h, fmt.Errorf("%w: level %d not accepted", ErrMalformed, h.Level)
	}
	if want := Size(ringQ.N(), h.NumPolys, h.Level); len(b) != want {
		return h, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(b), want)
	}
	return h, nil
}

// Decode validates b against w and fills polys, which must have been
// allocated by the caller with w.NumPolys entries at level >= the encoded
// level (use DecodeHeader first when the level is not fixed). Every
// coefficient is checked to be reduced modulo its RNS prime.
func Decode(ringQ *ring.Ring, w Want, b []byte, polys []ring.Poly) (Header, error) {
	h, err := DecodeHeader(ringQ, w, b)
	if err != nil {
		return h, err
	}
	if len(polys) != h.NumPolys {
		return h, fmt.Errorf("polycodec: decode: %d output polynomials for %d encoded", len(polys), h.NumPolys)
	}
	n := ringQ.N()
	moduli := ringQ.ModuliChain()
	off := HeaderSize
	for k, p := range polys {
		if p.N() != n || p.Level() < h.Level {
			return h, fmt.Errorf("polycodec: decode: output polynomial %d has the wrong shape", k)
		}
		for i := 0; i <= h.Level; i++ {
			q := moduli[i]
			dst := p.Coeffs[i][:n]
			for j := range dst {
				c := binary.LittleEndian.Uint64(b[off:])
				if c >= q {
					return h, fmt.Errorf("%w: coefficient not reduced modulo q%d", ErrMalformed, i)
				}
				dst[j] = c
				off += 8
			}
		}
	}
	return h, nil
}
