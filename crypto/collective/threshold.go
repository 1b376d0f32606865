package collective

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
)

// Threshold sharing (Mouchet, Bertrand, Hubaux 2022, "An Efficient Threshold
// Access-Structure for RLWE-Based Multiparty Homomorphic Encryption"):
//
//  1. Once per epoch, after CKG, every member i deals Shamir shares of its
//     additive secret s_i to all N members with ThresholdDeal (degree T-1
//     polynomial with constant term s_i, evaluated at each member's point).
//  2. Every member j sums the shares it received with ThresholdAggregate: it
//     now holds a Shamir share of s = sum_i s_i at its point x_j.
//  3. At release time, the T members of the active set each turn their
//     Shamir share into an additive share of s for that set
//     (ThresholdShare.Additive, a Lagrange coefficient times the share) and
//     use it with KeySwitchShare. The T key-switch shares sum to a switch by
//     s, so KeySwitchCombine works with T shares instead of N.
//
// Shamir points identify members: nonzero, distinct, and (so that they stay
// distinct modulo every RNS prime) below 2^59.
//
// When T == N the threshold layer is unnecessary: use the additive
// SecretKeyShare from CKG directly with all N members.

// MaxShamirPoint is the largest accepted Shamir point.
const MaxShamirPoint = 1<<59 - 1

func checkPoints(points []uint64) error {
	seen := make(map[uint64]bool, len(points))
	for _, x := range points {
		if x == 0 || x > MaxShamirPoint {
			return fmt.Errorf("%w: Shamir point %d not in [1, 2^59)", ErrInvalidArgument, x)
		}
		if seen[x] {
			return fmt.Errorf("%w: duplicate Shamir point %d", ErrInvalidArgument, x)
		}
		seen[x] = true
	}
	return nil
}

// ThresholdDeal splits sk into Shamir shares with threshold t, one per
// recipient (including the dealer itself, if its point is listed). The map
// values are secret: encrypt each for its recipient in transit. Each share
// records its recipient point and t, which ThresholdAggregate checks.
func ThresholdDeal(p homomorphic.Params, sk *homomorphic.SecretKeyShare, t int, recipients []uint64) (map[uint64][]byte, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	if err := checkSK(p, sk); err != nil {
		return nil, err
	}
	if err := checkPoints(recipients); err != nil {
		return nil, err
	}
	if t < 1 || t > len(recipients) {
		return nil, fmt.Errorf("%w: threshold %d for %d recipients", ErrInvalidArgument, t, len(recipients))
	}
	thr := mhe.NewThresholdizer(p.BGV(tok))
	poly, err := thr.GenShamirPolynomial(t, sk.RLWE(tok))
	if err != nil {
		return nil, fmt.Errorf("collective: shamir polynomial: %w", err)
	}
	out := make(map[uint64][]byte, len(recipients))
	share := thr.AllocateThresholdSecretShare()
	for _, x := range recipients {
		thr.GenShamirSecretShare(mhe.ShamirPublicPoint(x), poly, &share)
		b, err := encode(p, polycodec.KindShamirShare, x, uint64(t), share.Q)
		if err != nil {
			return nil, err
		}
		out[x] = b
	}
	// Best effort: wipe the polynomial's random coefficients and the share.
	for _, c := range poly.Value {
		wipe(c.Q.Coeffs)
	}
	wipe(share.Q.Coeffs)
	return out, nil
}

func wipe(m [][]uint64) {
	for _, row := range m {
		clear(row)
	}
}

// ThresholdShare is a member's Shamir share of the epoch's collective secret
// key. It is secret (store it sealed, like a SecretKeyShare) and redacts
// itself in fmt and slog output.
type ThresholdShare struct {
	p         homomorphic.Params
	self      uint64
	threshold int
	share     mhe.ShamirSecretShare
}

// ThresholdAggregate sums the shares this member (point self) received from
// every dealer, its own included. All shares must be addressed to self and
// carry the same threshold. The caller must pass exactly one share from each
// member of the epoch; a missing dealer makes the resulting key shares
// useless (the release would decrypt to garbage, not leak).
func ThresholdAggregate(p homomorphic.Params, self uint64, received [][]byte) (*ThresholdShare, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	if err := checkPoints([]uint64{self}); err != nil {
		return nil, err
	}
	if len(received) == 0 {
		return nil, fmt.Errorf("%w: no threshold shares", ErrInvalidArgument)
	}
	thr := mhe.NewThresholdizer(p.BGV(tok))
	agg := thr.AllocateThresholdSecretShare()
	tmp := thr.AllocateThresholdSecretShare()
	threshold := 0
	for i, b := range received {
		h, err := decode(p, polycodec.KindShamirShare, p.BGV(tok).MaxLevel(), b, tmp.Q)
		if err != nil {
			return nil, fmt.Errorf("threshold share %d: %w", i, err)
		}
		if h.Aux0 != self {
			return nil, fmt.Errorf("%w: threshold share %d is addressed to point %d, not %d", ErrMismatch, i, h.Aux0, self)
		}
		if h.Aux1 < 1 || h.Aux1 > uint64(len(received)) || (threshold != 0 && int(h.Aux1) != threshold) {
			return nil, fmt.Errorf("%w: threshold share %d has threshold %d", ErrMismatch, i, h.Aux1)
		}
		threshold = int(h.Aux1)
		if err := thr.AggregateShares(agg, tmp, &agg); err != nil {
			return nil, fmt.Errorf("collective: aggregate: %w", err)
		}
	}
	wipe(tmp.Q.Coeffs)
	return &ThresholdShare{p: p, self: self, threshold: threshold, share: agg}, nil
}

