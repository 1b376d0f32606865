package homomorphic_test

// Measurements of the design fedstat did NOT choose for cross-agency record
// linkage (issue 17): "HE slot vectors". Residents are hashed by a key only
// the nodes hold into M slots; a node encrypts a 0/1 membership vector (or a
// value vector) over the slots under the collective key, a join is a
// slot-wise product, a union over H hospitals is 1 - prod(1 - x_i), and the
// slots are summed before the threshold decryption. Nothing here is used by
// the product; the figures feed the comparison with the exponentiation mix
// (spec/linkage.md). Run:
//
//	go test -run 'HESlot' -v ./crypto/homomorphic/
//	go test -run '^$' -bench 'HESlot' ./crypto/homomorphic/

import (
	"flag"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/internal/polycodec"
	"github.com/fedstat/fedstat/crypto/internal/smudge"
)

// slotParties is the number of key holders in the measurements: 4 hospitals,
// the insurer and the registry of the city.
const slotParties = 6

// slotNet is a multiparty key set over arbitrary BGV parameters: additive
// secret shares, the collective public key made by Lattigo's CKG protocol,
// and (for measurement only) the ideal secret key, their sum.
type slotNet struct {
	bp    bgv.Parameters
	sks   []*rlwe.SecretKey
	ideal *rlwe.SecretKey
	pk    *rlwe.PublicKey
	ecd   *bgv.Encoder
	enc   *rlwe.Encryptor
	smud  smudge.Gaussian
}

func newSlotNet(tb testing.TB, bp bgv.Parameters, parties int) *slotNet {
	tb.Helper()
	kg := rlwe.NewKeyGenerator(bp)
	ckg := mhe.NewPublicKeyGenProtocol(bp)
	prng, err := sampling.NewKeyedPRNG([]byte("fedstat/heslot/crs"))
	if err != nil {
		tb.Fatal(err)
	}
	crp := ckg.SampleCRP(prng)
	agg, sh := ckg.AllocateShare(), ckg.AllocateShare()
	n := &slotNet{bp: bp, ideal: rlwe.NewSecretKey(bp), ecd: bgv.NewEncoder(bp)}
	for range parties {
		sk := kg.GenSecretKeyNew()
		ckg.GenShare(sk, crp, &sh)
		ckg.AggregateShares(agg, sh, &agg)
		bp.RingQ().Add(n.ideal.Value.Q, sk.Value.Q, n.ideal.Value.Q)
		if bp.PCount() > 0 {
			bp.RingP().Add(n.ideal.Value.P, sk.Value.P, n.ideal.Value.P)
		}
		n.sks = append(n.sks, sk)
	}
	n.pk = rlwe.NewPublicKey(bp)
	ckg.GenPublicKey(agg, crp, n.pk)
	n.enc = rlwe.NewEncryptor(bp, n.pk)
	// The production smudging: sigma^2 = 2^61 * 2^60 (sigma 2^60.5), cut at 10 sigma.
	if n.smud, err = smudge.NewGaussian(1<<61, 1<<60); err != nil {
		tb.Fatal(err)
	}
	return n
}

func (n *slotNet) encode(tb testing.TB, v []uint64) *rlwe.Plaintext {
	tb.Helper()
	pt := bgv.NewPlaintext(n.bp, n.bp.MaxLevel())
	if err := n.ecd.Encode(v, pt); err != nil {
		tb.Fatal(err)
	}
	return pt
}

func (n *slotNet) encrypt(tb testing.TB, v []uint64) *rlwe.Ciphertext {
	tb.Helper()
	ct := bgv.NewCiphertext(n.bp, 1, n.bp.MaxLevel())
	if err := n.enc.Encrypt(n.encode(tb, v), ct); err != nil {
		tb.Fatal(err)
	}
	return ct
}

// release is the threshold decryption towards the coordinator: every party
// publishes s_i*c1 + x_i with x_i the production smudging, and the phase
// c0 + sum of shares is returned as a plaintext (NTT domain). Lattigo's
// fresh errors of a real share (sigma 3.2) are left out: 2^-40 of the
// smudging.
func (n *slotNet) release(tb testing.TB, ct *rlwe.Ciphertext) *rlwe.Plaintext {
	tb.Helper()
	if ct.Degree() != 1 || !ct.IsNTT {
		tb.Fatalf("release: degree %d, NTT %v", ct.Degree(), ct.IsNTT)
	}
	level := ct.Level()
	rQ := n.bp.RingQ().AtLevel(level)
	pt := rlwe.NewPlaintext(n.bp, level)
	*pt.MetaData = *ct.MetaData
	pt.Value.CopyLvl(level, ct.Value[0])
	tmp := rQ.NewPoly()
	for _, sk := range n.sks {
		rQ.MulCoeffsMontgomery(ct.Value[1], sk.Value.Q, tmp)
		if err := smudge.AddNTT(n.bp.RingQ(), level, n.smud, tmp); err != nil {
			tb.Fatal(err)
		}
		rQ.Add(pt.Value, tmp, pt.Value)
	}
	return pt
}

// idealPhase decrypts with the sum of the shares (no smudging).
func (n *slotNet) idealPhase(ct *rlwe.Ciphertext) *rlwe.Plaintext {
	return rlwe.NewDecryptor(n.bp, n.ideal).DecryptNew(ct)
}

func (n *slotNet) decode(tb testing.TB, pt *rlwe.Plaintext) []uint64 {
	tb.Helper()
	out := make([]uint64, n.bp.MaxSlots())
	if err := n.ecd.Decode(pt, out); err != nil {
		tb.Fatal(err)
	}
	return out
}

