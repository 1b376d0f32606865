package collective_test

import (
	"sync"
	"testing"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
)

// TestConcurrentUse runs whole releases from several goroutines sharing one
// Params, key set and result key (run with -race).
func TestConcurrentUse(t *testing.T) {
	p := testParams(t)
	nw := newNetwork(t, p, 3)
	rk, _ := homomorphic.GenResultKey(p)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := []int64{int64(g), -int64(g), 1000 * int64(g)}
			var partials [][]*homomorphic.Ciphertext
			for range nw.sks {
				cts, err := homomorphic.Encrypt(p, nw.pk, v)
				if err != nil {
					errs <- err.Error()
					return
				}
				partials = append(partials, cts)
			}
			sum, err := homomorphic.Sum(p, partials)
			if err != nil {
				errs <- err.Error()
				return
			}
			var shares [][]byte
			for _, sk := range nw.sks {
				sh, err := collective.KeySwitchShare(p, sk, rk.Public(), sum[0])
				if err != nil {
					errs <- err.Error()
					return
				}
				shares = append(shares, sh)
			}
			out, err := collective.KeySwitchCombine(p, sum[0], shares)
			if err != nil {
				errs <- err.Error()
				return
			}
			got, err := homomorphic.Decrypt(p, rk, []*homomorphic.Ciphertext{out}, 3)
			if err != nil {
				errs <- err.Error()
				return
			}
			if !equal(got, []int64{3 * v[0], 3 * v[1], 3 * v[2]}) {
				errs <- "wrong total"
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
