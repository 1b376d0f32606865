package collective_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
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

// network is an in-process key epoch: n parties with additive secret shares
// and the collective public key built by CKG.
type network struct {
	p   homomorphic.Params
	sks []*homomorphic.SecretKeyShare
	pk  *homomorphic.PublicKey
	crs []byte
	ckg [][]byte // the members' CKG shares
}

func newNetwork(t testing.TB, p homomorphic.Params, n int) *network {
	t.Helper()
	crs, err := collective.NewCRS()
	if err != nil {
		t.Fatal(err)
	}
	nw := &network{p: p, crs: crs}
	var shares [][]byte
	for range n {
		sk, err := homomorphic.GenSecretKeyShare(p)
		if err != nil {
			t.Fatal(err)
		}
		sh, err := collective.CKGShare(p, sk, crs)
		if err != nil {
			t.Fatal(err)
		}
		nw.sks = append(nw.sks, sk)
		shares = append(shares, sh)
	}
	nw.ckg = shares
	nw.pk, err = collective.CKGAggregate(p, crs, shares)
	if err != nil {
		t.Fatal(err)
	}
	return nw
}

// release key-switches every ciphertext with the given secret shares and
// decrypts the first n values with rk.
func release(t testing.TB, p homomorphic.Params, sks []*homomorphic.SecretKeyShare, rk *homomorphic.ResultKey, cts []*homomorphic.Ciphertext, n int) []int64 {
	t.Helper()
	shares := make([][][]byte, len(sks)) // [decryptor][ciphertext]
	for i, sk := range sks {
		for _, ct := range cts {
			sh, err := collective.KeySwitchShare(p, sk, rk.Public(), ct)
			if err != nil {
				t.Fatal(err)
			}
			shares[i] = append(shares[i], sh)
		}
	}
	switched, err := collective.KeySwitchCombineAll(p, cts, shares)
	if err != nil {
		t.Fatal(err)
	}
	got, err := homomorphic.Decrypt(p, rk, switched, n)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func equal(a, b []int64) bool {
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

func TestEndToEndThreeParties(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 3)
	n := p.Slots() + 100 // two ciphertexts
	want := make([]int64, n)
	var partials [][]*homomorphic.Ciphertext
	for j := range nw.sks {
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(i%1000) - 400 + int64(j)*int64(i%7) // includes negatives
			want[i] += v[i]
		}
		v[0] = p.MaxAbs() / 3
		want[0] += 0 // accounted below
		cts, err := homomorphic.Encrypt(p, nw.pk, v)
		if err != nil {
			t.Fatal(err)
		}
		if len(cts) != 2 {
			t.Fatalf("%d ciphertexts", len(cts))
		}
		partials = append(partials, cts)
	}
	want[0] = 3 * (p.MaxAbs() / 3)
	sum, err := homomorphic.Sum(p, partials)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := release(t, p, nw.sks, rk, sum, n); !equal(got, want) {
		t.Fatalf("released total differs from the exact sum")
	}
}

func TestResultKeyAloneCannotDecrypt(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 3)
	rk, _ := homomorphic.GenResultKey(p)
	n := 64
	v := make([]int64, n)
	for i := range v {
		v[i] = int64(i) - 20
	}
	cts, err := homomorphic.Encrypt(p, nw.pk, v)
	if err != nil {
		t.Fatal(err)
	}
	// Not key-switched: decrypting with the result key gives noise.
	got, err := homomorphic.Decrypt(p, rk, cts, n)
	if err != nil {
		t.Fatal(err)
	}
	if matches(got, v) > 2 {
		t.Fatalf("result key decrypted %d of %d slots of a partial it was never switched to", matches(got, v), n)
	}
	// Key switch with only 2 of the 3 holders: still garbage.
	if got := release(t, p, nw.sks[:2], rk, cts, n); matches(got, v) > 2 {
		t.Fatal("two of three key-switch shares were enough")
	}
	// All three: exact.
	if got := release(t, p, nw.sks, rk, cts, n); !equal(got, v) {
		t.Fatal("full release failed")
	}
}

func matches(a, b []int64) int {
	k := 0
	for i := range a {
		if a[i] == b[i] {
			k++
		}
	}
	return k
}

func TestShareErrors(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 2)
	rk, _ := homomorphic.GenResultKey(p)
	cts, _ := homomorphic.Encrypt(p, nw.pk, []int64{1})
	sh, err := collective.KeySwitchShare(p, nw.sks[0], rk.Public(), cts[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(sh) != collective.KeySwitchShareSize(p) {
		t.Fatalf("share %d bytes, want %d", len(sh), collective.KeySwitchShareSize(p))
	}
	if _, err := collective.KeySwitchCombine(p, cts[0], [][]byte{sh, sh[:100]}); !errors.Is(err, collective.ErrMalformed) {
		t.Fatalf("truncated share: %v", err)
	}
	if _, err := collective.KeySwitchCombine(p, cts[0], nil); !errors.Is(err, collective.ErrInvalidArgument) {
		t.Fatalf("no shares: %v", err)
	}
	crs, _ := collective.NewCRS()
	ckg, _ := collective.CKGShare(p, nw.sks[0], crs)
	if len(ckg) != collective.CKGShareSize(p) {
		t.Fatalf("ckg share %d bytes", len(ckg))
	}
	if _, err := collective.KeySwitchCombine(p, cts[0], [][]byte{ckg}); !errors.Is(err, collective.ErrMalformed) {
		t.Fatalf("ckg share as key-switch share: %v", err)
	}
	if _, err := collective.CKGAggregate(p, crs, [][]byte{sh}); !errors.Is(err, collective.ErrMalformed) {
		t.Fatalf("key-switch share as ckg share: %v", err)
	}
	if _, err := collective.CKGShare(p, nw.sks[0], crs[:5]); !errors.Is(err, collective.ErrInvalidArgument) {
		t.Fatalf("short crs: %v", err)
	}
}

// TestKeySwitchCombineAllCounts: a decryptor whose shares do not cover
// every ciphertext of the sum is refused, naming it, before anything is
// combined.
func TestKeySwitchCombineAllCounts(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 2)
	rk, err := homomorphic.GenResultKey(p)
	if err != nil {
		t.Fatal(err)
	}
	cts, err := homomorphic.Encrypt(p, nw.pk, make([]int64, p.Slots()+1))
	if err != nil {
		t.Fatal(err)
	}
	if len(cts) != 2 {
		t.Fatalf("%d ciphertexts, want 2", len(cts))
	}
	sh, err := collective.KeySwitchShare(p, nw.sks[0], rk.Public(), cts[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = collective.KeySwitchCombineAll(p, cts, [][][]byte{{sh}})
	if !errors.Is(err, collective.ErrMismatch) || !strings.Contains(err.Error(), "key-switch share 0 has 1") {
		t.Fatalf("shares of one ciphertext for a sum of two: %v", err)
	}
}
