package forecast

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

const (
	// seasonLength is the lag, in weeks, of the same week a year earlier.
	seasonLength = 52
	// seasonalHalfWidth: analogues are taken from the weeks j = −2..2
	// around the same calendar week.
	seasonalHalfWidth = 2
	// SeasonalMinWeeks is the shortest history the seasonal method
	// forecasts from: a year and the weeks around the same week.
	SeasonalMinWeeks = seasonLength + seasonalHalfWidth + 1
)

func normalQuantile(p float64) float64 { return distuv.UnitNormal.Quantile(p) }

// seasonalQuantiles is the seasonal analogue method, for each step ahead.
func seasonalQuantiles(history []Point, steps []int) ([][]float64, error) {
	y, w := logScale(history)
	out := make([][]float64, len(steps))
	for i, k := range steps {
		q, err := seasonalStep(history, y, w, k)
		if err != nil {
			return nil, err
		}
		out[i] = q
	}
	return out, nil
}

func seasonalStep(history []Point, y, w []float64, k int) ([]float64, error) {
	n := len(y)
	t := n - 1
	var g []float64
	for season := 1; ; season++ {
		base := t - seasonLength*season
		if base-seasonalHalfWidth < 0 {
			break
		}
		for j := -seasonalHalfWidth; j <= seasonalHalfWidth; j++ {
			if base+k+j > t { // the analogue's future must be in the history
				continue
			}
			g = append(g, y[base+k+j]-y[base+j])
		}
	}
	if len(g) < 2*seasonalHalfWidth+1 {
		return nil, fmt.Errorf("%w: the seasonal method needs %d weeks (a year and %d more), have %d",
			ErrHistory, SeasonalMinWeeks, seasonalHalfWidth+1, n)
	}
	mean, sd := stat.MeanStdDev(g, nil)
	mu := y[t] + mean
	return fromLogNormal(mu, math.Sqrt(sd*sd+w[t])), nil
}
