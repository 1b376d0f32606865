package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
	"github.com/fedstat/fedstat/crypto/internal/shortproof"
)

// Checked dealing and proofs of threshold key-switch shares (docs/crypto.md,
// "Threshold decryption", "Checked dealing", "Two sets of images"). A dealer
// i with additive secret s_i and Shamir polynomial f_i = s_i + f_i1*X + ...
// + f_i(T-1)*X^(T-1) publishes, besides its CKG share p_i = e_i - s_i*a (its
// image A_i0), the images
//
//	A_ik  = e_ik  - f_ik*a    (k = 1..T-1, NTT domain, Lattigo's form of a CKG share)
//	A'_ik = e'_ik - f_ik*a'   (k = 0..T-1, a' the second CRS polynomial)
//
// with errors from Lattigo's error distribution (|e| <= 19), and a proof
// that A'_i0 and p_i are of one secret. The recipient at point x checks the
// share sigma it received under both:
//
//	sum_k x^k*A_ik + sigma*a  and  sum_k x^k*A'_ik + sigma*a'  must be short: |.| <= 19*sum_k x^k,
//
// and refuses the dealing, naming the dealer, when either is not. The
// images of a member's aggregate share F(x) = sum_i f_i(x) are then public:
//
//	P(x) = sum_i sum_k x^k*A_ik = E(x) - F(x)*a,  P'(x) = E'(x) - F(x)*a',  |E|, |E'| <= K*19*sum_k x^k,
//
// and a decryptor of a release proves its key-switch share made with
// lambda*F(x) (lambda its Lagrange coefficient in the release's set)
// against both, as a member of an epoch with T = K proves its share against
// its CKG share, with F(x) a component uniform in R_Q (it is: a sum of
// uniform coefficients). One set of images fixed a share only up to a^-1
// times a short term, which anyone can compute; the second, under an
// independent a', fixes it exactly (a neighbour that passes both is a
// short solution of a'*U = a*U', Ring-SIS of rank 2).

// ErrDealing is returned when a dealt Shamir share does not match its
// dealer's CKG share and images.
var ErrDealing = errors.New("collective: threshold share does not match its dealer's images")

// ErrDealingUncheckable is returned by CheckDealtShare when the epoch's
// points and threshold put an honest dealer's errors beyond what a check
// can tell from a wrong share (2^58): the share is then unchecked.
var ErrDealingUncheckable = errors.New("collective: the dealing's errors are too large to check a share against its images")

// ErrThresholdProof is returned when the proof of a threshold key-switch
// share does not verify, or cannot be made for the epoch's shape.
var ErrThresholdProof = errors.New("collective: proof of the threshold key-switch share refused")

// maxImageBound is the largest bound on E(x) a proof handles: the answers
// of a component bounded by b reach b*Weight*Gamma, below 2^62.
const maxImageBound = 1 << 40

// dealBound is 19*sum_{k<t} x^k, the largest |sum_k x^k*e_ik| of an honest
// dealer, or an error when it does not fit in 2^58 (points 1..K keep it
// small: 2.1e6 for K = 10, T = 6).
func dealBound(x uint64, t int) (int64, error) {
	// Exactly, in integers: 19*(1 + x + ... + x^(t-1)), refused from 2^58
	// on (every partial sum and power below it then fits).
	const limit = 1 << 58
	sum, pow := uint64(0), uint64(1)
	for k := 0; k < t; k++ {
		if sum += pow; sum >= limit/ckgErrBound {
			return 0, fmt.Errorf("%w: point %d with threshold %d: they reach 2^58 or more", ErrDealingUncheckable, x, t)
		}
		if k+1 < t {
			hi, lo := bits.Mul64(pow, x)
			if hi != 0 || lo >= limit {
				return 0, fmt.Errorf("%w: point %d with threshold %d: they reach 2^58 or more", ErrDealingUncheckable, x, t)
			}
			pow = lo
		}
	}
	return int64(ckgErrBound * sum), nil
}

