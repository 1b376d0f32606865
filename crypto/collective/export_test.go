package collective

import (
	"encoding/binary"
	"math/bits"
	mrand "math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
)

// AdditiveUnchecked skips the threshold check so tests can show that fewer
// than T members get garbage.
var AdditiveUnchecked = (*ThresholdShare).additive

// WideErrorShare is share with an error of about 2^log2 (log2 >= 40) added
// to every coefficient: a CKG share that is not a well-formed RLWE sample,
// of the kind a deviating member could send.
func WideErrorShare(p homomorphic.Params, share []byte, log2 int) ([]byte, error) {
	rq := p.BGV(tok).RingQ()
	poly := rq.NewPoly()
	if _, err := decode(p, polycodec.KindCKGShare, p.BGV(tok).MaxLevel(), share, poly); err != nil {
		return nil, err
	}
	// The share is in the NTT and Montgomery domains: the error goes on its
	// coefficients, r * 2^(log2-40) with r uniform in [-2^40, 2^40].
	rq.INTT(poly, poly)
	e := rq.NewPoly()
	const half = uint64(1) << 40
	for j := range e.Coeffs[0] {
		r := mrand.Uint64N(2*half + 1)
		for i, qi := range rq.ModuliChain() {
			m := uint64(1)
			for range log2 - 40 {
				m = m * 2 % qi
			}
			v := (r%qi + qi - half%qi) % qi
			hi, lo := bits.Mul64(v, m)
			_, e.Coeffs[i][j] = bits.Div64(hi, lo, qi)
		}
	}
	rq.MForm(e, e)
	rq.Add(poly, e, poly)
	rq.NTT(poly, poly)
	return encode(p, polycodec.KindCKGShare, 0, 0, poly)
}

// ShiftShareForTest adds the ciphertext shift (under the share's target
// key) to a key-switch share: the switched sum then decrypts to its total
// plus shift's value, as a decryptor that shifts its share on purpose
// would make it.
func ShiftShareForTest(t testing.TB, p homomorphic.Params, share []byte, shift *homomorphic.Ciphertext) []byte {
	t.Helper()
	r := p.BGV(tok).RingQ()
	h0, h1 := decodeShareForTest(t, p, share)
	c := shift.RLWE(tok)
	r.Add(h0, c.Value[0], h0)
	r.Add(h1, c.Value[1], h1)
	b, err := encodeAt(p, polycodec.KindKeySwitchShare, p.BGV(tok).MaxLevel(), 0, 0, h0, h1)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RelabelShamirShareForTest returns a Shamir share's encoding addressed to
// point x instead (its header only).
func RelabelShamirShareForTest(t testing.TB, p homomorphic.Params, share []byte, x uint64) []byte {
	t.Helper()
	out := append([]byte(nil), share...)
	binary.LittleEndian.PutUint64(out[16:24], x)
	return out
}

// RelabelImageForTest returns a threshold image's encoding as point x's.
func RelabelImageForTest(t testing.TB, p homomorphic.Params, image []byte, x uint64) []byte {
	return RelabelShamirShareForTest(t, p, image, x)
}

// ShiftShamirShareForTest adds d to every coefficient of a Shamir share,
// as a dealer that sends a recipient another value would.
func ShiftShamirShareForTest(t testing.TB, p homomorphic.Params, share []byte, d uint64) []byte {
	t.Helper()
	r := p.BGV(tok).RingQ()
	sigma := r.NewPoly()
	h, err := decode(p, polycodec.KindShamirShare, p.BGV(tok).MaxLevel(), share, sigma)
	if err != nil {
		t.Fatal(err)
	}
	r.AddScalar(sigma, d, sigma)
	b, err := encode(p, polycodec.KindShamirShare, h.Aux0, h.Aux1, sigma)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// DealBoundForTest is dealBound(x, t), 0 when it does not fit.
func DealBoundForTest(x uint64, t int) int64 {
	b, err := dealBound(x, t)
	if err != nil {
		return 0
	}
	return b
}

// RingNForTest is the ring degree of p.
func RingNForTest(p homomorphic.Params) int { return p.BGV(tok).N() }

// ShareMaskForTest returns the second polynomial of a key-switch share,
// h1 = u*target1 + e1: it depends on the share's randomness and target
// only, so two shares towards one target with the same h1 drew the same
// randomness.
func ShareMaskForTest(t testing.TB, p homomorphic.Params, share []byte) []uint64 {
	t.Helper()
	_, h1 := decodeShareForTest(t, p, share)
	var out []uint64
	for _, row := range h1.Coeffs {
		out = append(out, row...)
	}
	return out
}

// decodeShareForTest decodes a key-switch share at the top level.
func decodeShareForTest(t testing.TB, p homomorphic.Params, share []byte) (h0, h1 ring.Poly) {
	t.Helper()
	r := p.BGV(tok).RingQ()
	h0, h1 = r.NewPoly(), r.NewPoly()
	if _, err := decode(p, polycodec.KindKeySwitchShare, p.BGV(tok).MaxLevel(), share, h0, h1); err != nil {
		t.Fatal(err)
	}
	return h0, h1
}

// OneSetImagesForTest returns a dealer's images as a dealer of the version
// before two sets sent them: the first set only, without the proof.
func OneSetImagesForTest(t testing.TB, p homomorphic.Params, images []byte) []byte {
	t.Helper()
	enc, _, err := splitImages(p, images)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := polycodec.NumPolys(enc)
	r := p.BGV(tok).RingQ()
	polys := make([]ring.Poly, n)
	for i := range polys {
		polys[i] = r.NewPoly()
	}
	h, err := decode(p, polycodec.KindShamirImages, p.BGV(tok).MaxLevel(), enc, polys...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := encode(p, polycodec.KindShamirImages, h.Aux0, 0, polys[:h.Aux0-1]...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ImageCoefficientOffsetForTest is the byte offset, in a dealer's images
// of threshold t, of the first coefficient of A'_k (the second set).
func ImageCoefficientOffsetForTest(p homomorphic.Params, t, k int) int {
	return polycodec.Size(p.BGV(tok).N(), t-1+k, p.BGV(tok).MaxLevel())
}

// FirstImageOnlyForTest returns a threshold image as an epoch installed
// before two sets of images stored it: P(x) alone.
func FirstImageOnlyForTest(t testing.TB, p homomorphic.Params, image []byte) []byte {
	t.Helper()
	img, err := decodeThresholdImage(p, p.BGV(tok).MaxLevel(), image)
	if err != nil {
		t.Fatal(err)
	}
	b, err := encode(p, polycodec.KindThresholdImage, img.x, uint64(img.bound), img.p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
