// Package synth generates realistic synthetic records in the common data model
// (package cdm), deterministically from a seed, for demos, tests and
// benchmarks; and converts the FluSight weekly influenza admissions into
// patient-level records, one node per state (see FluSight); and writes a
// synthetic city seen by hospitals, a death registry and an insurer that
// share a resident identifier, with the exact answers of linked queries
// (see City).
//
// # The synthetic population
//
// Generate and GenerateFunc draw a population that is alive on Options.Start
// and follow it to Options.End. Patient i (0-based) is drawn from its own
// random stream, a PCG seeded from (Options.Seed, i), so a patient's records
// depend only on the seed, its index and the options: never on the chunking
// or the number of goroutines. The same options always give the same records
// in the same order (across CPU architectures, as far as Go's floating-point
// math functions agree to the last bit).
//
// What is modelled, with the sources of the rates (all approximate):
//
//   - Age and sex: the 2020 US census pyramid in 5-year bands (age on
//     Start), about 49% female under 45 rising to about 63% at 85+; 0.1% of
//     patients have sex "unknown".
//   - Region: weighted by DefaultRegionWeights for the default regions,
//     uniform over Options.Regions otherwise. Each region has a fixed
//     prevalence factor between about 0.85 and 1.15 (from a hash of its code,
//     scaled so that the population-weighted mean is 1), so regional
//     comparisons find real differences.
//   - Chronic conditions (SNOMED CT), by age on End: type-2 diabetes
//     (44054006) 0.2% under 18, 3.5% at 18-44, 12% at 45-64, 19% at 65-74,
//     21% at 75+ (men x1.1, women x0.9), about 10% of adults;
//     hypertension (38341003) 7% at 18-39, 27% at 40-59, 50% at 60+, x1.6
//     with diabetes (at most 90%), about 30% of adults; asthma (195967001)
//     about 8% (boys 8%, girls 6%, women 10%, men 6%). Onsets fall before
//     End, many of them before Start (diagnosis history); diabetes onsets
//     spread over up to 15 years, so about a third are incident in a 5-year
//     span.
//   - Seasonal influenza (6142004): each season (October to May) has an
//     intensity and a peak date (the real ones for 2016-17 to 2025-26,
//     including the near-absent 2020-21 season; a hash-derived late-January
//     peak otherwise); a patient's chance per season is 2.5% times the
//     intensity times an age factor (x2.5 under 5, x2 at 5-17, x1.3 at 65+),
//     with onsets normally distributed around the peak (sd 3 weeks), plus
//     0.1% a year of sporadic cases at any time. Abatement 5-14 days later.
//   - COVID-19 (840539006): the US waves from March 2020 (spring and summer
//     2020, winter 2020-21, Delta, Omicron, BA.5 and the later winter and
//     summer waves), each a normal curve of onsets with its own attack rate
//     (Omicron 8%), never before 2020-03-01. Abatement 7-21 days later.
//   - Deaths: Gompertz annual mortality (about 0.14% at 40, 4% at 80), x1.6
//     with diabetes, x1.2 with hypertension; COVID-19 kills 3% of infected
//     patients aged 65+ and 0.5% at 50-64 within 7-30 days. No record is
//     dated after its patient's death.
//   - Encounters (class AMB/IMP/EMER; type SNOMED CT): a yearly check-up
//     (185349003) with probability 35% (90% under 5, 70% at 65+, 85% with a
//     chronic condition); a problem encounter (185347001) at each chronic
//     onset in the span; symptom visits (185345009) for 60% of influenza
//     and 50% of COVID-19 cases, inpatient stays (183452005) for 3% of
//     influenza cases at 65+ and 8% of COVID-19 cases at 65+ (1% younger);
//     and for diabetics a yearly follow-up (390906007).
//   - Observations (LOINC): HbA1c (4548-4, %) at every diabetic check-up and
//     follow-up, drawn around a per-patient mean of N(7.8, 1.0) (6.0-13.0)
//     after onset, 5.7-6.4 before it; for 30% of check-ups of other adults
//     aged 35+, around N(5.35, 0.25) plus 0.005 per year of age over 40
//     (4.0-6.4). Systolic blood pressure (8480-6, mm[Hg]) at adults'
//     check-ups, N(138, 15) with hypertension and N(121, 13) without.
//   - Medications (RxNorm): metformin (860975) for diabetics at onset and at
//     each diabetic check-up or follow-up; lisinopril (314076) at check-ups
//     of 70% of hypertensives; albuterol inhaler (745679) at check-ups of
//     60% of asthmatics.
//
// Clinical events (encounters, observations, medications, influenza,
// COVID-19 and deaths) fall within [Start, End]; chronic condition onsets may
// precede Start.
//
// Record ids are the patient id followed by "-c", "-o", "-e" or "-m" and a
// 1-based number per patient and table (p42-c1, p42-o3), so they are unique
// wherever the patient ids are (see Options.IDPrefix).
//
// There are about 12 records a patient. A million patients (12 million
// records) take about 1.5 s on two cores; GenerateFunc uses every core and
// holds only a few chunks at a time, Generate about 1.6 KB a patient.
package synth

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
)