// ThresholdDealChecked is ThresholdDeal with the images of the dealt
// polynomial's coefficients, which every recipient checks its share against
// (CheckDealtShare), in two sets: under the CRS polynomial a, the
// coefficients after the constant term (the CKG share ckgShare of sk, made
// with crs, is the constant's image); under the second CRS polynomial a',
// every coefficient, with a proof that the constant's image there and
// ckgShare are of the same secret. The images are public.
func ThresholdDealChecked(p homomorphic.Params, sk *homomorphic.SecretKeyShare, t int, recipients []uint64, crs, ckgShare []byte) (shares map[uint64][]byte, images []byte, err error) {
	if err := checkParams(p); err != nil {
		return nil, nil, err
	}
	if err := checkSK(p, sk); err != nil {
		return nil, nil, err
	}
	if err := checkPoints(recipients); err != nil {
		return nil, nil, err
	}
	if t < 2 || t > len(recipients) || 2*t-1 > maxImagePolys {
		return nil, nil, fmt.Errorf("%w: threshold %d for %d recipients (a checked dealing needs 2 or more, and at most %d)", ErrInvalidArgument, t, len(recipients), (maxImagePolys+1)/2)
	}
	crp, crp2, err := bothPolys(p, crs)
	if err != nil {
		return nil, nil, err
	}
	r := p.BGV(tok).RingQ()
	ckg := r.NewPoly()
	if _, err := decode(p, polycodec.KindCKGShare, p.BGV(tok).MaxLevel(), ckgShare, ckg); err != nil {
		return nil, nil, err
	}
	s, e := ckgWitness(p, sk, crp, ckg)
	defer clear(s)
	defer clear(e)
	if !within(e, ckgErrBound) {
		return nil, nil, fmt.Errorf("%w: the CKG share is not of this secret", ErrMismatch)
	}
	thr := mhe.NewThresholdizer(p.BGV(tok))
	poly, err := thr.GenShamirPolynomial(t, sk.RLWE(tok))
	if err != nil {
		return nil, nil, fmt.Errorf("collective: shamir polynomial: %w", err)
	}
	defer func() {
		for _, c := range poly.Value {
			wipe(c.Q.Coeffs)
		}
	}()
	prng, err := sampling.NewPRNG()
	if err != nil {
		return nil, nil, err
	}
	xe, err := ring.NewSampler(prng, r, p.BGV(tok).Xe(), false)
	if err != nil {
		return nil, nil, err
	}
	// A_1..A_{T-1} under a, then A'_0..A'_{T-1} under a'.
	imgs := make([]ring.Poly, 0, 2*t-1)
	for k := 1; k < t; k++ {
		img, ek := imageOf(r, xe, poly.Value[k].Q, crp)
		clear(ek)
		imgs = append(imgs, img)
	}
	var e2 []int64 // the error of A'_0, for the proof
	defer func() { clear(e2) }()
	for k := 0; k < t; k++ {
		img, ek := imageOf(r, xe, poly.Value[k].Q, crp2)
		if k == 0 {
			e2 = ek
		} else {
			clear(ek)
		}
		imgs = append(imgs, img)
	}
	proof, err := shortproof.Prove(tieStatement(p, crp, crp2, ckg, imgs[t-1], crs, t), [][]int64{s, e, e2}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("collective: proof of the second images: %w", err)
	}
	enc, err := encode(p, polycodec.KindShamirImages, uint64(t), imagesTwoSets, imgs...)
	if err != nil {
		return nil, nil, err
	}
	images = append(enc, proof...)
	shares = make(map[uint64][]byte, len(recipients))
	share := thr.AllocateThresholdSecretShare()
	defer wipe(share.Q.Coeffs)
	for _, x := range recipients {
		thr.GenShamirSecretShare(mhe.ShamirPublicPoint(x), poly, &share)
		b, err := encode(p, polycodec.KindShamirShare, x, uint64(t), share.Q)
		if err != nil {
			return nil, nil, err
		}
		shares[x] = b
	}
	return shares, images, nil
}

// bothPolys is the CRS polynomial a of crs and the second one a'.
func bothPolys(p homomorphic.Params, crs []byte) (crp, crp2 ring.Poly, err error) {
	if crp, err = ckgPoly(p, crs); err != nil {
		return ring.Poly{}, ring.Poly{}, err
	}
	if crp2, err = secondPoly(p, crs); err != nil {
		return ring.Poly{}, ring.Poly{}, err
	}
	return crp, crp2, nil
}

// imagesTwoSets is the Aux1 of a dealer's images in two sets with their
// proof (a dealing of a version before carries 0 and one set).
const imagesTwoSets = 2

// maxImagePolys is the most polynomials an encoding holds.
const maxImagePolys = 255

// imageOf returns MForm(NTT(e)) - f*crp, as CKG's GenShare makes p_i, for
// a fresh error e from xe (returned, centred: it is secret).
func imageOf(r *ring.Ring, xe ring.Sampler, f, crp ring.Poly) (ring.Poly, []int64) {
	img := xe.ReadNew()
	e := shortproof.Centred(r, img)
	r.NTT(img, img)
	r.MForm(img, img)
	r.MulCoeffsMontgomeryThenSub(f, crp, img)
	return img, e
}