// noise returns log2 of the largest absolute coefficient and of the
// Euclidean norm of phase - Encode(want), in Lattigo's unscaled convention
// (phase = m*t^-1 + e): decryption is exact while max|e| < Q/(2t).
func (n *slotNet) noise(tb testing.TB, phase *rlwe.Plaintext, want []uint64) (maxLog2, l2Log2 float64) {
	tb.Helper()
	level := phase.Level()
	rQ := n.bp.RingQ().AtLevel(level)
	exp := rlwe.NewPlaintext(n.bp, level)
	*exp.MetaData = *phase.MetaData
	if err := n.ecd.Encode(want, exp); err != nil {
		tb.Fatal(err)
	}
	d := rQ.NewPoly()
	rQ.Sub(phase.Value, exp.Value, d)
	if phase.IsNTT {
		rQ.INTT(d, d)
	}
	coeffs := make([]*big.Int, rQ.N())
	for i := range coeffs {
		coeffs[i] = new(big.Int)
	}
	rQ.PolyToBigintCentered(d, 1, coeffs)
	maxAbs, sumSq, sq := new(big.Int), new(big.Int), new(big.Int)
	for _, c := range coeffs {
		if c.CmpAbs(maxAbs) > 0 {
			maxAbs.Abs(c)
		}
		sumSq.Add(sumSq, sq.Mul(c, c))
	}
	return bigLog2(maxAbs), bigLog2(sumSq) / 2
}

// budget is log2(Q_level/(2t)).
func (n *slotNet) budget(level int) float64 {
	q, _ := new(big.Float).SetInt(n.bp.RingQ().AtLevel(level).Modulus()).Float64()
	return math.Log2(q) - math.Log2(float64(n.bp.PlaintextModulus())) - 1
}

func bigLog2(x *big.Int) float64 {
	if x.Sign() == 0 {
		return 0
	}
	f, _ := new(big.Float).SetInt(x).Float64()
	return math.Log2(math.Abs(f))
}

// coeff0SlotSum decodes only the constant coefficient m_0 of the plaintext
// polynomial behind phase and returns N*m_0 mod t, which is the sum of all N
// slots: the slots are the values of m(X) at the N primitive 2N-th roots of
// unity modulo t, and the sum of zeta^k over them is 0 unless k = 0 mod N.
// A release of the slot sum therefore needs no rotation key, and each party
// can publish only the constant coefficient of its share.
func (n *slotNet) coeff0SlotSum(phase *rlwe.Plaintext) uint64 {
	level := phase.Level()
	rQ := n.bp.RingQ().AtLevel(level)
	p := rQ.NewPoly()
	p.CopyLvl(level, phase.Value)
	if phase.IsNTT {
		rQ.INTT(p, p)
	}
	c := []*big.Int{new(big.Int)}
	rQ.PolyToBigintCentered(p, rQ.N(), c) // gap N: coefficient 0 only
	t := n.bp.PlaintextModulus()
	tb := new(big.Int).SetUint64(t)
	q := rQ.Modulus()
	y := new(big.Int).Mul(c[0], tb)
	y.Mod(y, q)
	if y.Cmp(new(big.Int).Rsh(q, 1)) > 0 {
		y.Sub(y, q)
	}
	y.Mod(y, tb) // m_0 * scale
	inv := new(big.Int).ModInverse(new(big.Int).SetUint64(phase.Scale.Uint64()), tb)
	y.Mul(y, inv)
	y.Mul(y, big.NewInt(int64(rQ.N())))
	return y.Mod(y, tb).Uint64()
}

// coeff0Share is one party's one-coefficient decryption share without the
// smudging: the constant coefficient of s_i*c1, computed from the NTT
// values as N^-1 * sum_j (c1_j * s_j) modulo each prime (the sum of a
// polynomial's values at all the NTT points is N times its constant
// coefficient). It costs one pass over the ciphertext, no NTT.
func coeff0Share(rQ *ring.Ring, c1 ring.Poly, sk *rlwe.SecretKey, tmp ring.Poly, out []uint64) {
	rQ.MulCoeffsMontgomery(c1, sk.Value.Q, tmp)
	for i, s := range rQ.SubRings[:rQ.Level()+1] {
		var acc uint64
		for _, v := range tmp.Coeffs[i] {
			acc += v
			if acc >= s.Modulus {
				acc -= s.Modulus
			}
		}
		out[i] = ring.MRed(acc, s.NInv, s.Modulus, s.MRedConstant)
	}
}

// randomBits returns a 0/1 vector with each slot 1 with probability p.
func randomBits(r *rand.Rand, n int, p float64) []uint64 {
	v := make([]uint64, n)
	for i := range v {
		if r.Float64() < p {
			v[i] = 1
		}
	}
	return v
}

func productionSlotNet(tb testing.TB, parties int) (*slotNet, homomorphic.Params) {
	tb.Helper()
	p, err := homomorphic.NewParams(homomorphic.ProductionSet)
	if err != nil {
		tb.Fatal(err)
	}
	return newSlotNet(tb, p.BGV(tok), parties), p
}

