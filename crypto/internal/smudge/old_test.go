package smudge

import (
	"math"
	"math/rand/v2"
)

// The sampler this package used before issue 13: a float64 Gaussian from
// math/rand/v2's NormFloat64 scaled by sigma, with the bits below the float's
// unit in the last place filled uniformly. It is kept here only as the
// positive control of TestShiftDistinguisher and for BenchmarkAddNTT.

// oldSample is the former sample function, unchanged.
func oldSample(rng *rand.Rand, sigma float64) (uint64, bool) {
	for {
		z := rng.NormFloat64()
		if math.Abs(z) > TailCut {
			continue
		}
		x := math.Abs(z) * sigma
		var v uint64
		if x < 1<<53 {
			v = uint64(x + 0.5)
		} else {
			_, exp := math.Frexp(x) // x = frac * 2^exp, frac in [0.5, 1)
			ulpBits := uint(exp - 53)
			v = uint64(x)
			mask := uint64(1)<<ulpBits - 1
			v = v&^mask | rng.Uint64()&mask
		}
		return v, z < 0
	}
}

// zigguratWidths returns the 128 layer widths w_i of the ziggurat behind
// NormFloat64: all but about 0.06% of its outputs are float64(j) *
// float64(w_i) for an int32 j and a layer i. They follow from Marsaglia and
// Tsang's recurrence ("The Ziggurat Method for Generating Random Variables",
// 2000) with r = 3.442619855899 and layer area v = 9.91256303526217e-3,
// rounded to float32 as in the library; TestShiftDistinguisher's positive
// control fails if they do not match the library's table.
func zigguratWidths() [128]float64 {
	const (
		m = 1 << 31
		v = 9.91256303526217e-3
	)
	r := 3.442619855899
	var w [128]float64
	w[0] = float64(float32(v / math.Exp(-r*r/2) / m))
	w[127] = float64(float32(r / m))
	for i := 126; i >= 1; i-- {
		r = math.Sqrt(-2 * math.Log(v/r+math.Exp(-r*r/2)))
		w[i] = float64(float32(r / m))
	}
	return w
}

// onOldSupport reports whether a value of magnitude mag could have come from
// oldSample with the given sigma along the ziggurat's fast path: for some
// layer i and integer j, mag agrees above the float's unit in the last place
// with |float64(j) * w_i| * sigma, rounded as oldSample rounds it. Those
// points are 2^27 to 2^31 apart at sigma = 2^60.5 and each covers one ulp
// (2^8 to 2^11), so a value not drawn from oldSample is on the support with
// probability about 2^-15.
func onOldSupport(w *[128]float64, sigma float64, mag uint64) bool {
	for i := range w {
		step := w[i] * sigma
		j0 := math.Round(float64(mag) / step)
		for j := j0 - 1; j <= j0+1; j++ {
			if j < 0 || j > 1<<31 {
				continue
			}
			x := math.Abs(j*w[i]) * sigma // as oldSample: |float64(j) * float64(wn[i])| * sigma
			if x < 1<<53 {
				if uint64(x+0.5) == mag {
					return true
				}
				continue
			}
			_, exp := math.Frexp(x)
			ulpBits := uint(exp - 53)
			if uint64(x)>>ulpBits == mag>>ulpBits {
				return true
			}
		}
	}
	return false
}
