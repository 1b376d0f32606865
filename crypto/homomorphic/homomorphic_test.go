package homomorphic_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/crypto/homomorphic"
)

func TestMain(m *testing.M) {
	homomorphic.AllowInsecureForTests()
	os.Exit(m.Run())
}

func testParams(t testing.TB) homomorphic.Params {
	t.Helper()
	p, err := homomorphic.NewParams(homomorphic.InsecureTestSet)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParamsProduction(t *testing.T) {
	p, err := homomorphic.NewParams(homomorphic.ProductionSet)
	if err != nil {
		t.Fatal(err)
	}
	if p.Slots() != 8192 || p.LogN() != 13 {
		t.Fatalf("slots %d logN %d", p.Slots(), p.LogN())
	}
	if p.LogQ() > 152 { // HE standard, N=8192, ternary: 192-bit security at log2(QP) <= 152
		t.Fatalf("log2 Q = %.1f too large", p.LogQ())
	}
	if got := p.PlaintextModulus(); got != 1099512938497 {
		t.Fatalf("t = %d", got)
	}
	if p.MaxAbs() != int64((p.PlaintextModulus()-1)/2) {
		t.Fatal("MaxAbs")
	}
	if b := p.NoiseBudgetBits(); b < 78 {
		t.Fatalf("noise budget %.1f bits", b)
	}
	// Smudging: sigma = 2^60.5, truncated at floor(10 sigma).
	if s := p.SmudgingSigma(); s != math.Sqrt2*(1<<60) {
		t.Fatalf("smudging sigma %g", s)
	}
	if b := p.SmudgingBound(); b != 16304772281665977765 {
		t.Fatalf("smudging bound %d", b)
	}
	t.Logf("%s: logN=%d logQ=%.2f t=%d budget=%.1f bits sigma=2^%.2f ct=%d bytes",
		p.Name(), p.LogN(), p.LogQ(), p.PlaintextModulus(), p.NoiseBudgetBits(), log2(p.SmudgingSigma()), p.CiphertextSize())
}

func TestZeroParams(t *testing.T) {
	var p homomorphic.Params
	if p.Slots() != 0 || p.MaxAbs() != 0 || p.Name() != "" {
		t.Fatal("zero Params")
	}
	if _, err := homomorphic.GenSecretKeyShare(p); !errors.Is(err, homomorphic.ErrInvalidArgument) {
		t.Fatalf("err = %v", err)
	}
}

func TestUnknownParams(t *testing.T) {
	if _, err := homomorphic.NewParams("nope"); !errors.Is(err, homomorphic.ErrUnknownParams) {
		t.Fatalf("err = %v", err)
	}
}

func TestEncryptDecryptCentred(t *testing.T) {
	p := testParams(t)
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	n := p.Slots() + 17
	vals := make([]int64, n)
	for i := range vals {
		vals[i] = int64(i*7919%100003) - 50000
	}
	vals[0], vals[1], vals[2] = p.MaxAbs(), -p.MaxAbs(), 0
	vals[n-1] = -1
	cts, err := homomorphic.Encrypt(p, rk.Public(), vals)
	if err != nil {
		t.Fatal(err)
	}
	if len(cts) != 2 {
		t.Fatalf("%d ciphertexts", len(cts))
	}
	got, err := homomorphic.Decrypt(p, rk, cts, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		if got[i] != vals[i] {
			t.Fatalf("slot %d: got %d want %d", i, got[i], vals[i])
		}
	}
	// Padding decrypts to zero.
	all, err := homomorphic.Decrypt(p, rk, cts, 2*p.Slots())
	if err != nil {
		t.Fatal(err)
	}
	for i := n; i < len(all); i++ {
		if all[i] != 0 {
			t.Fatalf("padding slot %d = %d", i, all[i])
		}
	}
}

func TestEncryptRange(t *testing.T) {
	p := testParams(t)
	rk, _ := homomorphic.GenResultKey(p)
	for _, v := range []int64{p.MaxAbs() + 1, -p.MaxAbs() - 1, 1 << 62} {
		if _, err := homomorphic.Encrypt(p, rk.Public(), []int64{1, v}); !errors.Is(err, homomorphic.ErrValueOutOfRange) {
			t.Fatalf("v=%d: err = %v", v, err)
		}
	}
	if _, err := homomorphic.Encrypt(p, rk.Public(), nil); !errors.Is(err, homomorphic.ErrInvalidArgument) {
		t.Fatalf("empty: err = %v", err)
	}
}

func TestSumAndAggregator(t *testing.T) {
	p := testParams(t)
	rk, _ := homomorphic.GenResultKey(p)
	const parties = 4
	n := p.Slots() + 3
	want := make([]int64, n)
	var vecs [][]*homomorphic.Ciphertext
	agg, err := homomorphic.NewAggregator(p, p.NumCiphertexts(n))
	if err != nil {
		t.Fatal(err)
	}
	for j := range parties {
		v := make([]int64, n)
		for i := range v {
			v[i] = int64((i+1)*(j+1)) - int64(3*i)
			want[i] += v[i]
		}
		cts, err := homomorphic.Encrypt(p, rk.Public(), v)
		if err != nil {
			t.Fatal(err)
		}
		vecs = append(vecs, cts)
		if err := agg.Add(cts); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := homomorphic.Sum(p, vecs)
	if err != nil {
		t.Fatal(err)
	}
	aggSum, err := agg.Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]*homomorphic.Ciphertext{sum, aggSum} {
		got, err := homomorphic.Decrypt(p, rk, s, n)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("slot %d: got %d want %d", i, got[i], want[i])
			}
		}
	}
	if !sum[0].Equal(aggSum[0]) || !sum[1].Equal(aggSum[1]) || sum[0].Equal(sum[1]) {
		t.Fatal("Equal: Sum and Aggregator disagree")
	}
	// Inputs unchanged by Sum.
	got, _ := homomorphic.Decrypt(p, rk, vecs[0], 3)
	if got[0] != 1-0 || got[1] != 2-3 {
		t.Fatalf("Sum modified its input: %v", got)
	}
	if _, err := homomorphic.Sum(p, [][]*homomorphic.Ciphertext{vecs[0], vecs[1][:1]}); !errors.Is(err, homomorphic.ErrMismatch) {
		t.Fatalf("length mismatch: err = %v", err)
	}
	if err := agg.Add(vecs[0][:1]); !errors.Is(err, homomorphic.ErrMismatch) {
		t.Fatalf("aggregator length mismatch: err = %v", err)
	}
}