// TestHESlotProductHeadroom: can the production parameters do one
// ciphertext x plaintext product of 0/1 slot vectors and still decrypt after
// the production smudging? And what does the product's noise do to the
// smudging's statistical-distance argument?
func TestHESlotProductHeadroom(t *testing.T) {
	if testing.Short() {
		t.Skip("production parameters")
	}
	n, p := productionSlotNet(t, slotParties)
	r := rand.New(rand.NewPCG(1, 2))
	N := n.bp.MaxSlots()
	a := randomBits(r, N, 0.1)  // a hospital's cohort, encrypted
	b := randomBits(r, N, 0.01) // the registry's deaths, in the clear at the registry
	want := make([]uint64, N)
	var wantSum uint64
	for i := range want {
		want[i] = a[i] * b[i]
		wantSum += want[i]
	}
	ct := n.encrypt(t, a)
	freshMax, freshL2 := n.noise(t, n.idealPhase(ct), a)
	eval := bgv.NewEvaluator(n.bp, nil)
	prod, err := eval.MulNew(ct, n.encode(t, b))
	if err != nil {
		t.Fatal(err)
	}
	prodMax, prodL2 := n.noise(t, n.idealPhase(prod), want)
	budget := n.budget(prod.Level())

	// Release with the production smudging (our own share arithmetic).
	rel := n.release(t, prod)
	if got := n.decode(t, rel); !equalU64(got, want) {
		t.Fatal("product released with smudging decrypts wrongly")
	}
	relMax, _ := n.noise(t, rel, want)
	if budget-relMax < 8 {
		t.Errorf("headroom after product + smudging %.1f bits, want >= 8", budget-relMax)
	}
	// The same through the production code path (crypto/collective, PCKS to a result key).
	rsk, rpk := rlwe.NewKeyGenerator(n.bp).GenKeyPairNew()
	rk := homomorphic.WrapResultKey(tok, p, rsk, rpk)
	hct := homomorphic.WrapCiphertext(tok, p, prod)
	var shares [][]byte
	for _, sk := range n.sks {
		sh, err := collective.KeySwitchShare(p, homomorphic.WrapSecretKeyShare(tok, p, sk), rk.Public(), hct)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	sw, err := collective.KeySwitchCombine(p, hct, shares)
	if err != nil {
		t.Fatal(err)
	}
	got, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{sw}, N)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if uint64(got[i]) != want[i] {
			t.Fatalf("collective release of the product: slot %d = %d, want %d", i, got[i], want[i])
		}
	}

	// Slot sum without rotations: the constant coefficient.
	if s := n.coeff0SlotSum(rel); s != wantSum {
		t.Fatalf("constant-coefficient slot sum %d, want %d", s, wantSum)
	}

	// Flooding: SD(x_h + c, x_h) <= ||c||_2 / (2 sigma) (docs/crypto.md). With
	// c the product's noise this is no longer small.
	sdLog2 := prodL2 - 1 - math.Log2(n.smud.Sigma())
	coeff0SD := prodMax - 1 - math.Log2(n.smud.Sigma()) // one coefficient released (upper bound: max coefficient)
	if sdLog2 < -40 {
		t.Errorf("the production smudging floods the product noise (SD 2^%.1f): the finding below is wrong", sdLog2)
	}

	// A second ct x pt product (the chain (1-x1)(1-x2)(1-x3)... of the union).
	c := randomBits(r, N, 0.5)
	want2 := make([]uint64, N)
	for i := range want2 {
		want2[i] = want[i] * c[i]
	}
	prod2, err := eval.MulNew(prod, n.encode(t, c))
	if err != nil {
		t.Fatal(err)
	}
	prod2Max, _ := n.noise(t, n.idealPhase(prod2), want2)
	if prod2Max < budget {
		t.Errorf("two ct x pt products: noise 2^%.1f fits the budget 2^%.1f", prod2Max, budget)
	}
	// Rescaling after the first product drops to one 60-bit prime.
	budget0 := n.budget(0)

	// One ct x ct product: without relinearisation (degree 2, decrypted with
	// the ideal key: a threshold decryption of it would need shares of s^2),
	// with a relinearisation key of the production set (no special prime P),
	// and with the production primes plus one 61-bit P.
	ctB := n.encrypt(t, b)
	deg2, err := eval.MulNew(ct, ctB)
	if err != nil {
		t.Fatal(err)
	}
	deg2Max, _ := n.noise(t, n.idealPhase(deg2), want)
	ccMax, ccRelMax, ccOK, cc2Max, ccErr := relinMeasure(t, n, a, b)
	nP := newSlotNet(t, productionPlusP(t), slotParties)
	ccMaxP, ccRelMaxP, ccOKP, cc2MaxP, ccErrP := relinMeasure(t, nP, a, b)

	var sb strings.Builder
	fmt.Fprintf(&sb, "production set, %d parties, budget log2(Q/2t) = %.1f bits\n", slotParties, budget)
	fmt.Fprintf(&sb, "  fresh encryption noise        max 2^%.1f  l2 2^%.1f\n", freshMax, freshL2)
	fmt.Fprintf(&sb, "  after ct x pt (0/1 vectors)   max 2^%.1f  l2 2^%.1f\n", prodMax, prodL2)
	fmt.Fprintf(&sb, "  after release (smudging)      max 2^%.1f  headroom %.1f bits: exact\n", relMax, budget-relMax)
	fmt.Fprintf(&sb, "  smudging SD bound on the product noise: 2^%.1f (whole polynomial), 2^%.1f (constant coefficient only); target 2^-40\n", sdLog2, coeff0SD)
	fmt.Fprintf(&sb, "  sigma needed for 2^-40: 2^%.1f (whole polynomial), 2^%.1f (constant coefficient)\n", prodL2+39, prodMax+39)
	fmt.Fprintf(&sb, "  after a 2nd ct x pt           max 2^%.1f  (budget %.1f: fails; after a rescale the budget is %.1f bits, below the smudging)\n", prod2Max, budget, budget0)
	fmt.Fprintf(&sb, "  after ct x ct, degree 2 (no relin)    max 2^%.1f\n", deg2Max)
	fmt.Fprintf(&sb, "  ct x ct + relin, production (no P):   max 2^%.1f, after release 2^%.1f, exact %v; depth 2: 2^%.1f %v\n", ccMax, ccRelMax, ccOK, cc2Max, ccErr)
	fmt.Fprintf(&sb, "  ct x ct + relin, 2x58-bit Q + 59-bit P: max 2^%.1f, after release 2^%.1f (headroom %.1f), exact %v; depth 2: 2^%.1f (budget %.1f) %v\n", ccMaxP, ccRelMaxP, nP.budget(nP.bp.MaxLevel())-ccRelMaxP, ccOKP, cc2MaxP, nP.budget(nP.bp.MaxLevel()), ccErrP)
	t.Log("\n" + sb.String())
}