// tieStatement is what the proof that comes with a dealer's images proves:
// its CKG share ckg (A_0 under a) and its image A'_0 under a' are of one
// ternary secret s with errors |e|, |e'| <= 19:
//
//	ckg = MForm(NTT(e)) - NTT(s)*a,  A'_0 = MForm(NTT(e')) - NTT(s)*a'.
func tieStatement(p homomorphic.Params, crp, crp2, ckg, second ring.Poly, crs []byte, t int) *shortproof.Statement {
	r := p.BGV(tok).RingQ()
	ctx := []byte(p.Name())
	ctx = binary.BigEndian.AppendUint64(ctx, uint64(len(crs)))
	ctx = append(ctx, crs...)
	ctx = binary.BigEndian.AppendUint64(ctx, uint64(t))
	return &shortproof.Statement{
		Domain: "fedstat/shamir-second-images/v1",
		Ring:   r,
		Bounds: []int64{1, ckgErrBound, ckgErrBound}, // s, e, e'
		Apply: func(x [][]int64, _ []uint64, out []ring.Poly) {
			sP := shortproof.GetPoly(r)
			defer shortproof.PutPoly(r, sP)
			setMForm(r, *sP, x[0])
			setMForm(r, out[0], x[1])
			r.MulCoeffsMontgomeryThenSub(*sP, crp, out[0])
			setMForm(r, out[1], x[2])
			r.MulCoeffsMontgomeryThenSub(*sP, crp2, out[1])
		},
		Image:   []ring.Poly{ckg, second},
		Context: ctx,
	}
}