// ErrBadOptions is returned for options that cannot be generated.
var ErrBadOptions = errors.New("synth: bad options")

// Codes the generator and the FluSight converter use.
const (
	CodeDiabetesT2   = "44054006"  // SNOMED CT: type 2 diabetes mellitus
	CodeHypertension = "38341003"  // SNOMED CT: hypertensive disorder
	CodeAsthma       = "195967001" // SNOMED CT: asthma
	CodeInfluenza    = "6142004"   // SNOMED CT: influenza
	CodeCOVID19      = "840539006" // SNOMED CT: COVID-19
	CodeHbA1c        = "4548-4"    // LOINC: hemoglobin A1c/hemoglobin.total in blood, %
	CodeSystolicBP   = "8480-6"    // LOINC: systolic blood pressure, mm[Hg]
	CodeMetformin    = "860975"    // RxNorm: 24 HR metformin hydrochloride 500 MG extended release oral tablet
	CodeLisinopril   = "314076"    // RxNorm: lisinopril 10 MG oral tablet
	CodeAlbuterol    = "745679"    // RxNorm: 200 ACTUAT albuterol 0.09 MG/ACTUAT metered dose inhaler

	EncCheckUp   = "185349003" // SNOMED CT: encounter for check up
	EncSymptom   = "185345009" // SNOMED CT: encounter for symptom
	EncProblem   = "185347001" // SNOMED CT: encounter for problem
	EncFollowUp  = "390906007" // SNOMED CT: follow-up encounter
	EncInpatient = "183452005" // SNOMED CT: encounter inpatient
)

// DefaultRegions are the region codes used when Options.Regions is empty: the
// postal abbreviations of the ten most populous US states, the same codes the
// FluSight converter uses.
var DefaultRegions = []string{"CA", "TX", "FL", "NY", "PA", "IL", "OH", "GA", "NC", "MI"}

// DefaultRegionWeights are the relative populations of DefaultRegions
// (millions, 2020 census).
var DefaultRegionWeights = []float64{39.5, 29.1, 21.5, 20.2, 13.0, 12.8, 11.8, 10.7, 10.4, 10.1}

// Default span of clinical events.
var (
	DefaultStart = cdm.DateFromYMD(2019, time.January, 1)
	DefaultEnd   = cdm.DateFromYMD(2023, time.December, 31)
)

// ChunkPatients is the number of patients GenerateFunc passes to emit at a
// time (the last chunk may be smaller).
const ChunkPatients = 8192

// chunkPatients is ChunkPatients; tests make it smaller.
var chunkPatients = ChunkPatients

