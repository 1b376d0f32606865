package collective_test

import (
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// TestKeyCheck: a member decrypts a key-check challenge made under its own
// CKG share, a sum of as many encryptions as members, at the test and the
// production parameter sets, with the smudging noise of as many
// decryptors; it cannot under a share of another secret, or under its own
// share with an error too wide for a release (each a CKG share that is not
// a well-formed sample of a key it holds).
func TestKeyCheck(t *testing.T) {
	for _, set := range []string{homomorphic.InsecureTestSet, homomorphic.ProductionSet} {
		if set == homomorphic.ProductionSet && testing.Short() {
			continue
		}
		p, err := homomorphic.NewParams(set)
		if err != nil {
			t.Fatal(err)
		}
		crs, err := collective.NewCRS()
		if err != nil {
			t.Fatal(err)
		}
		var sks []*homomorphic.SecretKeyShare
		var shares [][]byte
		for range 2 {
			sk, err := homomorphic.GenSecretKeyShare(p)
			if err != nil {
				t.Fatal(err)
			}
			sh, err := collective.CKGShare(p, sk, crs)
			if err != nil {
				t.Fatal(err)
			}
			sks, shares = append(sks, sk), append(shares, sh)
		}
		decrypts := func(share []byte, sk *homomorphic.SecretKeyShare, sum int) bool {
			t.Helper()
			ct, want, seed, err := collective.KeyCheckChallenge(p, crs, share, sum, sum)
			if err != nil {
				t.Fatal(err)
			}
			// The seed makes the same challenge again, and not another.
			b, err := ct.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if honest, values, err := collective.KeyCheckHonest(p, crs, share, seed, sum, sum, b); err != nil || !honest || !equal(values, want) {
				t.Fatalf("%s: the seed does not make its challenge again (honest %v, %v)", set, honest, err)
			}
			b[len(b)-1] ^= 1
			if honest, _, _ := collective.KeyCheckHonest(p, crs, share, seed, sum, sum, b); honest {
				t.Fatalf("%s: a changed challenge passes as the seed's", set)
			}
			got, err := collective.KeyCheckDecrypt(p, sk, ct)
			if err != nil {
				t.Fatal(err)
			}
			return equal(got, want)
		}
		for _, sum := range []int{1, 10, 100} {
			if !decrypts(shares[0], sks[0], sum) {
				t.Errorf("%s: an honest member does not decrypt a sum of %d encryptions under its share", set, sum)
			}
		}
		if decrypts(shares[1], sks[0], 1) {
			t.Errorf("%s: a member decrypts under another member's share", set)
		}
		// The error a share may carry: up to about 2^68 per coefficient
		// the key still decrypts a release of 100 partials with the
		// smudging of 100 decryptors (Q/2t is about 2^79), and the share
		// passes; at 2^76 it does not decrypt even one encryption.
		for _, c := range []struct {
			log2, sum int
			pass      bool
		}{{60, 100, true}, {76, 1, false}} {
			wide, err := collective.WideErrorShare(p, shares[0], c.log2)
			if err != nil {
				t.Fatal(err)
			}
			if got := decrypts(wide, sks[0], c.sum); got != c.pass {
				t.Errorf("%s: a share with an error of 2^%d per coefficient, a sum of %d: passes %v, want %v", set, c.log2, c.sum, got, c.pass)
			}
		}
	}
}