// CheckImagesShape checks that images is a dealing's images in two sets
// for threshold t, with a proof of the length it must have (not the
// proof itself: CheckDealtShare checks that against the dealer's CKG
// share). A dealer of a version before two sets fails it.
func CheckImagesShape(p homomorphic.Params, images []byte, t int) error {
	if err := checkParams(p); err != nil {
		return err
	}
	enc, proof, err := splitImages(p, images)
	if err != nil {
		return err
	}
	h, err := polycodec.DecodeHeader(p.BGV(tok).RingQ(), polycodec.Want{Kind: polycodec.KindShamirImages, NumPolys: 2*t - 1, Level: p.BGV(tok).MaxLevel(), ParamsID: p.ID()}, enc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if h.Aux0 != uint64(t) || h.Aux1 != imagesTwoSets {
		return fmt.Errorf("%w: images for threshold %d (version %d), want threshold %d in two sets", ErrMalformed, h.Aux0, h.Aux1, t)
	}
	if len(proof) != tieProofSize(p) {
		return fmt.Errorf("%w: a proof of %d bytes with the images, want %d", ErrMalformed, len(proof), tieProofSize(p))
	}
	return nil
}

// tieProofSize is the length of the proof that comes with the images.
func tieProofSize(p homomorphic.Params) int {
	r := p.BGV(tok).RingQ()
	return tieStatement(p, r.NewPoly(), r.NewPoly(), r.NewPoly(), r.NewPoly(), nil, 0).Size()
}

// splitImages splits a dealer's images into their encoding (the length
// its header states) and the proof after it.
func splitImages(p homomorphic.Params, images []byte) (enc, proof []byte, err error) {
	n, err := polycodec.NumPolys(images)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	size := polycodec.Size(p.BGV(tok).RingQ().N(), n, p.BGV(tok).MaxLevel())
	if len(images) < size {
		return nil, nil, fmt.Errorf("%w: images of %d bytes, shorter than their %d polynomials", ErrMalformed, len(images), n)
	}
	return images[:size], images[size:], nil
}

// dealerImages decodes a dealer's CKG share and images into A_0..A_{T-1}
// (under a) and A'_0..A'_{T-1} (under a'), and checks the proof that A_0
// and A'_0 are of one secret. Images of one set (a dealer of a version
// before), and a proof that fails, are ErrDealing: the dealer signed them.
func dealerImages(p homomorphic.Params, crs []byte, crp, crp2 ring.Poly, ckgShare, images []byte) (first, second []ring.Poly, err error) {
	first, second, proof, err := decodeImages(p, ckgShare, images)
	if err != nil {
		return nil, nil, err
	}
	if err := shortproof.Verify(tieStatement(p, crp, crp2, first[0], second[0], crs, len(first)), proof); err != nil {
		return nil, nil, fmt.Errorf("%w: the second images are not of the CKG share's secret: %v", ErrDealing, err)
	}
	return first, second, nil
}

// decodeImages is dealerImages without checking the proof, which it
// returns: for the threshold images of an epoch whose members checked it
// before they installed.
func decodeImages(p homomorphic.Params, ckgShare, images []byte) (first, second []ring.Poly, proof []byte, err error) {
	r := p.BGV(tok).RingQ()
	level := p.BGV(tok).MaxLevel()
	a0 := r.NewPoly()
	if _, err := decode(p, polycodec.KindCKGShare, level, ckgShare, a0); err != nil {
		return nil, nil, nil, err
	}
	enc, proof, err := splitImages(p, images)
	if err != nil {
		return nil, nil, nil, err
	}
	n, _ := polycodec.NumPolys(enc)
	rest := make([]ring.Poly, n)
	for k := range rest {
		rest[k] = r.NewPoly()
	}
	h, err := decode(p, polycodec.KindShamirImages, level, enc, rest...)
	if err != nil {
		return nil, nil, nil, err
	}
	switch h.Aux1 {
	case imagesTwoSets:
	case 0:
		return nil, nil, nil, fmt.Errorf("%w: images in one set (a dealer of a version before two sets of images?)", ErrDealing)
	default:
		return nil, nil, nil, fmt.Errorf("%w: images of version %d", ErrMalformed, h.Aux1)
	}
	t := int(h.Aux0)
	if t < 2 || n != 2*t-1 {
		return nil, nil, nil, fmt.Errorf("%w: %d images for threshold %d", ErrMalformed, n, h.Aux0)
	}
	return append([]ring.Poly{a0}, rest[:t-1]...), rest[t-1:], proof, nil
}

// evalImages sets out = sum_k x^k*A_k (NTT domain).
func evalImages(r *ring.Ring, imgs []ring.Poly, x uint64, out ring.Poly) {
	// Horner: ((A_{T-1}*x + A_{T-2})*x + ...) + A_0.
	out.Copy(imgs[len(imgs)-1])
	for k := len(imgs) - 2; k >= 0; k-- {
		r.MulScalar(out, x, out)
		r.Add(out, imgs[k], out)
	}
}

// CheckDealtShare checks the Shamir share share, dealt to point x, against
// its dealer's CKG share ckgShare (of the epoch of crs) and images, in both
// sets; an error matches ErrDealing when they do not match.
func CheckDealtShare(p homomorphic.Params, crs, ckgShare, images []byte, x uint64, share []byte) error {
	if err := checkParams(p); err != nil {
		return err
	}
	if err := checkPoints([]uint64{x}); err != nil {
		return err
	}
	crp, crp2, err := bothPolys(p, crs)
	if err != nil {
		return err
	}
	first, second, err := dealerImages(p, crs, crp, crp2, ckgShare, images)
	if err != nil {
		return err
	}
	r := p.BGV(tok).RingQ()
	sigma := r.NewPoly()
	h, err := decode(p, polycodec.KindShamirShare, p.BGV(tok).MaxLevel(), share, sigma)
	if err != nil {
		return err
	}
	defer wipe(sigma.Coeffs)
	if h.Aux0 != x || h.Aux1 != uint64(len(first)) {
		return fmt.Errorf("%w: a share for point %d with threshold %d, checked as point %d with %d images", ErrDealing, h.Aux0, h.Aux1, x, len(first))
	}
	bound, err := dealBound(x, len(first))
	if err != nil {
		return err
	}
	d := r.NewPoly()
	for _, set := range []struct {
		imgs []ring.Poly
		crp  ring.Poly
		name string
	}{{first, crp, "a"}, {second, crp2, "a'"}} {
		evalImages(r, set.imgs, x, d)
		r.MulCoeffsMontgomeryThenAdd(sigma, set.crp, d)
		r.IMForm(d, d)
		r.INTT(d, d)
		if !shortWithin(r, d, bound) {
			return fmt.Errorf("%w: sum_k x^k*A_k + share*%s is not within %d", ErrDealing, set.name, bound)
		}
	}
	return nil
}

// shortWithin reports whether the integer polynomial d (coefficient domain,
// every limb) has |d| <= bound with consistent limbs.
func shortWithin(r *ring.Ring, d ring.Poly, bound int64) bool {
	c := shortproof.Centred(r, d)
	if !within(c, bound) {
		return false
	}
	// The other limbs must hold the same integers.
	check := r.NewPoly()
	shortproof.SetSigned(r, check, c)
	return r.Equal(check, d)
}

// ThresholdImage returns the public image P(x) = sum_i sum_k x^k*A_ik of
// the aggregate Shamir share of the member at point x, from every dealer's
// CKG share and images (one pair per committee member, in any order), as
// the bytes ThresholdKeySwitchShareWitness and VerifyThresholdKeySwitchShare
// take. It fails when the epoch's shape puts E(x) beyond what a proof
// handles (ErrThresholdProof).
func ThresholdImage(p homomorphic.Params, ckgShares, images [][]byte, x uint64) ([]byte, error) {
	out, err := ThresholdImages(p, ckgShares, images, []uint64{x})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// ThresholdImages is ThresholdImage for each of points, decoding the
// dealers' images once. It fails with ErrThresholdProof when any point's
// image is past what a proof handles (ThresholdImagesWithin leaves those
// out instead).
func ThresholdImages(p homomorphic.Params, ckgShares, images [][]byte, points []uint64) ([][]byte, error) {
	out, t, err := thresholdImages(p, ckgShares, images, points)
	if err != nil {
		return nil, err
	}
	for j, img := range out {
		if img == nil {
			_, err := pointImageBound(points[j], t, len(ckgShares))
			return nil, err
		}
	}
	return out, nil
}

// pointImageBound is the bound on the error of the threshold image of the
// member at x of a dealing of threshold t by n dealers, or ErrThresholdProof
// when it is past what a proof of a threshold key-switch share handles.
func pointImageBound(x uint64, t, n int) (int64, error) {
	b, err := dealBound(x, t)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrThresholdProof, err)
	}
	if b > maxImageBound/int64(n) {
		return 0, fmt.Errorf("%w: point %d, threshold %d, %d dealers: the image's error reaches %d, over the 2^40 a proof handles", ErrThresholdProof, x, t, n, int64(n)*b)
	}
	return int64(n) * b, nil
}

