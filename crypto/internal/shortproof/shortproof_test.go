package shortproof

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// toy is the statement b = a*x0 + x1 (an RLWE sample) over a 2-limb ring
// of degree 2^10, with a uniform a.
func toy(t testing.TB) (*Statement, [][]int64) {
	t.Helper()
	r, err := ring.NewRing(1<<10, []uint64{0xfffffffffffc001, 0xffffffffffe8001})
	if err != nil {
		t.Fatal(err)
	}
	prng, err := sampling.NewPRNG()
	if err != nil {
		t.Fatal(err)
	}
	a := ring.NewUniformSampler(prng, r).ReadNew() // taken as NTT, Montgomery
	x0, err := uniformSigned(r.N(), 1)
	if err != nil {
		t.Fatal(err)
	}
	x1, err := uniformSigned(r.N(), 19)
	if err != nil {
		t.Fatal(err)
	}
	st := &Statement{Domain: "toy", Ring: r, Bounds: []int64{1, 19}, Context: []byte("ctx")}
	st.Apply = func(x [][]int64, _ []uint64, out []ring.Poly) {
		tmp := r.NewPoly()
		SetSigned(r, tmp, x[0])
		r.NTT(tmp, tmp)
		r.MulCoeffsMontgomery(tmp, a, out[0])
		SetSigned(r, tmp, x[1])
		r.NTT(tmp, tmp)
		r.Add(out[0], tmp, out[0])
	}
	img := []ring.Poly{r.NewPoly()}
	st.Apply([][]int64{x0, x1}, nil, img)
	st.Image = img
	return st, [][]int64{x0, x1}
}

func TestProveVerify(t *testing.T) {
	st, x := toy(t)
	proof, err := Prove(st, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(proof) != st.Size() {
		t.Fatalf("proof %d bytes, Size %d", len(proof), st.Size())
	}
	if err := Verify(st, proof); err != nil {
		t.Fatal(err)
	}
	other := *st
	other.Context = []byte("another")
	if err := Verify(&other, proof); !errors.Is(err, ErrRefused) {
		t.Fatalf("another context: %v", err)
	}
	other = *st
	other.Domain = "another"
	if err := Verify(&other, proof); !errors.Is(err, ErrRefused) {
		t.Fatalf("another domain: %v", err)
	}
	for _, i := range []int{0, 31, 32, 100, len(proof) - 1} {
		b := append([]byte(nil), proof...)
		b[i] ^= 0x10
		if err := Verify(st, b); !errors.Is(err, ErrRefused) {
			t.Fatalf("byte %d changed: %v", i, err)
		}
	}
	if err := Verify(st, proof[:len(proof)-1]); !errors.Is(err, ErrRefused) {
		t.Fatalf("truncated: %v", err)
	}
}

// TestWitnessOutsideBounds: Prove refuses a witness outside its bounds,
// and a cheating prover that runs the rounds anyway with a coefficient of
// 2^30 never gets an answer in range.
func TestWitnessOutsideBounds(t *testing.T) {
	st, x := toy(t)
	x[1][5] = 1 << 30
	st.Apply(x, nil, st.Image)
	if _, err := Prove(st, x, nil); err == nil || !strings.Contains(err.Error(), "outside its bound") {
		t.Fatalf("Prove: %v", err)
	}
	if _, _, err := proveRounds(st, x, nil, nil); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("the rounds: %v", err)
	}
}

// TestAnswersUniform: the answers of two very different witnesses fill
// the same range (the rejection step), with mean near zero.
func TestAnswersUniform(t *testing.T) {
	st, x := toy(t)
	for _, v := range []int64{-1, 1} {
		for i := range x[0] {
			x[0][i] = v
		}
		st.Apply(x, nil, st.Image)
		proof, err := Prove(st, x, nil)
		if err != nil {
			t.Fatal(err)
		}
		z, _, err := Answers(st, proof)
		if err != nil {
			t.Fatal(err)
		}
		lim := float64(st.Limit(0))
		var lo, hi, mean float64
		for _, c := range z[0] {
			f := float64(c)
			lo, hi, mean = min(lo, f), max(hi, f), mean+f/float64(len(z[0]))
		}
		if lo > -0.95*lim || hi < 0.95*lim {
			t.Fatalf("x0 = %d everywhere: answers span [%g, %g], want about +-%g", v, lo, hi, lim)
		}
		if se := lim / 1.732 / 32; mean > 5*se || mean < -5*se {
			t.Fatalf("x0 = %d everywhere: mean answer %g (standard error %g)", v, mean, se)
		}
	}
}

