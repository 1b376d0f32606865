package collective_test

import (
	"fmt"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// Example shows one key epoch and one release among three nodes: the
// coordinator learns the total and nothing else. (It uses the insecure test
// parameters for speed; production code uses homomorphic.ProductionSet.)
func Example() {
	p, _ := homomorphic.NewParams(homomorphic.InsecureTestSet) // tests only

	// Key epoch: collective public key from the nodes' CKG shares.
	crs, _ := collective.NewCRS()
	var sks []*homomorphic.SecretKeyShare
	var ckg [][]byte
	for range 3 {
		sk, _ := homomorphic.GenSecretKeyShare(p)
		share, _ := collective.CKGShare(p, sk, crs)
		sks = append(sks, sk)
		ckg = append(ckg, share)
	}
	pk, _ := collective.CKGAggregate(p, crs, ckg)

	// Query: every node encrypts its (noisy) partial counts.
	partials := [][]int64{{10, -2, 7}, {5, 0, -1}, {1, 1, 1}}
	var encrypted [][]*homomorphic.Ciphertext
	for _, v := range partials {
		cts, _ := homomorphic.Encrypt(p, pk, v)
		encrypted = append(encrypted, cts)
	}
	sum, _ := homomorphic.Sum(p, encrypted)

	// Release: every node key-switches the sum to the coordinator's result key.
	rk, _ := homomorphic.GenResultKey(p)
	var ks [][]byte
	for _, sk := range sks {
		share, _ := collective.KeySwitchShare(p, sk, rk.Public(), sum[0])
		ks = append(ks, share)
	}
	total, _ := collective.KeySwitchCombine(p, sum[0], ks)
	values, _ := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{total}, 3)
	fmt.Println(values)
	// Output: [16 -1 7]
}