// ThresholdImagesWithin is ThresholdImages with a nil image for each point
// past what a proof handles (its member's key-switch shares cannot be
// proven; larger points weigh the dealers' errors more): a committee too
// large for every member's proofs keeps those of its smaller points.
func ThresholdImagesWithin(p homomorphic.Params, ckgShares, images [][]byte, points []uint64) ([][]byte, error) {
	out, _, err := thresholdImages(p, ckgShares, images, points)
	return out, err
}

// thresholdImages is ThresholdImagesWithin, and the dealing's threshold.
func thresholdImages(p homomorphic.Params, ckgShares, images [][]byte, points []uint64) ([][]byte, int, error) {
	if err := checkParams(p); err != nil {
		return nil, 0, err
	}
	if err := checkPoints(points); err != nil {
		return nil, 0, err
	}
	if len(ckgShares) == 0 || len(ckgShares) != len(images) {
		return nil, 0, fmt.Errorf("%w: %d CKG shares and %d images", ErrInvalidArgument, len(ckgShares), len(images))
	}
	// Both sets of every dealer's images: the proofs that tie the second
	// to the CKG shares were checked by the members before they installed.
	dealers := make([][2][]ring.Poly, len(ckgShares))
	t := 0
	for i := range ckgShares {
		first, second, _, err := decodeImages(p, ckgShares[i], images[i])
		if err != nil {
			return nil, 0, fmt.Errorf("dealer %d: %w", i, err)
		}
		if t != 0 && len(first) != t {
			return nil, 0, fmt.Errorf("%w: dealer %d has threshold %d, another %d", ErrMismatch, i, len(first), t)
		}
		t, dealers[i] = len(first), [2][]ring.Poly{first, second}
	}
	r := p.BGV(tok).RingQ()
	term := r.NewPoly()
	out := make([][]byte, len(points))
	for j, x := range points {
		bound, err := pointImageBound(x, t, len(dealers))
		if err != nil {
			continue // out[j] stays nil
		}
		sums := [2]ring.Poly{r.NewPoly(), r.NewPoly()}
		for _, d := range dealers {
			for set := range sums {
				evalImages(r, d[set], x, term)
				r.Add(sums[set], term, sums[set])
			}
		}
		if out[j], err = encode(p, polycodec.KindThresholdImage, x, uint64(bound), sums[:]...); err != nil {
			return nil, 0, err
		}
	}
	return out, t, nil
}

// lagrange is the Lagrange coefficient at 0 of the point x in the set
// active, prod_{k != x} x_k/(x_k - x) modulo Q.
func lagrange(p homomorphic.Params, x uint64, active []uint64) (*big.Int, error) {
	q := p.BGV(tok).RingQ().Modulus()
	num, den := big.NewInt(1), big.NewInt(1)
	in := false
	for _, xk := range active {
		if xk == x {
			in = true
			continue
		}
		num.Mul(num, new(big.Int).SetUint64(xk))
		den.Mul(den, new(big.Int).Sub(new(big.Int).SetUint64(xk), new(big.Int).SetUint64(x)))
	}
	if !in {
		return nil, fmt.Errorf("%w: own point %d not in the active set", ErrInvalidArgument, x)
	}
	den.Mod(den, q)
	inv := new(big.Int).ModInverse(den, q)
	if inv == nil {
		return nil, fmt.Errorf("%w: points not invertible modulo Q", ErrInvalidArgument)
	}
	return num.Mul(num, inv).Mod(num, q), nil
}