// TestHESlotSmallestParams: the smallest parameters that do one ct x pt
// product and decrypt after the production smudging. A ciphertext costs
// 2 polynomials x (number of primes) x 8 bytes per slot whatever N, so the
// question is the number of primes: one prime (at most 61 bits in Lattigo)
// cannot hold t (2^40) plus the smudging (2^64), so two it is; at LogN=12 the
// HE standard allows log2 Q <= 109 for 128-bit security.
func TestHESlotSmallestParams(t *testing.T) {
	if testing.Short() {
		t.Skip("key generation at two parameter sets")
	}
	bp, err := bgv.NewParametersFromLiteral(bgv.ParametersLiteral{
		LogN: 12, LogQ: []int{54, 55}, PlaintextModulus: 1099512938497,
	})
	if err != nil {
		t.Fatal(err)
	}
	n := newSlotNet(t, bp, slotParties)
	r := rand.New(rand.NewPCG(3, 4))
	N := bp.MaxSlots()
	a, b := randomBits(r, N, 0.1), randomBits(r, N, 0.01)
	want := make([]uint64, N)
	for i := range want {
		want[i] = a[i] * b[i]
	}
	prod, err := bgv.NewEvaluator(bp, nil).MulNew(n.encrypt(t, a), n.encode(t, b))
	if err != nil {
		t.Fatal(err)
	}
	prodMax, _ := n.noise(t, n.idealPhase(prod), want)
	rel := n.release(t, prod)
	if !equalU64(n.decode(t, rel), want) {
		t.Fatal("smallest parameters: product released with smudging decrypts wrongly")
	}
	relMax, _ := n.noise(t, rel, want)
	budget := n.budget(bp.MaxLevel())
	// Worst case of the smudging alone: every party at the cut.
	worst := math.Log2(float64(slotParties) * float64(n.smud.Bound()))
	if budget-relMax < 1 {
		t.Errorf("headroom %.1f bits", budget-relMax)
	}
	size := polycodec.Size(bp.N(), 2, bp.MaxLevel())
	t.Logf("LogN=12, log2 Q = %.1f (54+55), %d parties: product noise 2^%.1f, after release 2^%.1f, budget %.1f, headroom %.1f bits (worst-case smudging 2^%.1f leaves %.1f); ciphertext %d bytes = %.1f bytes/slot",
		bp.LogQ(), slotParties, prodMax, relMax, budget, budget-relMax, worst, budget-worst, size, float64(size)/float64(N))
}

// productionPlusP is the nearest set that can key-switch (relinearise,
// rotate): LogN=13, two 58-bit primes Q and one 59-bit special prime P
// (log2 QP = 175, 128-bit secure at N = 8192). Measured here: with the
// production's pinned primes (just under 2^60) Lattigo v5.0.7's
// relinearisation decrypts garbage with or without a P of 58-61 bits, and
// its InnerSum panics without P; 58-bit primes work.
func productionPlusP(tb testing.TB) bgv.Parameters {
	tb.Helper()
	bp, err := bgv.NewParametersFromLiteral(bgv.ParametersLiteral{
		LogN: 13, LogQ: []int{58, 58}, LogP: []int{59}, PlaintextModulus: 1099512938497,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return bp
}

// relinMeasure multiplies Enc(a) by Enc(b) with relinearisation (key made
// from the ideal key), releases it with smudging, and squares the product
// once more (depth 2). Lattigo panics are reported as errors.
func relinMeasure(tb testing.TB, n *slotNet, a, b []uint64) (mulMax, relMax float64, exact bool, depth2Max float64, err error) {
	tb.Helper()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("lattigo panicked: %v", r)
		}
	}()
	want := make([]uint64, len(a))
	for i := range want {
		want[i] = a[i] * b[i]
	}
	rlk := rlwe.NewKeyGenerator(n.bp).GenRelinearizationKeyNew(n.ideal)
	eval := bgv.NewEvaluator(n.bp, rlwe.NewMemEvaluationKeySet(rlk))
	prod, err := eval.MulRelinNew(n.encrypt(tb, a), n.encrypt(tb, b))
	if err != nil {
		return
	}
	mulMax, _ = n.noise(tb, n.idealPhase(prod), want)
	rel := n.release(tb, prod)
	relMax, _ = n.noise(tb, rel, want)
	exact = equalU64(n.decode(tb, rel), want)
	sq, err := eval.MulRelinNew(prod, prod)
	if err != nil {
		return
	}
	depth2Max, _ = n.noise(tb, n.idealPhase(sq), want)
	return
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// innerSumKeys returns the Galois keys of a full slot sum (InnerSum over a
// row of N/2 slots, then the row swap), made from the ideal key.
func innerSumKeys(n *slotNet) []*rlwe.GaloisKey {
	galEls := append(n.bp.GaloisElementsForInnerSum(1, n.bp.N()/2), n.bp.GaloisElementForRowRotation())
	return rlwe.NewKeyGenerator(n.bp).GenGaloisKeysNew(galEls, n.ideal)
}

func innerSumAll(eval *bgv.Evaluator, ct, out, tmp *rlwe.Ciphertext) error {
	if err := eval.InnerSum(ct, 1, eval.GetParameters().N()/2, out); err != nil {
		return err
	}
	if err := eval.RotateRows(out, tmp); err != nil {
		return err
	}
	return eval.Add(out, tmp, out)
}

// TestHESlotInnerSum sums the slots of a product with rotations at the
// production parameters (no special modulus P, so key switching decomposes
// over the two 60-bit primes) and releases the result with smudging.
func TestHESlotInnerSum(t *testing.T) {
	if testing.Short() {
		t.Skip("production parameters, Galois keys")
	}
	prodNet, _ := productionSlotNet(t, 1)
	if err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		ct := prodNet.encrypt(t, make([]uint64, prodNet.bp.MaxSlots()))
		eval := bgv.NewEvaluator(prodNet.bp, rlwe.NewMemEvaluationKeySet(nil, innerSumKeys(prodNet)...))
		return innerSumAll(eval, ct, ct.CopyNew(), ct.CopyNew())
	}(); err != nil {
		t.Logf("InnerSum at the production set (no P): %v", err)
	}
	n := newSlotNet(t, productionPlusP(t), slotParties)
	r := rand.New(rand.NewPCG(5, 6))
	N := n.bp.MaxSlots()
	a, b := randomBits(r, N, 0.1), randomBits(r, N, 0.01)
	var sum uint64
	for i := range a {
		sum += a[i] * b[i]
	}
	gks := innerSumKeys(n)
	keyBytes := 0
	for _, gk := range gks {
		keyBytes += gk.BinarySize()
	}
	eval := bgv.NewEvaluator(n.bp, rlwe.NewMemEvaluationKeySet(nil, gks...))
	prod, err := eval.MulNew(n.encrypt(t, a), n.encode(t, b))
	if err != nil {
		t.Fatal(err)
	}
	out, tmp := bgv.NewCiphertext(n.bp, 1, prod.Level()), bgv.NewCiphertext(n.bp, 1, prod.Level())
	if err := innerSumAll(eval, prod, out, tmp); err != nil {
		t.Fatal(err)
	}
	want := make([]uint64, N)
	for i := range want {
		want[i] = sum
	}
	sumMax, _ := n.noise(t, n.idealPhase(out), want)
	rel := n.release(t, out)
	got := n.decode(t, rel)
	relMax, _ := n.noise(t, rel, want)
	budget := n.budget(out.Level())
	t.Logf("InnerSum at LogN=13, Q=2x58, P=59: %d Galois keys, %d bytes (%.1f KiB each); noise after product+InnerSum 2^%.1f, after release 2^%.1f, budget %.1f, headroom %.1f bits; slot 0 = %d, want %d",
		len(gks), keyBytes, float64(keyBytes)/float64(len(gks))/1024, sumMax, relMax, budget, budget-relMax, got[0], sum)
	if got[0] != sum {
		t.Errorf("InnerSum released slot 0 = %d, want %d", got[0], sum)
	}
}