func TestSerialisationRoundTrip(t *testing.T) {
	p := testParams(t)
	rk, _ := homomorphic.GenResultKey(p)
	sk, _ := homomorphic.GenSecretKeyShare(p)

	rkb, err := rk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rk2, err := homomorphic.UnmarshalResultKey(p, rkb)
	if err != nil {
		t.Fatal(err)
	}
	pkb, _ := rk.Public().MarshalBinary()
	pk2, err := homomorphic.UnmarshalPublicKey(p, pkb)
	if err != nil {
		t.Fatal(err)
	}
	if !pk2.Equal(rk.Public()) || !rk2.Public().Equal(rk.Public()) {
		t.Fatal("public key round trip")
	}
	skb, _ := sk.MarshalBinary()
	sk2, err := homomorphic.UnmarshalSecretKeyShare(p, skb)
	if err != nil {
		t.Fatal(err)
	}
	skb2, _ := sk2.MarshalBinary()
	if !bytes.Equal(skb, skb2) {
		t.Fatal("secret key round trip")
	}

	cts, _ := homomorphic.Encrypt(p, pk2, []int64{5, -6, 7})
	ctb, err := cts[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(ctb) != p.CiphertextSize() {
		t.Fatalf("ciphertext %d bytes, CiphertextSize %d", len(ctb), p.CiphertextSize())
	}
	ct2, err := homomorphic.UnmarshalCiphertext(p, ctb)
	if err != nil {
		t.Fatal(err)
	}
	got, err := homomorphic.Decrypt(p, rk2, []*homomorphic.Ciphertext{ct2}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[5 -6 7]" {
		t.Fatalf("got %v", got)
	}

	// Cross-kind and cross-parameter decoding fails cleanly.
	if _, err := homomorphic.UnmarshalCiphertext(p, pkb); !errors.Is(err, homomorphic.ErrMalformed) {
		t.Fatalf("pk as ciphertext: %v", err)
	}
	if _, err := homomorphic.UnmarshalSecretKeyShare(p, pkb); !errors.Is(err, homomorphic.ErrMalformed) {
		t.Fatalf("pk as sk: %v", err)
	}
	prod, _ := homomorphic.NewParams(homomorphic.ProductionSet)
	if _, err := homomorphic.UnmarshalCiphertext(prod, ctb); !errors.Is(err, homomorphic.ErrMalformed) {
		t.Fatalf("other params: %v", err)
	}
	bad := bytes.Clone(ctb)
	for i := len(bad) - 8; i < len(bad); i++ {
		bad[i] = 0xff
	}
	if _, err := homomorphic.UnmarshalCiphertext(p, bad); !errors.Is(err, homomorphic.ErrMalformed) {
		t.Fatalf("unreduced coefficient: %v", err)
	}
	if _, err := homomorphic.UnmarshalCiphertext(p, ctb[:len(ctb)-1]); !errors.Is(err, homomorphic.ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestParamsMismatch(t *testing.T) {
	p := testParams(t)
	prod, _ := homomorphic.NewParams(homomorphic.ProductionSet)
	rk, _ := homomorphic.GenResultKey(p)
	if _, err := homomorphic.Encrypt(prod, rk.Public(), []int64{1}); !errors.Is(err, homomorphic.ErrMismatch) {
		t.Fatalf("err = %v", err)
	}
	cts, _ := homomorphic.Encrypt(p, rk.Public(), []int64{1})
	if err := homomorphic.Add(prod, cts[0], cts[0]); !errors.Is(err, homomorphic.ErrMismatch) {
		t.Fatalf("err = %v", err)
	}
	if _, err := homomorphic.Decrypt(p, rk, cts, 2*p.Slots()); !errors.Is(err, homomorphic.ErrInvalidArgument) {
		t.Fatalf("n too large: err = %v", err)
	}
}

func TestRedaction(t *testing.T) {
	p := testParams(t)
	sk, _ := homomorphic.GenSecretKeyShare(p)
	rk, _ := homomorphic.GenResultKey(p)
	for _, v := range []any{sk, *sk, rk, *rk} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			out := fmt.Sprintf(verb, v)
			if out != homomorphic.Redacted {
				t.Errorf("%s of %T printed %q", verb, v, out)
			}
		}
		wrapped := fmt.Sprintf("%+v", struct{ K any }{v})
		if len(wrapped) > 64 {
			t.Errorf("%T inside a struct printed %q", v, wrapped)
		}
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("keys", "sk", sk, "rk", rk, slog.Group("g", "sk", *sk))
	text := slog.New(slog.NewTextHandler(&buf, nil))
	text.Info("keys", "sk", sk, "rk", rk)
	if strings.Count(buf.String(), homomorphic.Redacted) != 5 {
		t.Fatalf("slog output: %s", buf.String())
	}
	// No exported fields: JSON sees nothing (docs/crypto.md).
	for _, v := range []any{sk, *sk, rk, *rk} {
		if out, err := json.Marshal(v); err != nil || string(out) != "{}" {
			t.Errorf("json of %T: %s, %v", v, out, err)
		}
	}
}

func log2(x float64) float64 { return math.Log2(x) }

// TestSub: the difference of two encryptions decrypts to the difference of
// their plaintexts, slot by slot, and a partial minus itself to zero.
func TestSub(t *testing.T) {
	p := testParams(t)
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	a := []int64{5, -3, 1000, 0}
	b := []int64{7, -3, -1000, 42}
	ca, err := homomorphic.Encrypt(p, rk.Public(), a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := homomorphic.Encrypt(p, rk.Public(), b)
	if err != nil {
		t.Fatal(err)
	}
	d := ca[0].Clone()
	if err := homomorphic.Sub(p, d, cb[0]); err != nil {
		t.Fatal(err)
	}
	got, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{d}, len(a))
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if got[i] != a[i]-b[i] {
			t.Fatalf("slot %d: %d - %d decrypted to %d", i, a[i], b[i], got[i])
		}
	}
	z := ca[0].Clone()
	if err := homomorphic.Sub(p, z, ca[0]); err != nil {
		t.Fatal(err)
	}
	if got, err = homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{z}, len(a)); err != nil || got[0] != 0 || got[2] != 0 {
		t.Fatalf("a - a = %v, %v", got, err)
	}
}
