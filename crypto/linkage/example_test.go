package linkage_test

import (
	"fmt"

	"github.com/fedstat/fedstat/crypto/linkage"
)

// A 2-of-3 network links a hospital's diabetics to an insurer's claims and
// sums the claims of the residents found in both, without anyone seeing an
// identifier or a per-resident amount.
func Example() {
	members := []uint64{1, 2, 3}
	// Key ceremony: every member deals, every member checks what it got.
	var dealings []*linkage.Dealing
	var commitments [][]linkage.Point
	for range members {
		d, _ := linkage.Deal(2, members)
		dealings, commitments = append(dealings, d), append(commitments, d.Commitments)
	}
	shares := map[uint64]linkage.Scalar{}
	for _, j := range members {
		var got []linkage.Scalar
		for _, d := range dealings {
			if err := linkage.VerifyShare(d.Commitments, j, d.Shares[j]); err != nil {
				panic(err)
			}
			got = append(got, d.Shares[j])
		}
		shares[j] = linkage.CombineShares(got)
	}
	pk, _ := linkage.AggregatePublicKey(commitments, members)

	const system = "urn:example:resident-id"
	h := func(id string) linkage.Point { return linkage.HashIdentifier(system, id) }
	hospital, _ := linkage.EncryptPoints(pk.X, []linkage.Point{h("A"), h("B"), h("C")})
	claims, _ := linkage.EncryptPoints(pk.X, []linkage.Point{h("B"), h("C"), h("D")})
	amounts, _ := linkage.EncryptValues(pk.X, []int64{120, 75, 990})

	// The mix: stage set {3, 1}, one fresh k each for this group.
	set := []uint64{3, 1}
	lists := [][]linkage.Ciphertext{hospital, claims}
	payloads := [][]linkage.ValueCiphertext{nil, amounts}
	for _, j := range set {
		w, _ := linkage.Weighted(shares[j], set, j)
		if err := linkage.Stage(linkage.RandomScalar(), w, pk.X, lists, payloads); err != nil {
			panic(err)
		}
	}

	// The coordinator matches pseudonyms and adds the matched payloads.
	inHospital := map[linkage.Point]bool{}
	for _, c := range lists[0] {
		inHospital[linkage.Pseudonym(c)] = true
	}
	var matched []linkage.ValueCiphertext
	for i, c := range lists[1] {
		if inHospital[linkage.Pseudonym(c)] {
			matched = append(matched, payloads[1][i])
		}
	}
	sum, _ := linkage.AddValues(matched)

	// Two members decrypt the sum.
	var ds []linkage.Point
	for _, j := range []uint64{1, 2} {
		w, _ := linkage.Weighted(shares[j], []uint64{1, 2}, j)
		d, _ := linkage.DecryptShare(w, sum)
		ds = append(ds, d)
	}
	vb, _ := linkage.CombineDecryption(sum, ds)
	total, _ := linkage.DiscreteLog(vb, 1_000_000)
	fmt.Println("matched:", len(matched), "sum:", total)
	// Output: matched: 2 sum: 195
}
