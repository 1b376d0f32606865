package dp

import "github.com/google/differential-privacy/go/v3/noise"

func noiseSigma(lInf float64) float64 {
	return noise.SigmaForGaussian(calL0, lInf, calEpsilon, calDelta)
}