// Options configure Generate and GenerateFunc.
type Options struct {
	// Patients is the number of patients. Required, > 0.
	Patients int
	// Seed selects the population: the same seed and options give identical
	// records. Defaults to 0 (itself a valid seed).
	Seed int64
	// Regions are the region codes patients are spread over (uniformly).
	// Defaults to DefaultRegions (weighted by DefaultRegionWeights).
	Regions []string
	// Start and End bound the clinical events (inclusive). Start is also
	// the day on which the population's ages follow the census pyramid.
	// Each defaults (when 0 or cdm.NoDate) to DefaultStart and DefaultEnd.
	// End must not precede Start.
	Start, End cdm.Date
	// IDPrefix starts every patient id (IDPrefix followed by the patient's
	// 1-based number), so that several nodes' data never collide when each
	// has its own prefix. Defaults to "p".
	IDPrefix string
}

// withDefaults validates o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Patients <= 0 {
		return o, fmt.Errorf("%w: Patients must be > 0, got %d", ErrBadOptions, o.Patients)
	}
	if o.Start == 0 || o.Start == cdm.NoDate {
		o.Start = DefaultStart
	}
	if o.End == 0 || o.End == cdm.NoDate {
		o.End = DefaultEnd
	}
	if o.End < o.Start {
		return o, fmt.Errorf("%w: End %s precedes Start %s", ErrBadOptions, o.End, o.Start)
	}
	if len(o.Regions) == 0 {
		o.Regions = DefaultRegions
	}
	for _, r := range o.Regions {
		if r == "" {
			return o, fmt.Errorf("%w: empty region code", ErrBadOptions)
		}
	}
	if o.IDPrefix == "" {
		o.IDPrefix = "p"
	}
	return o, nil
}