// FuzzVerify: any bytes as a proof are refused or (only the honest proof)
// accepted, and never crash the verifier.
func FuzzVerify(f *testing.F) {
	st, x := toy(f)
	proof, err := Prove(st, x, nil)
	if err != nil {
		f.Fatal(err)
	}
	fuzzVerify(f, st, proof)
}

// fuzzVerify fuzzes Verify of st from the honest proof: no other bytes
// may verify.
func fuzzVerify(f *testing.F, st *Statement, proof []byte) {
	f.Add(proof)
	f.Add(proof[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := Verify(st, b); err == nil && string(b) != string(proof) {
			t.Fatalf("a proof other than the honest one verified (%d bytes)", len(b))
		}
	})
}

// TestHalfModulusAllOnesProves pins the one relaxation of the proof that
// docs/crypto.md ("What the relaxation allows") names: a prover can open
// an image shifted by H = (Q+1)/2 * (1 + X + ... + X^(N-1)), which has no
// short opening, because every challenge has an even number of nonzero
// coefficients, so c*H = (c*allones)/2 mod Q is short and the cheater
// adds it to its answer for the error component. If a change of the
// challenges (or of anything else) makes this fail, the docs must change
// with it.
func TestHalfModulusAllOnesProves(t *testing.T) {
	st, x := toy(t)
	r := st.Ring
	n := r.N()
	q := new(big.Int).SetUint64(r.SubRings[0].Modulus)
	q.Mul(q, new(big.Int).SetUint64(r.SubRings[1].Modulus))
	half := new(big.Int).Rsh(new(big.Int).Add(q, big.NewInt(1)), 1)
	h := r.NewPoly()
	for j, s := range r.SubRings[:r.Level()+1] {
		v := new(big.Int).Mod(half, new(big.Int).SetUint64(s.Modulus)).Uint64()
		for i := range h.Coeffs[j] {
			h.Coeffs[j][i] = v
		}
	}
	r.NTT(h, h)
	r.Add(st.Image[0], h, st.Image[0])

	ones := make([]int64, n)
	for i := range ones {
		ones[i] = 1
	}
	limits := st.limits()
	w := []ring.Poly{r.NewPoly()}
	for round := 0; ; round++ {
		if round == attempts {
			t.Fatal("the cheater found no answer in range")
		}
		y0, err := uniformSigned(n, st.shifts()[0]*Gamma)
		if err != nil {
			t.Fatal(err)
		}
		y1, err := uniformSigned(n, st.shifts()[1]*Gamma)
		if err != nil {
			t.Fatal(err)
		}
		st.Apply([][]int64{y0, y1}, nil, w)
		hash := st.hash(w, nil)
		c := challengeOf(n, hash)
		z0, z1, co := c.mul(x[0]), c.mul(x[1]), c.mul(ones)
		for i := range z0 {
			if co[i]%2 != 0 {
				t.Fatalf("c*allones has an odd coefficient %d: the challenges changed", co[i])
			}
			z0[i] += y0[i]
			z1[i] += y1[i] + co[i]/2
		}
		if !within(z0, limits[0]) || !within(z1, limits[1]) {
			continue
		}
		if err := Verify(st, st.encode(hash, [][]int64{z0, z1}, nil, nil)); err != nil {
			t.Fatalf("the half-modulus all-ones shift no longer proves: %v (update docs/crypto.md)", err)
		}
		return
	}
}