// Self returns the member's Shamir point.
func (ts *ThresholdShare) Self() uint64 { return ts.self }

// Threshold returns T.
func (ts *ThresholdShare) Threshold() int { return ts.threshold }

// Additive returns this member's additive share of the collective secret key
// for the given active set, which must contain self, have at least T
// distinct points, and be the same set (in any order) at every member taking
// part in the release: the key-switch shares of exactly these members are
// then combined with KeySwitchCombine. (With more than T members, all of them
// must contribute.)
func (ts *ThresholdShare) Additive(p homomorphic.Params, active []uint64) (*homomorphic.SecretKeyShare, error) {
	if ts == nil {
		return nil, fmt.Errorf("%w: nil threshold share", ErrInvalidArgument)
	}
	if len(active) < ts.threshold {
		return nil, fmt.Errorf("%w: %d active members, threshold %d", ErrThreshold, len(active), ts.threshold)
	}
	return ts.additive(p, active)
}

func (ts *ThresholdShare) additive(p homomorphic.Params, active []uint64) (*homomorphic.SecretKeyShare, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	if !ts.p.Equal(p) {
		return nil, fmt.Errorf("%w: threshold share of another parameter set", ErrMismatch)
	}
	if err := checkPoints(active); err != nil {
		return nil, err
	}
	pts := make([]mhe.ShamirPublicPoint, len(active))
	in := false
	for i, x := range active {
		pts[i] = mhe.ShamirPublicPoint(x)
		in = in || x == ts.self
	}
	if !in {
		return nil, fmt.Errorf("%w: own point %d not in the active set", ErrInvalidArgument, ts.self)
	}
	cmb := mhe.NewCombiner(*p.BGV(tok).GetRLWEParameters(), mhe.ShamirPublicPoint(ts.self), pts, len(pts))
	sk := rlwe.NewSecretKey(p.BGV(tok))
	if err := cmb.GenAdditiveShare(pts, mhe.ShamirPublicPoint(ts.self), ts.share, sk); err != nil {
		return nil, fmt.Errorf("collective: combine: %w", err)
	}
	return homomorphic.WrapSecretKeyShare(tok, p, sk), nil
}

// MarshalBinary encodes the share (point and threshold included). The bytes
// are secret: store them only sealed.
func (ts *ThresholdShare) MarshalBinary() ([]byte, error) {
	if ts == nil || ts.share.Q.Coeffs == nil {
		return nil, fmt.Errorf("%w: nil threshold share", ErrInvalidArgument)
	}
	return encode(ts.p, polycodec.KindThresholdShare, ts.self, uint64(ts.threshold), ts.share.Q)
}

// UnmarshalThresholdShare decodes a share written by MarshalBinary.
func UnmarshalThresholdShare(p homomorphic.Params, b []byte) (*ThresholdShare, error) {
	if err := checkParams(p); err != nil {
		return nil, err
	}
	share := mhe.NewThresholdizer(p.BGV(tok)).AllocateThresholdSecretShare()
	h, err := decode(p, polycodec.KindThresholdShare, p.BGV(tok).MaxLevel(), b, share.Q)
	if err != nil {
		return nil, err
	}
	if err := checkPoints([]uint64{h.Aux0}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if h.Aux1 < 1 || h.Aux1 > 1<<20 {
		return nil, fmt.Errorf("%w: threshold %d", ErrMalformed, h.Aux1)
	}
	return &ThresholdShare{p: p, self: h.Aux0, threshold: int(h.Aux1), share: share}, nil
}

// String implements fmt.Stringer without revealing the share.
func (ThresholdShare) String() string { return homomorphic.Redacted }

// GoString implements fmt.GoStringer without revealing the share.
func (ThresholdShare) GoString() string { return homomorphic.Redacted }

// Format implements fmt.Formatter so that every verb redacts.
func (ThresholdShare) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, homomorphic.Redacted) }

// LogValue implements slog.LogValuer.
func (ThresholdShare) LogValue() slog.Value { return slog.StringValue(homomorphic.Redacted) }
