package synth

// The person model both generators share: what Generate draws for a
// patient and City for a resident or visitor before anything else.

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
)

// stream is one person's random stream with the draws both generators use.
type stream struct{ r *rand.Rand }

// bern is true with probability prob.
func (s stream) bern(prob float64) bool { return s.r.Float64() < prob }

// uniformDate returns a day in [a, b] (a when b <= a).
func (s stream) uniformDate(a, b cdm.Date) cdm.Date {
	if b <= a {
		return a
	}
	return a + cdm.Date(s.r.IntN(int(b-a)+1))
}

// personModel is the person model of a generator: the regions and whether
// people can have asthma. It is read-only after construction and shared
// by the workers.
type personModel struct {
	// regionCum are the regions' cumulative shares, the last 1.
	regionCum []float64
	// regionFactor is each region's prevalence factor (regionFactors).
	regionFactor []float64
	// asthma makes people asthmatic (Generate; City models no asthma).
	asthma bool
}

// regionFactors returns each region's prevalence factor: 0.85 + 0.3 times
// a hash of its code in [0, 1), scaled so that the mean weighted by
// weights (whose sum is sum) is 1.
func regionFactors(regions []string, weights []float64, sum float64) []float64 {
	f := make([]float64, len(regions))
	mean := 0.0
	for i, r := range regions {
		f[i] = 0.85 + 0.3*unitHash("region:"+r)
		mean += f[i] * weights[i] / sum
	}
	for i := range f {
		f[i] /= mean
	}
	return f
}

// person is what personModel.draw draws.
type person struct {
	birth cdm.Date
	// ageStart and ageEnd are the ages in years on start and on end.
	ageStart, ageEnd float64
	sex              cdm.Sex
	region           int // index into the regions
	// The chronic conditions as of end and their onsets (cdm.NoDate
	// without the condition). Onsets may precede start; an onset after
	// the person's death is the generator's to drop.
	dm, htn, asthma       bool
	dmOn, htnOn, asthmaOn cdm.Date
}

// draw draws a person alive on start and followed to end, from s, in this
// order: the age band and the age in it (the census pyramid on start),
// sex, region, then diabetes, hypertension and (with m.asthma, from age 2)
// asthma by age on end, sex and the region's factor, then the onsets in
// the same order. Both generators' outputs depend on this order.
func (m *personModel) draw(s stream, start, end cdm.Date) person {
	r := s.r
	var x person
	u := r.Float64()
	band := 0
	for band < len(ageCum)-1 && u >= ageCum[band] {
		band++
	}
	x.ageStart = float64(band*5) + r.Float64()*5
	if band == len(ageCum)-1 {
		x.ageStart = 85 + math.Min(r.ExpFloat64()*5, 20)
	}
	x.birth = start - cdm.Date(x.ageStart*daysPerYear)
	x.ageEnd = years(end - x.birth)
	pFemale := 0.49
	switch {
	case x.ageStart >= 85:
		pFemale = 0.63
	case x.ageStart >= 65:
		pFemale = 0.55
	case x.ageStart >= 45:
		pFemale = 0.51
	}
	x.sex = cdm.SexMale
	if v := r.Float64(); v < 0.001 {
		x.sex = cdm.SexUnknown
	} else if v < pFemale {
		x.sex = cdm.SexFemale
	}
	u = r.Float64()
	for x.region < len(m.regionCum)-1 && u >= m.regionCum[x.region] {
		x.region++
	}
	rf := m.regionFactor[x.region]
	ageEnd := x.ageEnd

	// Chronic conditions, as of end.
	var pDM float64
	switch {
	case ageEnd < 18:
		pDM = 0.002
	case ageEnd < 45:
		pDM = 0.035
	case ageEnd < 65:
		pDM = 0.12
	case ageEnd < 75:
		pDM = 0.19
	default:
		pDM = 0.21
	}
	switch x.sex {
	case cdm.SexMale:
		pDM *= 1.1
	case cdm.SexFemale:
		pDM *= 0.9
	}
	x.dm = s.bern(pDM * rf)
	var pHTN float64
	switch {
	case ageEnd < 18:
		pHTN = 0.005
	case ageEnd < 40:
		pHTN = 0.07
	case ageEnd < 60:
		pHTN = 0.27
	default:
		pHTN = 0.50
	}
	if x.dm {
		pHTN = math.Min(0.9, pHTN*1.6)
	}
	x.htn = s.bern(pHTN * rf)
	if m.asthma {
		pAsthma := 0.08
		switch {
		case ageEnd < 18 && x.sex == cdm.SexFemale:
			pAsthma = 0.06
		case ageEnd >= 18 && x.sex == cdm.SexFemale:
			pAsthma = 0.10
		case ageEnd >= 18 && x.sex == cdm.SexMale:
			pAsthma = 0.06
		}
		x.asthma = ageEnd >= 2 && s.bern(pAsthma*rf)
	}

	onsetBack := func(maxYears, minAge float64) cdm.Date {
		back := math.Max(0, math.Min(maxYears, ageEnd-minAge))
		return end - cdm.Date(r.Float64()*back*daysPerYear)
	}
	x.dmOn, x.htnOn, x.asthmaOn = cdm.NoDate, cdm.NoDate, cdm.NoDate
	if x.dm {
		x.dmOn = onsetBack(15, 18)
		if ageEnd < 18 {
			x.dmOn = onsetBack(5, 10)
		}
	}
	if x.htn {
		x.htnOn = onsetBack(20, 18)
		if ageEnd < 18 {
			x.htnOn = onsetBack(5, 8)
		}
	}
	if x.asthma {
		x.asthmaOn = s.uniformDate(x.birth+730, end)
	}
	return x
}

// covidStart is the first day of a COVID-19 onset.
var covidStart = cdm.DateFromYMD(2020, time.March, 1)

// covidAgeFactor scales a wave's attack rate by age on the span's end.
func covidAgeFactor(ageEnd float64) float64 {
	switch {
	case ageEnd < 18:
		return 0.7
	case ageEnd >= 65:
		return 0.9
	}
	return 1
}

// covidInpatient is the probability that a COVID-19 case at age a is
// admitted.
func covidInpatient(a float64) float64 {
	if a >= 65 {
		return 0.08
	}
	return 0.01
}

// covidDeath is the probability that a COVID-19 case at age a dies of it.
func covidDeath(a float64) float64 {
	switch {
	case a >= 65:
		return 0.03
	case a >= 50:
		return 0.005
	}
	return 0
}
