package linkage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fedstat/fedstat/crypto/linkage"
)

// perElement reports the wall time and the CPU time (all goroutines,
// since cpu0 = cpuTime() before the loop) per element of a batch of n, and
// the bytes each element takes on the wire.
func perElement(b *testing.B, n, wireBytes int, cpu0 time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/elem")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/elem")
	}
	b.ReportMetric(float64(wireBytes), "wireB/elem")
}

func BenchmarkHashIdentifier(b *testing.B) {
	i := 0
	for b.Loop() {
		linkage.HashIdentifier("urn:oid:2.16.840.1.113883.2.4.6.3", fmt.Sprint(i))
		i++
	}
}

func benchKey(b *testing.B) (*linkage.PublicKey, linkage.Scalar) {
	pk, shares := ceremony(b, 3, 2)
	w, err := linkage.Weighted(shares[1], []uint64{1, 2}, 1)
	if err != nil {
		b.Fatal(err)
	}
	return pk, w
}

func randomPoints(n int) []linkage.Point {
	ms := make([]linkage.Point, n)
	for i := range ms {
		ms[i] = linkage.RandomPoint()
	}
	return ms
}

func BenchmarkEncryptPoints(b *testing.B) {
	pk, _ := benchKey(b)
	const n = 4096
	ms := randomPoints(n)
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := linkage.EncryptPoints(pk.X, ms); err != nil {
			b.Fatal(err)
		}
	}
	perElement(b, n, linkage.CiphertextSize, cpu0)
}

func BenchmarkEncryptValues(b *testing.B) {
	pk, _ := benchKey(b)
	const n = 4096
	vs := make([]int64, n)
	for i := range vs {
		vs[i] = int64(i*7919) - 10000
	}
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := linkage.EncryptValues(pk.X, vs); err != nil {
			b.Fatal(err)
		}
	}
	perElement(b, n, linkage.CiphertextSize, cpu0)
}

func benchStage(b *testing.B, n int, withPayload bool) {
	pk, w := benchKey(b)
	cs, err := linkage.EncryptPoints(pk.X, randomPoints(n))
	if err != nil {
		b.Fatal(err)
	}
	lists := [][]linkage.Ciphertext{cs}
	var payloads [][]linkage.ValueCiphertext
	wire := linkage.CiphertextSize
	if withPayload {
		ps, err := linkage.EncryptValues(pk.X, make([]int64, n))
		if err != nil {
			b.Fatal(err)
		}
		payloads = [][]linkage.ValueCiphertext{ps}
		wire += linkage.CiphertextSize
	}
	k := linkage.RandomScalar()
	cpu0 := cpuTime()
	for b.Loop() {
		if err := linkage.Stage(k, w, pk.X, lists, payloads); err != nil {
			b.Fatal(err)
		}
	}
	perElement(b, n, wire, cpu0)
}

func BenchmarkStage(b *testing.B) {
	b.Run("pseudonym", func(b *testing.B) { benchStage(b, 4096, false) })
	b.Run("payload", func(b *testing.B) { benchStage(b, 4096, true) })
}

// BenchmarkCityStage: one stage over 100,000 residents (pseudonyms only).
func BenchmarkCityStage(b *testing.B) { benchStage(b, 100_000, false) }

func BenchmarkDiscreteLog(b *testing.B) {
	const bound = 1_000_000_000
	pk, shares := ceremony(b, 1, 1)
	s := shares[1]
	vs := []int64{bound - 1, -bound + 3, 123_456_789, -987_654_321}
	cs, err := linkage.EncryptValues(pk.X, vs)
	if err != nil {
		b.Fatal(err)
	}
	points := make([]linkage.Point, len(cs))
	for i, c := range cs {
		d, _ := linkage.DecryptShare(s, c)
		points[i], _ = linkage.CombineDecryption(c, []linkage.Point{d})
	}
	start := time.Now()
	if _, err := linkage.DiscreteLog(points[0], bound); err != nil { // builds the table
		b.Fatal(err)
	}
	b.Logf("first call (table build included): %v", time.Since(start))
	i := 0
	for b.Loop() {
		v, err := linkage.DiscreteLog(points[i%len(points)], bound)
		if err != nil || v != vs[i%len(vs)] {
			b.Fatalf("got %d, %v", v, err)
		}
		i++
	}
}

// BenchmarkShareProof: proving and verifying a batch of n decryption shares
// (a list of n elements at LinkFinish, or n cells at LinkDecrypt), per
// element; the proof itself is ShareProofSize bytes whatever n.
func BenchmarkShareProof(b *testing.B) {
	for _, n := range []int{1, 64, 4096} {
		pk, shares := ceremony(b, 3, 2)
		set := []uint64{1, 2}
		w, err := linkage.Weighted(shares[1], set, 1)
		if err != nil {
			b.Fatal(err)
		}
		wkey, err := pk.WeightedKey(set, 1)
		if err != nil {
			b.Fatal(err)
		}
		c1s := randomPoints(n)
		ds, err := linkage.PartialDecrypt(w, c1s)
		if err != nil {
			b.Fatal(err)
		}
		ctx := []byte("bench")
		b.Run(fmt.Sprintf("prove/n=%d", n), func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				if _, err := linkage.ProveShares(w, ctx, c1s, ds); err != nil {
					b.Fatal(err)
				}
			}
			perElement(b, n, 0, cpu0)
		})
		proof, err := linkage.ProveShares(w, ctx, c1s, ds)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("verify/n=%d", n), func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				if err := linkage.VerifyShares(wkey, ctx, c1s, ds, proof); err != nil {
					b.Fatal(err)
				}
			}
			perElement(b, n, 0, cpu0)
		})
	}
}

// BenchmarkStageProof: a stage with its proof, and the proof's check, per
// element of one list of 4,096 (pseudonyms only, and with payloads); the
// proof takes 4 + 64·n + 32·(2n + 7) bytes, about 128 per element.
func BenchmarkStageProof(b *testing.B) {
	for _, withPayload := range []bool{false, true} {
		name := "pseudonym"
		if withPayload {
			name = "payload"
		}
		const n = 4096
		pk, w := benchKey(b)
		wkey, err := pk.WeightedKey([]uint64{1, 2}, 1)
		if err != nil {
			b.Fatal(err)
		}
		cs, err := linkage.EncryptPoints(pk.X, randomPoints(n))
		if err != nil {
			b.Fatal(err)
		}
		var ps []linkage.ValueCiphertext
		if withPayload {
			if ps, err = linkage.EncryptValues(pk.X, make([]int64, n)); err != nil {
				b.Fatal(err)
			}
		}
		ctx := []byte("bench")
		var keys linkage.StageKeys
		var proofs []linkage.StageProof
		var out []linkage.Ciphertext
		var outP []linkage.ValueCiphertext
		b.Run("prove/"+name, func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				out = append(out[:0], cs...)
				var pays [][]linkage.ValueCiphertext
				if withPayload {
					outP = append(outP[:0], ps...)
					pays = [][]linkage.ValueCiphertext{outP}
				}
				if keys, proofs, err = linkage.StageProved(linkage.RandomScalar(), w, pk.X, [][]linkage.Ciphertext{out}, pays, ctx); err != nil {
					b.Fatal(err)
				}
			}
			perElement(b, n, len(proofs[0].MarshalBinary())/n, cpu0)
		})
		b.Run("verify/"+name, func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				if err := linkage.VerifyStage(keys, wkey, pk.X, ctx, 0, cs, ps, out, outP, &proofs[0]); err != nil {
					b.Fatal(err)
				}
			}
			perElement(b, n, 0, cpu0)
		})
	}
}