// tksStatement is what a proof of the threshold key-switch share (h0, h1)
// of c1 towards target proves for the member at point x of the active set:
//
//	P = MForm(NTT(E)) - F*a,  P' = MForm(NTT(E')) - F*a',
//	h0 = u*target0 + lambda*F*c1 + NTT(eps),  h1 = u*target1 + NTT(e1),
//
// with F uniform (NTT, Montgomery), |E|, |E'| <= bound, u ternary, |e1| <=
// 19 and eps = eps_lo + 2^40*eps_hi as for an epoch with T = K. An image
// of an epoch installed before two sets of images has no P' (image2 has
// no coefficients): the statement then leaves it and E' out.
func tksStatement(p homomorphic.Params, crp, crp2 ring.Poly, img thresholdImage, lambda *big.Int, target *homomorphic.PublicKey, c1, h0, h1 ring.Poly, x uint64, active []uint64, context []byte) *shortproof.Statement {
	r := p.BGV(tok).RingQ()
	ctx := tksContext(tksBase(p, x, active), context)
	var t0, t1 ring.Poly
	if target != nil {
		t0, t1 = target.RLWE(tok).Value[0].Q, target.RLWE(tok).Value[1].Q
	}
	// The member's images, each with its CRS polynomial and an error
	// bounded by img.bound; then h0 and h1.
	images, crps, domain := []ring.Poly{img.p}, []ring.Poly{crp}, "fedstat/threshold-key-switch-share/v1"
	if img.two() {
		images, crps, domain = append(images, img.p2), append(crps, crp2), "fedstat/threshold-key-switch-share/v2"
	}
	n := len(images)
	bounds := make([]int64, n, n+4)
	for i := range bounds {
		bounds[i] = img.bound
	}
	return &shortproof.Statement{
		Domain: domain,
		Ring:   r,
		// The images' errors, u, e1, eps_lo, eps_hi; F is the uniform component.
		Bounds:  append(bounds, 1, ckgErrBound, 1<<epsSplit-1, 1<<(64-epsSplit)),
		Uniform: 1,
		Apply: func(x [][]int64, _ []uint64, out []ring.Poly) {
			// The images' short parts MForm(NTT(E)); h0 and h1 but for F.
			for i := range n {
				setMForm(r, out[i], x[i])
			}
			switchNoise(r, x[n], x[n+1], x[n+2], x[n+3], t0, t1, out[n], out[n+1])
		},
		ApplyUniform: func(xu []ring.Poly, out []ring.Poly) {
			// Each image -= F*its CRS polynomial; h0 += lambda*(F*c1).
			for i, c := range crps {
				r.MulCoeffsMontgomeryThenSub(xu[0], c, out[i])
			}
			addSwitched(r, xu[0], c1, lambda, out[n])
		},
		Image:   append(images, h0, h1),
		Context: ctx,
	}
}

// addSwitched adds lambda*(F*c1) to out.
func addSwitched(r *ring.Ring, f, c1 ring.Poly, lambda *big.Int, out ring.Poly) {
	tmp := shortproof.GetPoly(r)
	defer shortproof.PutPoly(r, tmp)
	r.MulCoeffsMontgomery(f, c1, *tmp)
	r.MulScalarBigint(*tmp, lambda, *tmp)
	r.Add(out, *tmp, out)
}

// thresholdImage is a decoded threshold image: P(x) under a, P'(x) under a'
// (none in an epoch installed before two sets of images), the point and
// the bound on their errors.
type thresholdImage struct {
	p, p2 ring.Poly
	x     uint64
	bound int64
}

func (t thresholdImage) two() bool { return t.p2.N() > 0 }