// TestSetSignedReduces checks the division-free path of SetSigned against
// big.Int reduction, at the edges of every limb's modulus and of int64.
func TestSetSignedReduces(t *testing.T) {
	r, err := ring.NewRing(1<<4, []uint64{0xfffffffffffc001, 0x7fffffffe0001, 65537})
	if err != nil {
		t.Fatal(err)
	}
	var x []int64
	for _, s := range r.SubRings {
		q := int64(s.Modulus)
		for _, v := range []int64{0, 1, -1, q - 1, q, q + 1, -q + 1, -q, -q - 1, 2 * q, -2 * q, 1<<62 - 1} {
			x = append(x, v)
		}
	}
	x = append(x, 1<<63-1, -1<<63, -1<<63+1)
	for start := 0; start < len(x); start += r.N() {
		chunk := x[start:min(start+r.N(), len(x))]
		dst := r.NewPoly()
		SetSigned(r, dst, chunk)
		for j, s := range r.SubRings {
			q := new(big.Int).SetUint64(s.Modulus)
			for i, v := range chunk {
				want := new(big.Int).Mod(big.NewInt(v), q).Uint64()
				if got := dst.Coeffs[j][i]; got != want {
					t.Errorf("SetSigned(%d) mod %d = %d, want %d", v, s.Modulus, got, want)
				}
			}
		}
	}
}

// TestBitsRoundTrip writes values of every width from 1 to 64 in mixed
// order and reads them back: the reader's eight-byte refill and its
// byte-by-byte tail give the same bits, and the padding reads as done.
func TestBitsRoundTrip(t *testing.T) {
	prng, err := sampling.NewPRNG()
	if err != nil {
		t.Fatal(err)
	}
	for trial := 0; trial < 50; trial++ {
		var w bitWriter
		var widths []int
		var values []uint64
		for k := 0; k < 1+trial*7; k++ {
			var b [9]byte
			if _, err := prng.Read(b[:]); err != nil {
				t.Fatal(err)
			}
			width := 1 + int(b[8])%64
			v := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
				uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
			if width < 64 {
				v &= 1<<width - 1
			}
			w.write(v, width)
			widths = append(widths, width)
			values = append(values, v)
		}
		rd := bitReader{buf: w.flush()}
		for k, width := range widths {
			if got := rd.read(width); got != values[k] {
				t.Fatalf("trial %d: value %d (width %d) read %#x, wrote %#x", trial, k, width, got, values[k])
			}
		}
		if !rd.done() {
			t.Fatalf("trial %d: bits left after the last value", trial)
		}
	}
}

// uniformToy is the statement b = a*f + e over a 2-limb ring of degree
// 2^10, f uniform in R_Q (NTT, Montgomery), |e| <= 19; it returns the
// statement, its witness and the ring's uniform sampler.
func uniformToy(t testing.TB) (*Statement, []int64, ring.Poly, *ring.UniformSampler) {
	t.Helper()
	r, err := ring.NewRing(1<<10, []uint64{0xfffffffffffc001, 0xffffffffffe8001})
	if err != nil {
		t.Fatal(err)
	}
	prng, err := sampling.NewPRNG()
	if err != nil {
		t.Fatal(err)
	}
	us := ring.NewUniformSampler(prng, r)
	a, f := us.ReadNew(), us.ReadNew()
	e, err := uniformSigned(r.N(), 19)
	if err != nil {
		t.Fatal(err)
	}
	st := &Statement{Domain: "toy-uniform", Ring: r, Bounds: []int64{19}, Context: []byte("ctx"), Uniform: 1}
	st.Apply = func(x [][]int64, _ []uint64, out []ring.Poly) {
		SetSigned(r, out[0], x[0])
		r.NTT(out[0], out[0])
		r.MForm(out[0], out[0])
	}
	st.ApplyUniform = func(xu []ring.Poly, out []ring.Poly) {
		r.MulCoeffsMontgomeryThenAdd(xu[0], a, out[0])
	}
	img := []ring.Poly{r.NewPoly()}
	st.Apply([][]int64{e}, nil, img)
	st.ApplyUniform([]ring.Poly{f}, img)
	st.Image = img
	return st, e, f, us
}

// FuzzVerifyUniform: no byte string but the honest proof verifies for a
// statement with a uniform component (its answer decoded limb by limb,
// each below its prime).
func FuzzVerifyUniform(f *testing.F) {
	st, e, fu, _ := uniformToy(f)
	proof, err := ProveUniform(st, [][]int64{e}, nil, []ring.Poly{fu})
	if err != nil {
		f.Fatal(err)
	}
	fuzzVerify(f, st, proof)
}

