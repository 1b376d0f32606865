package dp

import (
	"math"
	"testing"
)

// TestIntGaussian: the integer noise of the dummies and the padding has
// mean 0 and the standard deviation asked for (the library's integer
// mechanism; its variance is σ² plus at most the rounding's 1/12).
func TestIntGaussian(t *testing.T) {
	const n = 20000
	for _, sigma := range []float64{0.7, 3.1, 25} {
		v, err := IntGaussian(sigma, n)
		if err != nil {
			t.Fatal(err)
		}
		var m, q float64
		for _, x := range v {
			m += float64(x)
		}
		m /= n
		for _, x := range v {
			q += (float64(x) - m) * (float64(x) - m)
		}
		sd := math.Sqrt(q / (n - 1))
		want := math.Sqrt(sigma*sigma + 1.0/12)
		// 6 standard errors of each estimate.
		if math.Abs(m) > 6*want/math.Sqrt(n) || math.Abs(sd-want) > 6*want/math.Sqrt(2*n)+0.02 {
			t.Errorf("sigma %v: mean %.4f, sd %.4f (want about %.4f)", sigma, m, sd, want)
		}
	}
	if _, err := IntGaussian(0, 1); err == nil {
		t.Error("sigma 0 accepted")
	}
}