// Generate returns the records of o.Patients synthetic patients. It holds
// everything in memory (about 1.6 KB a patient); use GenerateFunc for millions.
func Generate(o Options) (*cdm.Records, error) {
	out := &cdm.Records{}
	err := GenerateFunc(o, func(r *cdm.Records) error {
		if out.Len() == 0 {
			*out = *r
			return nil
		}
		out.Append(r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GenerateFunc generates the same records as Generate, in the same order, and
// passes them to emit in chunks of ChunkPatients patients, each chunk with all
// the records of its patients (no record refers to a patient of another
// chunk). emit is called from the calling goroutine, one chunk at a time, in
// patient order; it owns the chunk it receives. Chunks are generated in
// parallel on every core, at most a few ahead of emit. If emit returns an
// error, GenerateFunc stops and returns it.
func GenerateFunc(o Options, emit func(*cdm.Records) error) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	g := newGen(o)
	nChunks := (o.Patients + chunkPatients - 1) / chunkPatients
	return inOrder(nChunks, g.chunk, emit)
}

// gen holds the options and the tables derived from them. It is read-only
// after newGen and shared by the workers.
type gen struct {
	o       Options
	people  personModel
	seasons []season
	waves   []wave
}

type season struct {
	from, to, peak cdm.Date
	intensity      float64
}

type wave struct {
	peak   cdm.Date
	sd     float64 // days
	attack float64
}

func newGen(o Options) *gen {
	g := &gen{o: o, people: personModel{asthma: true}}
	weights := make([]float64, len(o.Regions))
	for i := range weights {
		weights[i] = 1
	}
	if sameStrings(o.Regions, DefaultRegions) {
		copy(weights, DefaultRegionWeights)
	}
	sum := 0.0
	for _, w := range weights {
		sum += w
		g.people.regionCum = append(g.people.regionCum, sum)
	}
	for i := range g.people.regionCum {
		g.people.regionCum[i] /= sum
	}
	// The population's prevalence stays as documented.
	g.people.regionFactor = regionFactors(o.Regions, weights, sum)
	y0, y1 := o.Start.Year()-1, o.End.Year()
	for y := y0; y <= y1; y++ {
		g.seasons = append(g.seasons, seasonOf(y))
	}
	g.waves = covidWaves(y1)
	return g
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// hash64 hashes s deterministically (FNV-1a, scrambled).
func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return splitmix64(h.Sum64())
}

// unitHash maps s to [0, 1) deterministically.
func unitHash(s string) float64 { return float64(hash64(s)>>11) / (1 << 53) }

// knownSeasons are US influenza seasons by the year they start in October:
// relative intensity and the week of the peak (CDC FluView, FluSight).
var knownSeasons = map[int]struct {
	intensity float64
	peak      [3]int
}{
	2016: {1.0, [3]int{2017, 2, 11}},
	2017: {1.5, [3]int{2018, 2, 3}},
	2018: {0.9, [3]int{2019, 2, 16}},
	2019: {1.1, [3]int{2020, 2, 8}},
	2020: {0.02, [3]int{2021, 2, 1}},
	2021: {0.3, [3]int{2021, 12, 31}},
	2022: {1.3, [3]int{2022, 12, 3}},
	2023: {1.0, [3]int{2023, 12, 30}},
	2024: {1.4, [3]int{2025, 2, 8}},
	2025: {1.0, [3]int{2025, 12, 27}},
}

func seasonOf(y int) season {
	s := season{
		from: cdm.DateFromYMD(y, time.October, 1),
		to:   cdm.DateFromYMD(y+1, time.May, 31),
	}
	if k, ok := knownSeasons[y]; ok {
		s.intensity = k.intensity
		s.peak = cdm.DateFromYMD(k.peak[0], time.Month(k.peak[1]), k.peak[2])
		return s
	}
	u := unitHash("season:" + strconv.Itoa(y))
	s.intensity = 0.8 + 0.4*u
	s.peak = cdm.DateFromYMD(y+1, time.January, 31) + cdm.Date(math.Round((unitHash("peak:"+strconv.Itoa(y))-0.5)*42))
	return s
}

// covidWaves are the US waves of reported COVID-19 cases: peak, spread and
// the share of the population diagnosed in the wave. After 2025 a winter
// and a summer wave repeat every year up to lastYear.
func covidWaves(lastYear int) []wave {
	d := func(y int, m time.Month, day int) cdm.Date { return cdm.DateFromYMD(y, m, day) }
	w := []wave{
		{d(2020, 4, 10), 15, 0.006},
		{d(2020, 7, 20), 18, 0.010},
		{d(2021, 1, 8), 25, 0.040},
		{d(2021, 9, 1), 25, 0.025},
		{d(2022, 1, 15), 14, 0.080},
		{d(2022, 7, 20), 30, 0.025},
		{d(2022, 12, 20), 25, 0.015},
		{d(2023, 8, 30), 25, 0.008},
		{d(2024, 1, 1), 20, 0.008},
		{d(2024, 8, 1), 25, 0.007},
		{d(2025, 1, 1), 20, 0.005},
		{d(2025, 8, 15), 25, 0.005},
	}
	for y := 2026; y <= lastYear; y++ {
		w = append(w, wave{d(y, 1, 1), 20, 0.005}, wave{d(y, 8, 15), 25, 0.005})
	}
	return w
}

// agePyramid is the share of the US population by 5-year band (0-4 ...
// 80-84, 85+), 2020 census, in percent.
var agePyramid = [...]float64{5.7, 6.0, 6.4, 6.5, 6.4, 6.8, 7.0, 6.7, 6.3, 6.0, 6.3, 6.5, 6.2, 5.3, 4.3, 2.9, 1.9, 1.9}

var ageCum = func() [len(agePyramid)]float64 {
	var c [len(agePyramid)]float64
	s := 0.0
	for _, v := range agePyramid {
		s += v
	}
	acc := 0.0
	for i, v := range agePyramid {
		acc += v / s
		c[i] = acc
	}
	c[len(c)-1] = 1
	return c
}()

const daysPerYear = 365.2425

func years(days cdm.Date) float64 { return float64(days) / daysPerYear }

// splitmix64 scrambles seeds so that neighbouring patient indices get
// unrelated streams.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// chunk generates the patients of chunk k.
func (g *gen) chunk(k int) *cdm.Records {
	lo := k * chunkPatients
	hi := min(lo+chunkPatients, g.o.Patients)
	n := hi - lo
	out := &cdm.Records{
		Patients:     make([]cdm.Patient, 0, n),
		Conditions:   make([]cdm.Condition, 0, n*8/10),
		Observations: make([]cdm.Observation, 0, n*43/10),
		Encounters:   make([]cdm.Encounter, 0, n*42/10),
		Medications:  make([]cdm.Medication, 0, n*18/10),
	}
	src := rand.NewPCG(0, 0)
	r := rand.New(src)
	p := &patientGen{stream: stream{r}, g: g, out: out}
	for i := lo; i < hi; i++ {
		src.Seed(splitmix64(uint64(g.o.Seed)), splitmix64(uint64(i)^0x5bd1e995))
		p.generate(i)
	}
	return out
}

// patientGen generates one patient at a time into out.
type patientGen struct {
	stream
	g    *gen
	out  *cdm.Records
	buf  []byte
	offs []int
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// mortality is the Gompertz annual probability of death at age a.
func mortality(a float64) float64 {
	q := 0.0003 + math.Exp(-10.0+0.085*a)
	if a < 1 {
		q += 0.005
	}
	return math.Min(q, 0.5)
}

func (p *patientGen) generate(i int) {
	g, r, o := p.g, p.r, p.g.o
	out := p.out
	c0, ob0, e0, m0 := len(out.Conditions), len(out.Observations), len(out.Encounters), len(out.Medications)

	// Demographics and chronic conditions as of End.
	x := g.people.draw(p.stream, o.Start, o.End)
	birth, ageStart, ageEnd, sex := x.birth, x.ageStart, x.ageEnd, x.sex
	diabetic, hypertensive, asthmatic := x.dm, x.htn, x.asthma
	dmOnset, htnOnset, asthmaOnset := x.dmOn, x.htnOn, x.asthmaOn

	// Natural death.
	death := cdm.NoDate
	mult := 1.0
	if diabetic {
		mult *= 1.6
	}
	if hypertensive {
		mult *= 1.2
	}
	for y := o.Start; y <= o.End; y += 365 {
		yEnd := min(y+364, o.End)
		frac := float64(yEnd-y+1) / 365
		if p.bern(mortality(years(y-birth)) * mult * frac) {
			death = p.uniformDate(y, yEnd)
			break
		}
	}
	last := o.End
	if death != cdm.NoDate {
		last = death
	}

	pid := o.IDPrefix + strconv.Itoa(i+1)
	addCond := func(code string, onset, abate cdm.Date) {
		out.Conditions = append(out.Conditions, cdm.Condition{PatientID: pid, Code: code, System: cdm.SystemSNOMED, Onset: onset, Abatement: abate})
	}
	addEnc := func(class, typ string, start, end cdm.Date) {
		out.Encounters = append(out.Encounters, cdm.Encounter{PatientID: pid, Class: class, TypeCode: typ, TypeSystem: cdm.SystemSNOMED, Start: start, End: end})
	}
	addObs := func(code, unit string, d cdm.Date, v float64) {
		out.Observations = append(out.Observations, cdm.Observation{PatientID: pid, Code: code, System: cdm.SystemLOINC, Date: d, Value: v, HasValue: true, Unit: unit})
	}
	addMed := func(code string, d cdm.Date) {
		out.Medications = append(out.Medications, cdm.Medication{PatientID: pid, Code: code, System: cdm.SystemRxNorm, Authored: d})
	}
	inSpan := func(d cdm.Date) bool { return d >= o.Start && d <= last }

	// COVID-19 waves, in time order; a COVID-19 death ends the patient.
	covidAge := covidAgeFactor(ageEnd)
	for _, w := range g.waves {
		if w.peak-cdm.Date(3*w.sd) > last {
			break
		}
		if !p.bern(w.attack * covidAge) {
			continue
		}
		d := cdm.NoDate
		for range 5 {
			c := w.peak + cdm.Date(math.Round(r.NormFloat64()*w.sd))
			if c >= covidStart {
				d = c
				break
			}
		}
		if d == cdm.NoDate || !inSpan(d) {
			continue
		}
		addCond(CodeCOVID19, d, d+cdm.Date(7+r.IntN(15)))
		a := years(d - birth)
		if p.bern(0.5) {
			addEnc("AMB", EncSymptom, d, d)
		}
		if p.bern(covidInpatient(a)) {
			s := d + cdm.Date(r.IntN(5))
			if s <= last {
				addEnc("IMP", EncInpatient, s, min(s+cdm.Date(3+r.IntN(8)), last))
			}
		}
		if p.bern(covidDeath(a)) {
			if dd := d + cdm.Date(7+r.IntN(24)); dd <= last {
				death, last = dd, dd
				break
			}
		}
	}

	// Influenza.
	fluAge := 1.0
	switch a := ageStart; {
	case a < 5:
		fluAge = 2.5
	case a < 18:
		fluAge = 2.0
	case a >= 65:
		fluAge = 1.3
	}
	for _, s := range g.seasons {
		if s.to < o.Start || s.from > last {
			continue
		}
		if !p.bern(0.025 * s.intensity * fluAge) {
			continue
		}
		d := cdm.NoDate
		for range 5 {
			c := s.peak + cdm.Date(math.Round(r.NormFloat64()*21))
			if c >= s.from && c <= s.to {
				d = c
				break
			}
		}
		if d == cdm.NoDate || !inSpan(d) {
			continue
		}
		p.flu(d, birth, last, addCond, addEnc)
	}
	for y := o.Start; y <= last; y += 365 {
		if p.bern(0.001) {
			if d := p.uniformDate(y, min(y+364, last)); inSpan(d) {
				p.flu(d, birth, last, addCond, addEnc)
			}
		}
	}

	// Chronic conditions: the diagnosis, with a problem encounter when it
	// falls in the span. Onsets after death are dropped.
	if diabetic && dmOnset <= last {
		addCond(CodeDiabetesT2, dmOnset, cdm.NoDate)
		if inSpan(dmOnset) {
			addEnc("AMB", EncProblem, dmOnset, dmOnset)
			addObs(CodeHbA1c, "%", dmOnset, round1(6.8+r.Float64()*2.5))
			addMed(CodeMetformin, dmOnset)
		}
	} else {
		diabetic = false
	}
	if hypertensive && htnOnset <= last {
		addCond(CodeHypertension, htnOnset, cdm.NoDate)
		if inSpan(htnOnset) {
			addEnc("AMB", EncProblem, htnOnset, htnOnset)
		}
	} else {
		hypertensive = false
	}
	if asthmatic && asthmaOnset <= last {
		addCond(CodeAsthma, asthmaOnset, cdm.NoDate)
		if inSpan(asthmaOnset) {
			addEnc("AMB", EncProblem, asthmaOnset, asthmaOnset)
		}
	} else {
		asthmatic = false
	}

	// Yearly care: check-ups with observations and prescriptions, diabetic
	// follow-ups.
	chronic := diabetic || hypertensive || asthmatic
	a1cMean := clamp(5.35+0.25*r.NormFloat64()+0.005*math.Max(0, ageStart-40), 4.0, 6.2)
	if diabetic {
		a1cMean = clamp(7.8+r.NormFloat64(), 6.0, 13.0)
	}
	sbpMean := 121 + 13*r.NormFloat64()
	if hypertensive {
		sbpMean = 138 + 15*r.NormFloat64()
	}
	treatedHTN := hypertensive && p.bern(0.7)
	treatedAsthma := asthmatic && p.bern(0.6)
	a1c := func(d cdm.Date) float64 {
		if diabetic && d >= dmOnset {
			return round1(clamp(a1cMean+0.4*r.NormFloat64(), 6.0, 14.0))
		}
		if diabetic { // before the diagnosis
			return round1(5.7 + 0.7*r.Float64())
		}
		return round1(clamp(a1cMean+0.1*r.NormFloat64(), 4.0, 6.4))
	}
	for y := o.Start; y <= last; y += 365 {
		yEnd := min(y+364, last)
		a := years(y - birth)
		pCheck := 0.35
		switch {
		case chronic:
			pCheck = 0.85
		case a < 5:
			pCheck = 0.9
		case a >= 65:
			pCheck = 0.7
		}
		if p.bern(pCheck) {
			d := p.uniformDate(y, yEnd)
			addEnc("AMB", EncCheckUp, d, d)
			if a >= 18 {
				addObs(CodeSystolicBP, "mm[Hg]", d, math.Round(clamp(sbpMean+8*r.NormFloat64(), 80, 220)))
			}
			switch {
			case diabetic:
				addObs(CodeHbA1c, "%", d, a1c(d))
				if d >= dmOnset {
					addMed(CodeMetformin, d)
				}
			case a >= 35 && p.bern(0.3):
				addObs(CodeHbA1c, "%", d, a1c(d))
			}
			if treatedHTN && d >= htnOnset {
				addMed(CodeLisinopril, d)
			}
			if treatedAsthma && d >= asthmaOnset {
				addMed(CodeAlbuterol, d)
			}
		}
		if diabetic {
			d := p.uniformDate(y, yEnd)
			if d >= dmOnset {
				addEnc("AMB", EncFollowUp, d, d)
				addObs(CodeHbA1c, "%", d, a1c(d))
				addMed(CodeMetformin, d)
			}
		}
	}

	out.Patients = append(out.Patients, cdm.Patient{ID: pid, BirthDate: birth, Sex: sex, Region: o.Regions[x.region], DeathDate: death})
	p.assignIDs(pid, c0, ob0, e0, m0)
}

// flu adds an influenza case on d.
func (p *patientGen) flu(d, birth, last cdm.Date, addCond func(string, cdm.Date, cdm.Date), addEnc func(string, string, cdm.Date, cdm.Date)) {
	r := p.r
	addCond(CodeInfluenza, d, d+cdm.Date(5+r.IntN(10)))
	if p.bern(0.6) {
		addEnc("AMB", EncSymptom, d, d)
	}
	if years(d-birth) >= 65 && p.bern(0.03) {
		s := d + cdm.Date(r.IntN(4))
		if s <= last {
			addEnc("IMP", EncInpatient, s, min(s+cdm.Date(2+r.IntN(6)), last))
		}
	}
}

// assignIDs gives the patient's new records their ids, all sliced from one
// string (one allocation per patient).
func (p *patientGen) assignIDs(pid string, c0, ob0, e0, m0 int) {
	out := p.out
	b, offs := p.buf[:0], p.offs[:0]
	counts := [4]int{len(out.Conditions) - c0, len(out.Observations) - ob0, len(out.Encounters) - e0, len(out.Medications) - m0}
	for t, tag := range [4]string{"-c", "-o", "-e", "-m"} {
		for k := 1; k <= counts[t]; k++ {
			b = append(b, pid...)
			b = append(b, tag...)
			b = strconv.AppendInt(b, int64(k), 10)
			offs = append(offs, len(b))
		}
	}
	s := string(b)
	p.buf, p.offs = b, offs
	from, j := 0, 0
	next := func() string {
		id := s[from:offs[j]]
		from = offs[j]
		j++
		return id
	}
	for k := range counts[0] {
		out.Conditions[c0+k].ID = next()
	}
	for k := range counts[1] {
		out.Observations[ob0+k].ID = next()
	}
	for k := range counts[2] {
		out.Encounters[e0+k].ID = next()
	}
	for k := range counts[3] {
		out.Medications[m0+k].ID = next()
	}
}