// decodeThresholdImage decodes a threshold image (ThresholdImages) at
// level: two polynomials, or one from an epoch of a version before.
func decodeThresholdImage(p homomorphic.Params, level int, image []byte) (thresholdImage, error) {
	r := p.BGV(tok).RingQ()
	n, err := polycodec.NumPolys(image)
	if err != nil {
		return thresholdImage{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	var img thresholdImage
	polys := []ring.Poly{r.NewPoly()}
	if n == 2 {
		polys = append(polys, r.NewPoly())
	}
	h, err := decode(p, polycodec.KindThresholdImage, level, image, polys...)
	if err != nil {
		return thresholdImage{}, err
	}
	img.p = polys[0]
	if n == 2 {
		img.p2 = polys[1]
	}
	img.x, img.bound = h.Aux0, int64(h.Aux1)
	if h.Aux1 == 0 || h.Aux1 > maxImageBound {
		return thresholdImage{}, fmt.Errorf("%w: an image with bound %d", ErrMalformed, h.Aux1)
	}
	return img, nil
}

// tksBase is the statement's own context: the parameter set, the point
// and the active set.
func tksBase(p homomorphic.Params, x uint64, active []uint64) []byte {
	ctx := []byte(p.Name())
	ctx = binary.BigEndian.AppendUint64(ctx, x)
	ctx = binary.BigEndian.AppendUint64(ctx, uint64(len(active)))
	// In increasing order: the set, not the order it was listed in.
	for _, xk := range slices.Sorted(slices.Values(active)) {
		ctx = binary.BigEndian.AppendUint64(ctx, xk)
	}
	return ctx
}

// tksContext appends the caller's context to the statement's own,
// length-prefixed.
func tksContext(base, context []byte) []byte {
	out := append([]byte(nil), base...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(context)))
	return append(out, context...)
}

// ksNoise draws a key-switch share's randomness as KeySwitchShare does: u
// ternary, e1 and the protocol errors from Lattigo's samplers, the smudging
// from smudge.Sample; eps = e0 + e + E split as eps_lo + 2^40*eps_hi. With
// seeds (switchSeeds) it draws them from those, the same every time.
func ksNoise(p homomorphic.Params, seeds *[2][32]byte) (u, e1, lo, hi []int64, err error) {
	r := p.BGV(tok).RingQ()
	var prng sampling.PRNG
	if seeds != nil {
		prng, err = sampling.NewKeyedPRNG(seeds[0][:])
	} else {
		prng, err = sampling.NewPRNG()
	}
	if err != nil {
		return nil, nil, nil, nil, err
	}
	xs, err := ring.NewSampler(prng, r, p.BGV(tok).Xs(), false)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	xe, err := ring.NewSampler(prng, r, p.BGV(tok).Xe(), false)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	read := func(smp ring.Sampler) []int64 { return shortproof.Centred(r, smp.ReadNew()) }
	u, e0, e1, eNoise := read(xs), read(xe), read(xe), read(xe)
	var smudging *[32]byte
	if seeds != nil {
		smudging = &seeds[1]
	}
	lo, hi, err = smudgedSplit(p, e0, eNoise, smudging)
	return u, e1, lo, hi, err
}

// noiseSeeds returns nil for no nonce (fresh randomness), otherwise the
// seeds switchSeeds derives.
func noiseSeeds(p homomorphic.Params, secret ring.Poly, nonce []byte, c *rlwe.Ciphertext, target *homomorphic.PublicKey, active []uint64) *[2][32]byte {
	if nonce == nil {
		return nil
	}
	a, b := switchSeeds(p, secret, nonce, c, target, active)
	return &[2][32]byte{a, b}
}

// ThresholdKeySwitchShareProven returns the key-switch share of ct towards
// target of the member holding ts, for the release by the decryptors at the
// points active (the same distribution as KeySwitchShare with
// ts.Additive(active)), and a proof that it is of the form tksStatement
// says against the member's image (ThresholdImage for ts.Self()), bound to
// context.
func ThresholdKeySwitchShareProven(p homomorphic.Params, ts *ThresholdShare, active []uint64, target *homomorphic.PublicKey, ct *homomorphic.Ciphertext, crs, image, context []byte) (share, proof []byte, err error) {
	share, w, err := ThresholdKeySwitchShareWitness(p, ts, active, target, ct, crs, image, nil)
	if err != nil {
		return nil, nil, err
	}
	defer w.Wipe()
	if proof, err = w.Prove(context); err != nil {
		return nil, nil, err
	}
	return share, proof, nil
}

// ShareWitness is what a member keeps of a key-switch share it made to
// prove it later (KeySwitchShareWitness, ThresholdKeySwitchShareWitness):
// its randomness and statement. It is secret: with the share it gives the
// member's secret share. Keep it in memory only, and Wipe it.
type ShareWitness struct {
	st  *shortproof.Statement
	ctx func(context []byte) []byte // the statement's context for the caller's
	w   [][]int64
	xu  []ring.Poly
}

// ThresholdKeySwitchShareWitness is ThresholdKeySwitchShareProven without
// the proof: the share, and the witness that proves it on demand
// (ShareWitness.Prove), for a member that proves its shares only when
// a release's total is refused. A nil nonce draws fresh randomness; with
// a nonce the randomness is derived from the share's secret and inputs
// (switchSeeds), so the same call made again gives the same share and a
// witness for it. Never pass one nonce for two releases: the seeds differ
// whenever any input does, but a nonce is what tells two releases of the
// same inputs apart.
func ThresholdKeySwitchShareWitness(p homomorphic.Params, ts *ThresholdShare, active []uint64, target *homomorphic.PublicKey, ct *homomorphic.Ciphertext, crs, image, nonce []byte) ([]byte, *ShareWitness, error) {
	c, crp, err := switchInputs(p, target, ct, crs)
	if err != nil {
		return nil, nil, err
	}
	if ts == nil || !ts.p.Equal(p) {
		return nil, nil, fmt.Errorf("%w: threshold share missing or of another parameter set", ErrMismatch)
	}
	if len(active) < ts.threshold {
		return nil, nil, fmt.Errorf("%w: %d active members, threshold %d", ErrThreshold, len(active), ts.threshold)
	}
	if err := checkPoints(active); err != nil {
		return nil, nil, err
	}
	lambda, err := lagrange(p, ts.self, active)
	if err != nil {
		return nil, nil, err
	}
	r := p.BGV(tok).RingQ()
	level := c.Level()
	img, err := decodeThresholdImage(p, level, image)
	if err != nil {
		return nil, nil, err
	}
	if img.x != ts.self {
		return nil, nil, fmt.Errorf("%w: the image of point %d for the share of point %d", ErrMismatch, img.x, ts.self)
	}
	var crp2 ring.Poly
	if img.two() {
		if crp2, err = secondPoly(p, crs); err != nil {
			return nil, nil, err
		}
	}
	// E = P + F*a (and E' = P' + F*a'), short when the dealing was checked.
	errOf := func(image, crp ring.Poly) []int64 {
		ePoly := r.NewPoly()
		r.MulCoeffsMontgomeryThenAdd(ts.share.Q, crp, ePoly)
		r.Add(ePoly, image, ePoly)
		r.IMForm(ePoly, ePoly)
		r.INTT(ePoly, ePoly)
		return shortproof.Centred(r, ePoly)
	}
	errs := [][]int64{errOf(img.p, crp)}
	if img.two() {
		errs = append(errs, errOf(img.p2, crp2))
	}
	for _, e := range errs {
		if !within(e, img.bound) {
			return nil, nil, fmt.Errorf("%w: this member's share is not the one its image fixes (was the dealing checked?)", ErrThresholdProof)
		}
	}
	u, e1, lo, hi, err := ksNoise(p, noiseSeeds(p, ts.share.Q, nonce, c, target, active))
	if err != nil {
		return nil, nil, err
	}
	h0, h1 := r.NewPoly(), r.NewPoly()
	st := tksStatement(p, crp, crp2, img, lambda, target, c.Value[1], h0, h1, ts.self, active, nil)
	f := *ts.share.Q.CopyNew()
	base := tksBase(p, ts.self, active)
	wit := &ShareWitness{st: st, ctx: func(context []byte) []byte { return tksContext(base, context) }, w: append(errs, u, e1, lo, hi), xu: []ring.Poly{f}}
	out := make([]ring.Poly, len(st.Image))
	for i := range out {
		out[i] = r.NewPoly()
	}
	out[len(out)-2], out[len(out)-1] = h0, h1
	st.Apply(wit.w, nil, out)
	st.ApplyUniform(wit.xu, out)
	share, err := encodeAt(p, polycodec.KindKeySwitchShare, level, 0, 0, h0, h1)
	if err != nil {
		wit.Wipe()
		return nil, nil, err
	}
	return share, wit, nil
}

func within(x []int64, b int64) bool {
	for _, v := range x {
		if v > b || v < -b {
			return false
		}
	}
	return true
}

// Prove proves the share the witness was made with, bound to context (what
// VerifyKeySwitchShare or VerifyThresholdKeySwitchShare is given).
func (w *ShareWitness) Prove(context []byte) ([]byte, error) {
	if w == nil || w.st == nil {
		return nil, fmt.Errorf("%w: no witness (wiped?)", ErrInvalidArgument)
	}
	st := *w.st
	st.Context = w.ctx(context)
	var proof []byte
	var err error
	if st.Uniform > 0 {
		proof, err = shortproof.ProveUniform(&st, w.w, nil, w.xu)
	} else {
		proof, err = shortproof.Prove(&st, w.w, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("collective: proof of the key-switch share: %w", err)
	}
	return proof, nil
}

// Wipe clears the witness.
func (w *ShareWitness) Wipe() {
	if w == nil {
		return
	}
	for _, c := range w.w {
		clear(c)
	}
	for _, p := range w.xu {
		wipe(p.Coeffs)
	}
	w.st = nil
}

// VerifyThresholdKeySwitchShare checks a proof of the key-switch share
// share of ct towards target, made with context by the member at point x
// of the release by the points active, against that member's image
// (ThresholdImage) in the epoch of crs.
func VerifyThresholdKeySwitchShare(p homomorphic.Params, target *homomorphic.PublicKey, ct *homomorphic.Ciphertext, crs, image []byte, x uint64, active []uint64, share, proof, context []byte) error {
	c, crp, err := switchInputs(p, target, ct, crs)
	if err != nil {
		return err
	}
	if err := checkPoints(active); err != nil {
		return err
	}
	lambda, err := lagrange(p, x, active)
	if err != nil {
		return err
	}
	r := p.BGV(tok).RingQ()
	level := c.Level()
	img, err := decodeThresholdImage(p, level, image)
	if err != nil {
		return err
	}
	if img.x != x {
		return fmt.Errorf("%w: an image of point %d for point %d", ErrMismatch, img.x, x)
	}
	var crp2 ring.Poly
	if img.two() {
		if crp2, err = secondPoly(p, crs); err != nil {
			return err
		}
	}
	h0, h1 := r.NewPoly(), r.NewPoly()
	if _, err := decode(p, polycodec.KindKeySwitchShare, level, share, h0, h1); err != nil {
		return err
	}
	st := tksStatement(p, crp, crp2, img, lambda, target, c.Value[1], h0, h1, x, active, context)
	if err := shortproof.Verify(st, proof); err != nil {
		return fmt.Errorf("%w: %v", ErrThresholdProof, err)
	}
	return nil
}

// ThresholdKeySwitchProofSize is the length in bytes of a proof of a
// threshold key-switch share whose image has the given bound (in two sets).
func ThresholdKeySwitchProofSize(p homomorphic.Params, bound int64) int {
	r := p.BGV(tok).RingQ()
	img := thresholdImage{p: r.NewPoly(), p2: r.NewPoly(), x: 1, bound: bound}
	return tksStatement(p, r.NewPoly(), r.NewPoly(), img, big.NewInt(1), nil, r.NewPoly(), r.NewPoly(), r.NewPoly(), 1, nil, nil).Size()
}
