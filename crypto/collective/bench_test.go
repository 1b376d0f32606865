package collective_test

import (
	"fmt"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// Benchmarks run at the production parameter set:
//
//	go test -bench . -run '^$' ./crypto/...

func prodParams(b *testing.B) homomorphic.Params {
	b.Helper()
	p, err := homomorphic.NewParams(homomorphic.ProductionSet)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func fullVector(p homomorphic.Params, seed int64) []int64 {
	v := make([]int64, p.Slots())
	for i := range v {
		v[i] = (int64(i)*7919+seed)%200001 - 100000
	}
	return v
}

func BenchmarkEncrypt(b *testing.B) {
	p := prodParams(b)
	nw := newNetwork(b, p, 3)
	v := fullVector(p, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := homomorphic.Encrypt(p, nw.pk, v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(p.CiphertextSize()), "bytes/ciphertext")
}

func BenchmarkAdd(b *testing.B) {
	p := prodParams(b)
	nw := newNetwork(b, p, 3)
	x, _ := homomorphic.Encrypt(p, nw.pk, fullVector(p, 1))
	y, _ := homomorphic.Encrypt(p, nw.pk, fullVector(p, 2))
	for b.Loop() {
		if err := homomorphic.Add(p, x[0], y[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalCiphertext(b *testing.B) {
	p := prodParams(b)
	nw := newNetwork(b, p, 3)
	x, _ := homomorphic.Encrypt(p, nw.pk, fullVector(p, 1))
	raw, _ := x[0].MarshalBinary()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := homomorphic.UnmarshalCiphertext(p, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeySwitchShare(b *testing.B) {
	p := prodParams(b)
	nw := newNetwork(b, p, 3)
	rk, _ := homomorphic.GenResultKey(p)
	x, _ := homomorphic.Encrypt(p, nw.pk, fullVector(p, 1))
	for b.Loop() {
		if _, err := collective.KeySwitchShare(p, nw.sks[0], rk.Public(), x[0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(collective.KeySwitchShareSize(p)), "bytes/share")
}

func BenchmarkCheckKeySwitchable(b *testing.B) {
	p := prodParams(b)
	nw := newNetwork(b, p, 3)
	x, _ := homomorphic.Encrypt(p, nw.pk, fullVector(p, 1))
	for b.Loop() {
		if err := homomorphic.CheckKeySwitchable(p, x[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeySwitchCombine(b *testing.B) {
	p := prodParams(b)
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			nw := newNetwork(b, p, n)
			rk, _ := homomorphic.GenResultKey(p)
			x, _ := homomorphic.Encrypt(p, nw.pk, fullVector(p, 1))
			var shares [][]byte
			for _, sk := range nw.sks {
				sh, _ := collective.KeySwitchShare(p, sk, rk.Public(), x[0])
				shares = append(shares, sh)
			}
			for b.Loop() {
				if _, err := collective.KeySwitchCombine(p, x[0], shares); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	p := prodParams(b)
	rk, _ := homomorphic.GenResultKey(p)
	x, _ := homomorphic.Encrypt(p, rk.Public(), fullVector(p, 1))
	for b.Loop() {
		if _, err := homomorphic.Decrypt(p, rk, x, p.Slots()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCKG(b *testing.B) {
	p := prodParams(b)
	sk, _ := homomorphic.GenSecretKeyShare(p)
	crs, _ := collective.NewCRS()
	b.Run("share", func(b *testing.B) {
		for b.Loop() {
			if _, err := collective.CKGShare(p, sk, crs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(collective.CKGShareSize(p)), "bytes/share")
	})
	b.Run("aggregate-N=10", func(b *testing.B) {
		sh, _ := collective.CKGShare(p, sk, crs)
		shares := make([][]byte, 10)
		for i := range shares {
			shares[i] = sh
		}
		for b.Loop() {
			if _, err := collective.CKGAggregate(p, crs, shares); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkThreshold(b *testing.B) {
	p := prodParams(b)
	sk, _ := homomorphic.GenSecretKeyShare(p)
	points := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	b.Run("deal-N=10-T=7", func(b *testing.B) {
		for b.Loop() {
			if _, err := collective.ThresholdDeal(p, sk, 7, points); err != nil {
				b.Fatal(err)
			}
		}
	})
	dealt, _ := collective.ThresholdDeal(p, sk, 7, points)
	in := make([][]byte, 10)
	for i := range in {
		in[i] = dealt[1]
	}
	ts, err := collective.ThresholdAggregate(p, 1, in)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("additive-T=7", func(b *testing.B) {
		for b.Loop() {
			if _, err := ts.Additive(p, points[:7]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQuery is the whole crypto of one query that fits one ciphertext
// (8192 cells): every party encrypts and the coordinator decodes and adds
// the partials; every party makes a key-switch share; the coordinator
// combines and decrypts. Key generation is per epoch and not included. Time
// is the total CPU of all parties and the coordinator on one core.
func BenchmarkQuery(b *testing.B) {
	p := prodParams(b)
	for _, n := range []int{3, 10, 30} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			nw := newNetwork(b, p, n)
			rk, _ := homomorphic.GenResultKey(p)
			vecs := make([][]int64, n)
			for i := range vecs {
				vecs[i] = fullVector(p, int64(i))
			}
			for b.Loop() {
				agg, _ := homomorphic.NewAggregator(p, 1)
				for i := range n {
					cts, err := homomorphic.Encrypt(p, nw.pk, vecs[i])
					if err != nil {
						b.Fatal(err)
					}
					raw, _ := cts[0].MarshalBinary()
					ct, err := homomorphic.UnmarshalCiphertext(p, raw)
					if err != nil {
						b.Fatal(err)
					}
					if err := agg.Add([]*homomorphic.Ciphertext{ct}); err != nil {
						b.Fatal(err)
					}
				}
				sum, _ := agg.Result()
				shares := make([][]byte, n)
				for i, sk := range nw.sks {
					sh, err := collective.KeySwitchShare(p, sk, rk.Public(), sum[0])
					if err != nil {
						b.Fatal(err)
					}
					shares[i] = sh
				}
				out, err := collective.KeySwitchCombine(p, sum[0], shares)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{out}, p.Slots()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n)/1000, "ms/party")
			b.ReportMetric(float64(n*(p.CiphertextSize()+collective.KeySwitchShareSize(p))), "bytes/query")
		})
	}
}

// BenchmarkKeyCheck: the coordinator's challenge for one committee member
// (N encryptions summed, the smudging of T = N decryptors) and the
// member's decryption of it.
func BenchmarkKeyCheck(b *testing.B) {
	p := prodParams(b)
	crs, err := collective.NewCRS()
	if err != nil {
		b.Fatal(err)
	}
	sk, err := homomorphic.GenSecretKeyShare(p)
	if err != nil {
		b.Fatal(err)
	}
	share, err := collective.CKGShare(p, sk, crs)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{3, 10, 100} {
		b.Run(fmt.Sprintf("challenge/N=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, _, _, err := collective.KeyCheckChallenge(p, crs, share, n, n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	ct, _, _, err := collective.KeyCheckChallenge(p, crs, share, 10, 10)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decrypt", func(b *testing.B) {
		for b.Loop() {
			if _, err := collective.KeyCheckDecrypt(p, sk, ct); err != nil {
				b.Fatal(err)
			}
		}
	})
}