// TestUniformComponent proves b = a*f + e with f any element of R_Q (a
// uniform component, in the NTT and Montgomery domain) and e short: the
// proof verifies; a changed uniform answer, one not below its prime, and a
// statement with another image are refused; the same statement proven
// without its uniform component is refused before any round.
func TestUniformComponent(t *testing.T) {
	st, e, f, us := uniformToy(t)
	proof, err := ProveUniform(st, [][]int64{e}, nil, []ring.Poly{f})
	if err != nil {
		t.Fatal(err)
	}
	if len(proof) != st.Size() {
		t.Fatalf("proof of %d bytes, Size %d", len(proof), st.Size())
	}
	if err := Verify(st, proof); err != nil {
		t.Fatalf("honest proof: %v", err)
	}
	// The uniform answer is the proof's last 2*60 bits a coefficient.
	bad := append([]byte(nil), proof...)
	bad[len(bad)-200] ^= 1
	if err := Verify(st, bad); !errors.Is(err, ErrRefused) {
		t.Fatalf("changed uniform answer: %v", err)
	}
	over := append([]byte(nil), proof...)
	for i := len(over) - 15; i < len(over); i++ {
		over[i] = 0xff // the last coefficient of the last limb: 2^60 - 1 > q
	}
	if err := Verify(st, over); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not below its prime") {
		t.Fatalf("uniform answer above its prime: %v", err)
	}
	other := *st
	other.Image = []ring.Poly{us.ReadNew()}
	if err := Verify(&other, proof); !errors.Is(err, ErrRefused) {
		t.Fatalf("another image: %v", err)
	}
	if _, err := ProveUniform(st, [][]int64{e}, nil, nil); err == nil {
		t.Fatal("a proof without its uniform component")
	}
	if _, err := Prove(st, [][]int64{e}, nil); err == nil {
		t.Fatal("Prove of a statement with a uniform component")
	}
}

// TestUniformBelow: draws stay below their bound on both widths (32 and
// 64 random bits) and at the edges (1, 2^32, 2^32 + 1, a 60-bit prime),
// and a small bound's residues come out about equally often.
func TestUniformBelow(t *testing.T) {
	for _, bound := range []uint64{1, 3, 1 << 32, 1<<32 + 1, 0xfffffffffffc001} {
		v, err := uniformBelow(4096, bound)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != 4096 {
			t.Fatalf("bound %d: %d draws", bound, len(v))
		}
		for _, x := range v {
			if x >= bound {
				t.Fatalf("bound %d: drew %d", bound, x)
			}
		}
	}
	const n = 30000
	v, err := uniformBelow(n, 3)
	if err != nil {
		t.Fatal(err)
	}
	var counts [3]int
	for _, x := range v {
		counts[x]++
	}
	for r, c := range counts {
		// Expected 10000, standard deviation about 82: 6 of them.
		if c < n/3-500 || c > n/3+500 {
			t.Fatalf("residue %d drawn %d times of %d", r, c, n)
		}
	}
}

// TestUniformAnswerMasked: with a uniform component of zero, its answer
// z = y + c*0 is the mask alone, which must be uniform in R_Q (about half
// of each limb's coefficients in its prime's upper half); an unmasked or
// badly masked answer (zero, or small) would show here and reveal the
// component.
func TestUniformAnswerMasked(t *testing.T) {
	st, e, _, _ := uniformToy(t)
	zero := st.Ring.NewPoly()
	img := []ring.Poly{st.Ring.NewPoly()}
	st.Apply([][]int64{e}, nil, img)
	st.Image = img
	proof, err := ProveUniform(st, [][]int64{e}, nil, []ring.Poly{zero})
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, zu, err := st.decode(proof)
	if err != nil {
		t.Fatal(err)
	}
	for j, sr := range st.Ring.SubRings[:st.Ring.Level()+1] {
		upper := 0
		for _, v := range zu[0].Coeffs[j] {
			if v >= sr.Modulus/2 {
				upper++
			}
		}
		// n = 1024: the count is about 512 with a standard deviation of 16.
		if n := len(zu[0].Coeffs[j]); upper < n/2-100 || upper > n/2+100 {
			t.Fatalf("limb %d: %d of %d answer coefficients in the upper half", j, upper, n)
		}
	}
}