// TestHESlotCoeff0Share checks the one-coefficient share arithmetic (the
// rotation-free slot sum) against the full share on the test set, summing
// several blocks first as a node would for M > N slots.
func TestHESlotCoeff0Share(t *testing.T) {
	p := testParams(t)
	n := newSlotNet(t, p.BGV(tok), 3)
	r := rand.New(rand.NewPCG(7, 8))
	N := n.bp.MaxSlots()
	eval := bgv.NewEvaluator(n.bp, nil)
	var acc *rlwe.Ciphertext
	var want uint64
	for range 4 { // four blocks of N slots
		a, b := randomBits(r, N, 0.1), randomBits(r, N, 0.01)
		for i := range a {
			want += a[i] * b[i]
		}
		prod, err := eval.MulNew(n.encrypt(t, a), n.encode(t, b))
		if err != nil {
			t.Fatal(err)
		}
		if acc == nil {
			acc = prod
		} else if err := eval.Add(acc, prod, acc); err != nil {
			t.Fatal(err)
		}
	}
	// Full release, then decode the constant coefficient.
	if s := n.coeff0SlotSum(n.release(t, acc)); s != want {
		t.Fatalf("constant-coefficient sum of 4 blocks = %d, want %d", s, want)
	}
	// One-coefficient shares: c0_0 + sum_i (s_i c1)_0 (+ one smudging sample each).
	rQ := n.bp.RingQ().AtLevel(acc.Level())
	c0 := rQ.NewPoly()
	rQ.INTT(acc.Value[0], c0)
	tmp := rQ.NewPoly()
	sh := make([]uint64, rQ.Level()+1)
	phase := rlwe.NewPlaintext(n.bp, acc.Level())
	*phase.MetaData = *acc.MetaData
	phase.IsNTT = false
	for i, s := range rQ.SubRings[:rQ.Level()+1] {
		phase.Value.Coeffs[i][0] = c0.Coeffs[i][0]
		_ = s
	}
	for _, sk := range n.sks {
		coeff0Share(rQ, acc.Value[1], sk, tmp, sh)
		// Cross-check with the INTT of the full product.
		full := rQ.NewPoly()
		rQ.MulCoeffsMontgomery(acc.Value[1], sk.Value.Q, full)
		rQ.INTT(full, full)
		for i, s := range rQ.SubRings[:rQ.Level()+1] {
			if full.Coeffs[i][0] != sh[i] {
				t.Fatalf("coeff0Share prime %d: %d, want %d", i, sh[i], full.Coeffs[i][0])
			}
			phase.Value.Coeffs[i][0] = (phase.Value.Coeffs[i][0] + sh[i]) % s.Modulus
		}
	}
	if s := n.coeff0SlotSum(phase); s != want {
		t.Fatalf("one-coefficient release = %d, want %d", s, want)
	}
}

// TestHESlotBytes tabulates what a node sends for one membership vector.
func TestHESlotBytes(t *testing.T) {
	p, err := homomorphic.NewParams(homomorphic.ProductionSet)
	if err != nil {
		t.Fatal(err)
	}
	if got := polycodec.Size(8192, 2, 1); got != p.CiphertextSize() {
		t.Fatalf("polycodec size %d, CiphertextSize %d", got, p.CiphertextSize())
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-44s %10s %12s %12s %12s\n", "parameters", "B/ct", "M=2^20", "M=2^22", "M=2^24")
	rows := []struct {
		name         string
		logN, primes int
	}{
		{"production LogN=13, 2x60-bit (exact after 1 ct x pt)", 13, 2},
		{"smallest LogN=12, 54+55-bit (same B/slot)", 12, 2},
		{"flooding-secure after 1 ct x pt, LogN=13, 3 primes", 13, 3},
		{"union chain H=4 (4 products + 2 for release), LogN=14, 6 primes", 14, 6},
	}
	for _, r := range rows {
		size := polycodec.Size(1<<r.logN, 2, r.primes-1)
		fmt.Fprintf(&sb, "%-44s %10d", r.name, size)
		for _, lm := range []int{20, 22, 24} {
			fmt.Fprintf(&sb, " %9.1f MB", float64(size)*float64(int(1)<<(lm-r.logN))/1e6)
		}
		sb.WriteString("\n")
	}
	t.Log("\n" + sb.String())
}

// ---- Collisions -------------------------------------------------------

// occModel is the count sum_s Y_s over M slots when Y_s is a polynomial in
// the indicators e_{g,s} = [no member of group g hashed to slot s]:
// Y_s = sum_k coef_k * prod_{g in mask_k} e_{g,s}. Groups are disjoint sets
// of residents hashed independently and uniformly.
type occModel struct {
	sizes []float64 // group sizes
	terms []occTerm
}

type occTerm struct {
	coef float64
	mask uint
}

func (m occModel) sumSizes(mask uint) float64 {
	var s float64
	for g, n := range m.sizes {
		if mask&(1<<g) != 0 {
			s += n
		}
	}
	return s
}

// moments returns the mean and variance of sum_s Y_s, exactly (up to
// floating point), written so that nothing cancels catastrophically:
// Var = M (E[Y^2] - E[Y]^2) + M (M-1) (E[Y_s Y_t] - E[Y]^2).
func (m occModel) moments(M float64) (mean, variance float64) {
	l1 := math.Log1p(-1 / M)
	l2 := math.Log1p(-1 / ((M - 1) * (M - 1))) // log((1-2/M)/(1-1/M)^2)
	for _, a := range m.terms {
		mean += a.coef * math.Exp(m.sumSizes(a.mask)*l1)
		for _, b := range m.terms {
			base := math.Exp((m.sumSizes(a.mask) + m.sumSizes(b.mask)) * l1)
			both := m.sumSizes(a.mask & b.mask)
			variance += a.coef * b.coef * base * (M*math.Expm1(-both*l1) + M*(M-1)*math.Expm1(both*l2))
		}
	}
	return M * mean, variance
}

// unionModel: the occupied slots of K distinct residents (the union count
// 1 - prod(1 - x_i), summed).
func unionModel(K float64) occModel {
	return occModel{sizes: []float64{K}, terms: []occTerm{{1, 0}, {-1, 1}}}
}

// joinModel: slots holding a cohort member and a death, for a cohort of c,
// d deaths and I residents in both. Groups A (both), B (cohort only), E
// (deaths only): Y = 1 - e_A e_B - e_A e_E + e_A e_B e_E.
func joinModel(c, d, I float64) occModel {
	return occModel{sizes: []float64{I, c - I, d - I}, terms: []occTerm{{1, 0}, {-1, 0b011}, {-1, 0b101}, {1, 0b111}}}
}

// sumError returns the mean and standard deviation of (slot-joined sum -
// true sum) / (c*mu) for the insurer's sum over a cohort of c among P
// residents, amounts i.i.d. with mean mu and variance s2: the error is
// sum_{j not in cohort} a_j Z_j, Z_j = [j's slot holds a cohort member].
func sumError(P, c, M, mu, s2 float64) (relBias, relSD float64) {
	meanO, varO := unionModel(c).moments(M)
	q, varQ := meanO/M, varO/(M*M)
	eq2 := varQ + q*q
	nOut := P - c
	v := nOut*((mu*mu+s2)*q-mu*mu*eq2) + nOut*nOut*mu*mu*varQ
	return nOut * mu * q / (c * mu), math.Sqrt(v) / (c * mu)
}

type cityShape struct {
	P, hospitals, c, d, I int // residents, hospitals, cohort (union), deaths, cohort and dead
}

type simStats struct{ n, sum, sumSq float64 }

func (s *simStats) add(x float64)        { s.n++; s.sum += x; s.sumSq += x * x }
func (s simStats) mean() float64         { return s.sum / s.n }
func (s simStats) sd() float64           { m := s.mean(); return math.Sqrt((s.sumSq - s.n*m*m) / (s.n - 1)) }
func (s simStats) meanSE() float64       { return s.sd() / math.Sqrt(s.n) }
func (s simStats) String() string        { return fmt.Sprintf("%.2f +- %.2f", s.mean(), s.sd()) }
func relDiff(a, b float64) float64       { return math.Abs(a-b) / b }
func log2f(x float64) float64            { return math.Log2(x) }
func fmtPow2(x float64) string           { return fmt.Sprintf("2^%d", int(math.Round(log2f(x)))) }
func ceilPow2(x float64) float64         { return math.Exp2(math.Ceil(log2f(x))) }
func pairsExpected(n, M float64) float64 { return n * (n - 1) / 2 / M }

// simulateCity hashes the residents of a city into M slots (an ideal keyed
// hash: an independent uniform slot per resident), builds each hospital's
// 0/1 vector, the union 1 - prod(1 - x_i) literally, the registry's deaths
// vector and the insurer's value vector (exponential amounts, mean 1), and
// returns the errors (slot result - truth) of the three queries.
func simulateCity(r *rand.Rand, s cityShape, M int, trials int) (union, join, sum simStats) {
	slot := make([]int32, s.P)
	x := make([][]uint8, s.hospitals)
	for i := range x {
		x[i] = make([]uint8, M)
	}
	deaths := make([]uint8, M)
	value := make([]float64, M)
	amount := make([]float64, s.P)
	for range trials {
		for i := range x {
			clear(x[i])
		}
		clear(deaths)
		clear(value)
		for j := range s.P {
			slot[j] = int32(r.IntN(M))
			amount[j] = r.ExpFloat64()
			value[slot[j]] += amount[j]
		}
		// Residents 0..c-1 are the cohort (each at one hospital, 30% also at a second);
		// residents c-I..c-I+d-1 died.
		var trueSum float64
		for j := range s.c {
			h := j % s.hospitals
			x[h][slot[j]] = 1
			if r.Float64() < 0.3 {
				x[(h+1+r.IntN(s.hospitals-1))%s.hospitals][slot[j]] = 1
			}
			trueSum += amount[j]
		}
		for j := s.c - s.I; j < s.c-s.I+s.d; j++ {
			deaths[slot[j]] = 1
		}
		var nUnion, nJoin int
		var gotSum float64
		for k := range M {
			notIn := 1
			for i := range x {
				notIn *= 1 - int(x[i][k])
			}
			u := 1 - notIn
			nUnion += u
			nJoin += u * int(deaths[k])
			gotSum += float64(u) * value[k]
		}
		union.add(float64(nUnion - s.c))
		join.add(float64(nJoin - s.I))
		sum.add((gotSum - trueSum) / float64(s.c)) // relative to c * mean amount
	}
	return union, join, sum
}

var heslotCity = flag.Bool("heslot.city", false, "TestHESlotCollisions: also simulate the issue's city (10^6 residents) at M = 2^20 (about 10 s, a minute under -race)")

// TestHESlotCollisions checks the analytic collision model against a
// simulation (a scaled-down city; the city at M = 2^20 too with
// -heslot.city) and logs the figures for the city.
func TestHESlotCollisions(t *testing.T) {
	check := func(s cityShape, M, trials int, tolSD float64) {
		r := rand.New(rand.NewPCG(uint64(M), uint64(s.P)))
		u, j, su := simulateCity(r, s, M, trials)
		Mf := float64(M)
		uMean, uVar := unionModel(float64(s.c)).moments(Mf)
		jMean, jVar := joinModel(float64(s.c), float64(s.d), float64(s.I)).moments(Mf)
		sBias, sSD := sumError(float64(s.P), float64(s.c), Mf, 1, 1)
		for _, x := range []struct {
			name     string
			sim      simStats
			bias, sd float64
		}{
			{"union", u, uMean - float64(s.c), math.Sqrt(uVar)},
			{"join", j, jMean - float64(s.I), math.Sqrt(jVar)},
			{"insurer sum (relative)", su, sBias, sSD},
		} {
			t.Logf("city %+v M=2^%d, %d trials, %s: simulated bias %.4g sd %.4g; analytic %.4g sd %.4g",
				s, int(log2f(Mf)), trials, x.name, x.sim.mean(), x.sim.sd(), x.bias, x.sd)
			if d := math.Abs(x.sim.mean() - x.bias); d > 4.5*x.sd/math.Sqrt(float64(trials)) {
				t.Errorf("%s: simulated bias %.4g, analytic %.4g (difference %.3g standard errors)", x.name, x.sim.mean(), x.bias, d/(x.sd/math.Sqrt(float64(trials))))
			}
			if relDiff(x.sim.sd(), x.sd) > tolSD {
				t.Errorf("%s: simulated sd %.4g, analytic %.4g", x.name, x.sim.sd(), x.sd)
			}
		}
	}
	// Scaled-down city: 1/50 of the residents, cohort/M (0.12) close to the city at 2^20 (0.095).
	check(cityShape{P: 20_000, hospitals: 4, c: 2_000, d: 200, I: 20}, 1<<14, 150, 0.25)
	if *heslotCity {
		check(cityShape{P: 1_000_000, hospitals: 4, c: 100_000, d: 10_000, I: 1_000}, 1<<20, 8, 0.6)
	}

	// The city: 10^6 residents, cohort (union over 4 hospitals) 10^5,
	// 10^4 deaths a year, 10^3 of them in the cohort (independence), the
	// insurer holding every resident (amounts with mean mu and sd mu).
	const P, c, d, I = 1e6, 1e5, 1e4, 1e3
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-8s | %-26s | %-26s | %-30s\n", "M", "union count (10^5)", "cohort x deaths (10^3)", "insurer sum over cohort")
	fmt.Fprintf(&sb, "%-8s | %-26s | %-26s | %-30s\n", "", "bias, sd", "bias, sd", "relative bias, relative sd")
	for _, lm := range []int{20, 22, 24} {
		M := math.Exp2(float64(lm))
		uMean, uVar := unionModel(c).moments(M)
		jMean, jVar := joinModel(c, d, I).moments(M)
		sBias, sSD := sumError(P, c, M, 1, 1)
		fmt.Fprintf(&sb, "2^%-6d | %+9.0f (%+5.2f%%), %5.1f | %+7.0f (%+6.1f%%), %5.1f | %+7.2f%%, %6.3f%%\n", lm,
			uMean-c, 100*(uMean-c)/c, math.Sqrt(uVar), jMean-I, 100*(jMean-I)/I, math.Sqrt(jVar), 100*sBias, 100*sSD)
	}
	// Exactness: expected colliding pairs among all residents below 0.01.
	for _, n := range []float64{20_000, 1e6} {
		need := n * (n - 1) / 2 / 0.01
		M := ceilPow2(need)
		fmt.Fprintf(&sb, "%.0f residents: E[colliding pairs] < 0.01 needs M >= %.3g (%s slots, E = %.4f, P(no collision) %.3f): %.3g ciphertexts, %.3g TB per vector at the production set\n",
			n, need, fmtPow2(M), pairsExpected(n, M), math.Exp(-pairsExpected(n, M)), M/8192, M/8192*262_197/1e12)
	}
	t.Log("\n" + sb.String())

	// Quick check of the pair formula: 2,000 residents in 2^20 slots.
	r := rand.New(rand.NewPCG(9, 10))
	var pairs simStats
	seen := make(map[int]int, 2000)
	for range 2000 {
		clear(seen)
		k := 0
		for range 2000 {
			s := r.IntN(1 << 20)
			k += seen[s]
			seen[s]++
		}
		pairs.add(float64(k))
	}
	if want := pairsExpected(2000, 1<<20); math.Abs(pairs.mean()-want) > 4.5*math.Sqrt(want/2000) {
		t.Errorf("colliding pairs: simulated %.3f, analytic %.3f", pairs.mean(), want)
	}
}

// ---- Benchmarks (production set, one goroutine) ------------------------

func benchNet(b *testing.B) (*slotNet, *rlwe.Ciphertext, *rlwe.Plaintext, []uint64) {
	b.Helper()
	n, _ := productionSlotNet(b, 2)
	r := rand.New(rand.NewPCG(11, 12))
	v := randomBits(r, n.bp.MaxSlots(), 0.1)
	return n, n.encrypt(b, v), n.encode(b, randomBits(r, n.bp.MaxSlots(), 0.01)), v
}

// BenchmarkHESlotEncrypt: encode + encrypt one ciphertext of 8192 slots
// under the collective key (a node does M/8192 of these per vector).
func BenchmarkHESlotEncrypt(b *testing.B) {
	n, _, _, v := benchNet(b)
	pt := bgv.NewPlaintext(n.bp, n.bp.MaxLevel())
	ct := bgv.NewCiphertext(n.bp, 1, n.bp.MaxLevel())
	b.ReportMetric(float64(polycodec.Size(n.bp.N(), 2, n.bp.MaxLevel())), "bytes/ct")
	for b.Loop() {
		if err := n.ecd.Encode(v, pt); err != nil {
			b.Fatal(err)
		}
		if err := n.enc.Encrypt(pt, ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHESlotEncodePlain: the multiplying node encodes its 0/1 vector.
func BenchmarkHESlotEncodePlain(b *testing.B) {
	n, _, _, v := benchNet(b)
	pt := bgv.NewPlaintext(n.bp, n.bp.MaxLevel())
	for b.Loop() {
		if err := n.ecd.Encode(v, pt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHESlotMulPlain: one ciphertext x plaintext product (pre-encoded).
func BenchmarkHESlotMulPlain(b *testing.B) {
	n, ct, pt, _ := benchNet(b)
	eval := bgv.NewEvaluator(n.bp, nil)
	out := bgv.NewCiphertext(n.bp, 1, ct.Level())
	for b.Loop() {
		if err := eval.Mul(ct, pt, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHESlotMulRelin: one ciphertext x ciphertext product with
// relinearisation (the union's 1 - prod(1 - x_i) without a plaintext side).
func BenchmarkHESlotMulRelin(b *testing.B) {
	n, ct := benchNetP(b)
	rlk := rlwe.NewKeyGenerator(n.bp).GenRelinearizationKeyNew(n.ideal)
	b.ReportMetric(float64(rlk.BinarySize()), "rlk-bytes")
	eval := bgv.NewEvaluator(n.bp, rlwe.NewMemEvaluationKeySet(rlk))
	out := bgv.NewCiphertext(n.bp, 1, ct.Level())
	for b.Loop() {
		if err := eval.MulRelin(ct, ct, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHESlotAdd: adding two ciphertexts (summing the M/8192 blocks).
func BenchmarkHESlotAdd(b *testing.B) {
	n, ct, _, _ := benchNet(b)
	eval := bgv.NewEvaluator(n.bp, nil)
	out := ct.CopyNew()
	for b.Loop() {
		if err := eval.Add(out, ct, out); err != nil {
			b.Fatal(err)
		}
	}
}

// benchNetP is benchNet at productionPlusP (key switching works there).
func benchNetP(b *testing.B) (*slotNet, *rlwe.Ciphertext) {
	b.Helper()
	n := newSlotNet(b, productionPlusP(b), 2)
	return n, n.encrypt(b, randomBits(rand.New(rand.NewPCG(13, 14)), n.bp.MaxSlots(), 0.1))
}

// BenchmarkHESlotInnerSum: the sum of all 8192 slots of one ciphertext with
// rotations (12 column rotations + the row swap), at productionPlusP.
func BenchmarkHESlotInnerSum(b *testing.B) {
	n, ct := benchNetP(b)
	gks := innerSumKeys(n)
	size := 0
	for _, gk := range gks {
		size += gk.BinarySize()
	}
	b.ReportMetric(float64(len(gks)), "galois-keys")
	b.ReportMetric(float64(size), "galois-bytes")
	eval := bgv.NewEvaluator(n.bp, rlwe.NewMemEvaluationKeySet(nil, gks...))
	out, tmp := bgv.NewCiphertext(n.bp, 1, ct.Level()), bgv.NewCiphertext(n.bp, 1, ct.Level())
	for b.Loop() {
		if err := innerSumAll(eval, ct, out, tmp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHESlotGaloisKeyGen: generating the 13 Galois keys of a slot sum
// (single key holder; a collective GKG costs each party about as much and
// sends a share of the same size per key).
func BenchmarkHESlotGaloisKeyGen(b *testing.B) {
	n, _ := benchNetP(b)
	for b.Loop() {
		_ = innerSumKeys(n)
	}
}

// BenchmarkHESlotCoeff0Share: a party's one-coefficient decryption share
// (the rotation-free slot sum), without its single smudging sample (about
// 130 ns, docs/crypto.md).
func BenchmarkHESlotCoeff0Share(b *testing.B) {
	n, ct, _, _ := benchNet(b)
	rQ := n.bp.RingQ().AtLevel(ct.Level())
	tmp := rQ.NewPoly()
	out := make([]uint64, rQ.Level()+1)
	for b.Loop() {
		coeff0Share(rQ, ct.Value[1], n.sks[0], tmp, out)
	}
}

// BenchmarkHESlotFullShare: a party's full decryption share with the
// production smudging (what a release of the whole slot vector costs).
func BenchmarkHESlotFullShare(b *testing.B) {
	n, ct, _, _ := benchNet(b)
	rQ := n.bp.RingQ().AtLevel(ct.Level())
	tmp := rQ.NewPoly()
	for b.Loop() {
		rQ.MulCoeffsMontgomery(ct.Value[1], n.sks[0].Value.Q, tmp)
		if err := smudge.AddNTT(n.bp.RingQ(), ct.Level(), n.smud, tmp); err != nil {
			b.Fatal(err)
		}
	}
}
