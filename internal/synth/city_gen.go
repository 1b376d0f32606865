package synth

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"

	"github.com/fedstat/fedstat/internal/cdm"
)

// cityGen holds a city's configuration and the tables derived from it. It
// is read-only after newCityGen (but for the free list) and shared by the workers.
type cityGen struct {
	cfg         CityConfig
	people      personModel // no asthma
	hospWeights [][]float64 // per region: hospital weights (not cumulative)
	waves       []wave
	mrnMod      uint64 // 10^mrnDigits
	mrnDigits   int
	pVisitor    []float64       // per hospital, per resident index
	free        chan *cityChunk // chunks to reuse, so their buffers keep their capacity
	mrnSystems  []string
}

// Shares of residents known to 0, 1, 2 and 3 hospitals.
var cityHospitalShares = [4]float64{0.20, 0.55, 0.20, 0.05}

// visitorShare is the share of a hospital's patients without a resident
// identifier.
const visitorShare = 0.02

func newCityGen(cfg CityConfig) *cityGen {
	c := &cityGen{cfg: cfg, waves: covidWaves(CityEnd.Year())}
	nr := len(cfg.Regions)
	sum := 0.0
	weights := make([]float64, nr)
	for i, r := range cfg.Regions {
		weights[i] = 0.6 + 0.8*unitHash("city-region:"+r)
		sum += weights[i]
	}
	acc := 0.0
	for i := range cfg.Regions {
		acc += weights[i] / sum
		c.people.regionCum = append(c.people.regionCum, acc)
	}
	c.people.regionCum[nr-1] = 1
	c.people.regionFactor = regionFactors(cfg.Regions, weights, sum)
	// Hospital h has size 1/(1+0.35h); a region's home hospital (region
	// index mod Hospitals) counts three times.
	H := cfg.Hospitals
	for r := range nr {
		w := make([]float64, H)
		for h := range H {
			w[h] = 1 / (1 + 0.35*float64(h))
			if h == r%H {
				w[h] *= 3
			}
		}
		c.hospWeights = append(c.hospWeights, w)
	}
	// Visitors: visitorShare of each hospital's expected patients.
	c.pVisitor = make([]float64, H)
	for r := range nr {
		share := weights[r] / sum
		for k, s := range cityHospitalShares {
			for h := range H {
				c.pVisitor[h] += share * s * inSample(c.hospWeights[r], h, min(k, H)) * visitorShare / (1 - visitorShare)
			}
		}
	}
	c.mrnDigits = max(7, len(strconv.Itoa(2*cfg.Residents)))
	c.mrnMod = uint64(math.Pow10(c.mrnDigits))
	for h := range H {
		c.mrnSystems = append(c.mrnSystems, "urn:fedstat:synth:hospital-"+strconv.Itoa(h+1)+":mrn")
	}
	c.free = make(chan *cityChunk, runtime.GOMAXPROCS(0)+4)
	return c
}

// inSample is the probability that h is among k items drawn by weight w
// without replacement (k <= 3).
func inSample(w []float64, h, k int) float64 {
	total := 0.0
	for _, x := range w {
		total += x
	}
	p := 0.0
	if k >= 1 {
		p += w[h] / total
	}
	for a := range w {
		if a == h || k < 2 {
			continue
		}
		pa := w[a] / total
		p += pa * w[h] / (total - w[a])
		if k < 3 {
			continue
		}
		for b := range w {
			if b == h || b == a {
				continue
			}
			pb := w[b] / (total - w[a])
			p += pa * pb * w[h] / (total - w[a] - w[b])
		}
	}
	return p
}

// cityChunk is the output of a chunk of residents: the bytes of each file
// and the chunk's share of the answers.
type cityChunk struct {
	bufs  [][]byte
	tally cityTally
}

// residentID is resident i's identity number: 12 digits, a bijection of i.
func residentID(b []byte, i int) []byte {
	v := (uint64(i)*982451653 + 104729) % 1_000_000_000_000
	return appendPadded(b, v, 12)
}

// mrn appends the local patient id (and MRN) of slot at hospital h: "H1-"
// and digits, a bijection of slot (residents are slots 0..N-1, visitors
// N..2N-1).
func (c *cityGen) mrn(b []byte, h, slot int) []byte {
	b = append(b, 'H')
	b = strconv.AppendInt(b, int64(h+1), 10)
	b = append(b, '-')
	v := (uint64(slot)*7919 + uint64(h+1)*1_000_003) % c.mrnMod
	return appendPadded(b, v, c.mrnDigits)
}

func appendPadded(b []byte, v uint64, digits int) []byte {
	var d [20]byte
	s := strconv.AppendUint(d[:0], v, 10)
	for range digits - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

func (c *cityGen) chunk(k int) *cityChunk {
	var ch *cityChunk
	select {
	case ch = <-c.free:
	default:
		ch = &cityChunk{bufs: make([][]byte, fileHospitals+3*c.cfg.Hospitals), tally: newCityTally(c.cfg)}
	}
	for i := range ch.bufs {
		ch.bufs[i] = ch.bufs[i][:0]
	}
	ch.tally.reset()
	lo := k * cityChunkResidents
	hi := min(lo+cityChunkResidents, c.cfg.Residents)
	src := rand.NewPCG(0, 0)
	rr := rand.New(src)
	p := &cityPerson{stream: stream{rr}, c: c, ch: ch}
	vsrc := rand.NewPCG(0, 0)
	vr := rand.New(vsrc)
	for i := lo; i < hi; i++ {
		src.Seed(splitmix64(uint64(c.cfg.Seed)^0x6a09e667f3bcc908), splitmix64(uint64(i)^0x5bd1e995))
		p.resident(i)
		// Visitors: for each hospital, with probability pVisitor, a person
		// without an identifier from the visitor stream of index i.
		vsrc.Seed(splitmix64(uint64(c.cfg.Seed)^0xbb67ae8584caa73b), splitmix64(uint64(i)^0x3c6ef372))
		for h := range c.cfg.Hospitals {
			if vr.Float64() < c.pVisitor[h] {
				p.r = vr
				p.visitor(i, h)
				p.r = rr
			}
		}
	}
	return ch
}

// cityPerson generates one person at a time into a chunk.
type cityPerson struct {
	stream
	c  *cityGen
	ch *cityChunk

	birth        cdm.Date
	sex          cdm.Sex
	region       int
	dm, htn      bool
	dmOn, htnOn  cdm.Date
	death, last  cdm.Date
	cause        string
	covid        []covidCase
	hosp         []int // hospitals visited, the primary first
	rid          []byte
	pid          []byte
	line         []byte
	claims       []claim
	dmRecorded   bool
	covidWinter  bool
	encN, condN  int
	patientIDBuf []byte
}

type covidCase struct {
	onset, abate cdm.Date
	hosp         int // index into hosp, or -1: not recorded by a hospital
	inpatient    bool
}

type claim struct {
	date     cdm.Date
	category int
	fen      int64
}

// poisson draws a Poisson count (a normal approximation above 30).
func poisson(r *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda >= 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*r.NormFloat64())))
	}
	l, k, prod := math.Exp(-lambda), 0, r.Float64()
	for prod > l {
		k++
		prod *= r.Float64()
	}
	return k
}

// demographics draws birth date, sex, region and the chronic conditions
// (as of CityEnd, onsets before death; Generate's person model without
// asthma), and the death (natural or after COVID-19), filling p.
func (p *cityPerson) demographics(canDie bool) {
	c, r := p.c, p.r
	x := c.people.draw(p.stream, CityStart, CityEnd)
	ageEnd := x.ageEnd
	p.birth, p.sex, p.region = x.birth, x.sex, x.region
	p.dm, p.htn, p.dmOn, p.htnOn = x.dm, x.htn, x.dmOn, x.htnOn

	// Natural death: Gompertz, x1.6 with diabetes, x1.2 with hypertension
	// (the condition as of the year's start).
	p.death, p.cause = cdm.NoDate, ""
	for y := CityStart; canDie && y <= CityEnd; y += 365 {
		yEnd := min(y+364, CityEnd)
		mult := 1.0
		if p.dm && p.dmOn <= y {
			mult *= 1.6
		}
		if p.htn && p.htnOn <= y {
			mult *= 1.2
		}
		if p.bern(mortality(years(y-p.birth)) * mult * float64(yEnd-y+1) / 365) {
			p.death = p.uniformDate(y, yEnd)
			break
		}
	}
	p.last = CityEnd
	if p.death != cdm.NoDate {
		p.last = p.death
	}

	// COVID-19 waves; a COVID-19 death ends the person.
	p.covid = p.covid[:0]
	covidAge := covidAgeFactor(ageEnd)
	for _, w := range c.waves {
		if w.peak-cdm.Date(3*w.sd) > p.last {
			break
		}
		if !p.bern(w.attack * covidAge) {
			continue
		}
		d := w.peak + cdm.Date(math.Round(r.NormFloat64()*w.sd))
		if d < covidStart || d < CityStart || d > p.last {
			continue
		}
		a := years(d - p.birth)
		cs := covidCase{onset: d, abate: min(d+cdm.Date(7+r.IntN(15)), p.last), hosp: -1}
		cs.inpatient = p.bern(covidInpatient(a))
		p.covid = append(p.covid, cs)
		if canDie && p.bern(covidDeath(a)) {
			if dd := d + cdm.Date(7+r.IntN(24)); dd <= p.last {
				p.death, p.last, p.cause = dd, dd, ICDCOVID19
				p.covid[len(p.covid)-1].abate = cdm.NoDate
				break
			}
		}
	}
	if p.dm && p.dmOn > p.last {
		p.dm = false
	}
	if p.htn && p.htnOn > p.last {
		p.htn = false
	}
	if p.death != cdm.NoDate && p.cause == "" {
		p.cause = p.deathCause()
	}
}

// deathCause draws the underlying cause of a natural death.
func (p *cityPerson) deathCause() string {
	if p.dm && p.bern(0.25) {
		return "E11.9"
	}
	if p.htn && p.bern(0.12) {
		return "I10"
	}
	a := years(p.death - p.birth)
	if a < 40 && p.bern(0.3) {
		return "V89.2"
	}
	causes := [...]string{"I21.9", "I64", "I50.9", "C34.9", "C16.9", "J44.9", "J18.9", "N18.9", "R99"}
	weights := [...]float64{0.20, 0.20, 0.08, 0.15, 0.08, 0.12, 0.08, 0.04, 0.05}
	u := p.r.Float64() * 1.0
	for i, w := range weights {
		if u < w {
			return causes[i]
		}
		u -= w
	}
	return causes[len(causes)-1]
}

// resident generates resident i: records at the hospitals it visits, its
// death in the registry, its claims at the insurer.
func (p *cityPerson) resident(i int) {
	c, r, t := p.c, p.r, &p.ch.tally
	p.demographics(true)
	p.rid = residentID(p.rid[:0], i)
	t.residents++

	// Hospitals: k of them, drawn by size with the home hospital favoured.
	u := r.Float64()
	k := 0
	for acc := 0.0; k < 3; k++ {
		acc += cityHospitalShares[k]
		if u < acc {
			break
		}
	}
	k = min(k, c.cfg.Hospitals)
	t.byHospitals[k]++
	p.hosp = p.hosp[:0]
	w := c.hospWeights[p.region]
	for range k {
		sum := 0.0
		for h, x := range w {
			if !slices.Contains(p.hosp, h) {
				sum += x
			}
		}
		v := r.Float64() * sum
		pick := -1
		for h, x := range w {
			if slices.Contains(p.hosp, h) {
				continue
			}
			pick = h
			if v < x {
				break
			}
			v -= x
		}
		p.hosp = append(p.hosp, pick)
	}
	// Which hospital records each COVID-19 case (70%, if any).
	for j := range p.covid {
		if k > 0 && p.bern(0.7) {
			p.covid[j].hosp = r.IntN(k)
		}
	}
	p.dmRecorded, p.covidWinter = false, false
	for j, h := range p.hosp {
		p.atHospital(h, j, i)
	}
	if p.dmRecorded {
		t.dm++
		t.dmByRegion[p.region]++
	}
	if p.covidWinter {
		t.covidWinter++
	}

	// The registry.
	if p.death != cdm.NoDate {
		t.deaths++
		b := p.ch.bufs[fileDeaths]
		b = append(b, p.rid...)
		b = append(b, ',')
		b = appendDate(b, p.death)
		b = append(b, ',')
		b = append(b, p.cause...)
		p.ch.bufs[fileDeaths] = append(b, '\n')
		if p.dmRecorded {
			if y := p.death.Year(); y == 2023 {
				t.dmDeaths2023++
			}
			t.dmDeathsByYear[p.death.Year()-CityStart.Year()]++
		}
	}

	// The insurer.
	if p.bern(0.85) {
		t.insured++
		p.claimsOf()
	}
}

// visitor generates a hospital patient without a resident identifier at
// hospital h (from index i's visitor stream).
func (p *cityPerson) visitor(i, h int) {
	t := &p.ch.tally
	p.demographics(false)
	t.visitors++
	t.visitorsAt[h]++
	p.rid = p.rid[:0]
	p.hosp = append(p.hosp[:0], h)
	for j := range p.covid {
		if p.bern(0.7) {
			p.covid[j].hosp = 0
		}
	}
	p.dmRecorded, p.covidWinter = false, false
	p.atHospital(h, 0, p.c.cfg.Residents+i)
	if p.dmRecorded {
		t.dm++
		t.dmByRegion[p.region]++
	}
	if p.covidWinter {
		t.covidWinter++
	}
}

// ICD-10 subcodes of type 2 diabetes each hospital chooses from (WHO
// four-character codes), with weights.
var (
	dmCodes   = [...]string{"E11.9", "E11.2", "E11.3", "E11.4", "E11.5", "E11.7"}
	dmWeights = [...]float64{0.60, 0.12, 0.08, 0.08, 0.05, 0.07}
	// The start and end of Q6's window.
	winterFrom = cdm.DateFromYMD(2023, 11, 1)
	winterTo   = cdm.DateFromYMD(2024, 3, 31)
)

// atHospital writes the person's Patient, Conditions and Encounters at
// hospital h, the j-th it visits (j = 0: the primary one, which records
// every chronic condition; others record each with probability 0.6).
func (p *cityPerson) atHospital(h, j, slot int) {
	c, r, ch, t := p.c, p.r, p.ch, &p.ch.tally
	p.pid = c.mrn(p.pid[:0], h, slot)
	p.encN, p.condN = 0, 0
	t.patients[h]++

	// Patient.
	b := ch.bufs[fileHospitals+3*h]
	b = append(b, `{"resourceType":"Patient","id":"`...)
	b = append(b, p.pid...)
	b = append(b, `","identifier":[`...)
	if len(p.rid) > 0 {
		b = append(b, `{"system":"`...)
		b = append(b, c.cfg.IdentifierSystem...)
		b = append(b, `","value":"`...)
		b = append(b, p.rid...)
		b = append(b, `"},`...)
	}
	b = append(b, `{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"`...)
	b = append(b, c.mrnSystems[h]...)
	b = append(b, `","value":"`...)
	b = append(b, p.pid...)
	b = append(b, `"}],"gender":"`...)
	b = append(b, p.sex.String()...)
	b = append(b, `","birthDate":"`...)
	b = appendDate(b, p.birth)
	b = append(b, '"')
	if p.death != cdm.NoDate {
		b = append(b, `,"deceasedDateTime":"`...)
		b = appendDate(b, p.death)
		b = append(b, '"')
	}
	b = append(b, `,"address":[{"use":"home","city":"Synthopolis","state":"`...)
	b = append(b, c.cfg.Regions[p.region]...)
	b = append(b, `","postalCode":"`...)
	b = appendPadded(b, uint64(200000+100*p.region+r.IntN(100)), 6)
	b = append(b, `","country":"CN"}]}`...)
	ch.bufs[fileHospitals+3*h] = append(b, '\n')

	// Conditions and their problem encounters.
	first := max(CityStart, p.birth)
	chronic := false
	recorded := func(on cdm.Date) cdm.Date {
		if j == 0 {
			return on
		}
		return min(on+cdm.Date(r.IntN(731)), p.last)
	}
	if p.dm && (j == 0 || p.bern(0.6)) {
		u, code := r.Float64(), dmCodes[0]
		for x, w := range dmWeights {
			if u < w {
				code = dmCodes[x]
				break
			}
			u -= w
		}
		on := recorded(p.dmOn)
		p.condition(h, code, "Type 2 diabetes mellitus", on, cdm.NoDate)
		if on >= CityStart {
			p.encounter(h, "AMB", EncProblem, on, on)
		}
		p.dmRecorded = true
		t.dmAt[h]++
		chronic = true
	}
	if p.htn && (j == 0 || p.bern(0.6)) {
		on := recorded(p.htnOn)
		p.condition(h, ICDHypertension, "Essential (primary) hypertension", on, cdm.NoDate)
		if on >= CityStart {
			p.encounter(h, "AMB", EncProblem, on, on)
		}
		chronic = true
	}
	for _, cs := range p.covid {
		if cs.hosp != j {
			continue
		}
		p.condition(h, ICDCOVID19, "COVID-19, virus identified", cs.onset, cs.abate)
		if cs.onset >= winterFrom && cs.onset <= winterTo {
			p.covidWinter = true
		}
		if cs.inpatient {
			s := min(cs.onset+cdm.Date(r.IntN(5)), p.last)
			p.encounter(h, "IMP", EncInpatient, s, min(s+cdm.Date(3+r.IntN(8)), p.last))
		} else {
			p.encounter(h, "AMB", EncSymptom, cs.onset, cs.onset)
		}
	}
	// Other visits.
	lambda := 1.5
	if chronic {
		lambda += 2
	}
	for range 1 + poisson(r, lambda) {
		d := p.uniformDate(first, p.last)
		p.encounter(h, "AMB", EncCheckUp, d, d)
	}
	t.conditions[h] += p.condN
	t.encounters[h] += p.encN
}

// condition writes a Condition coded in ICD-10 at hospital h.
func (p *cityPerson) condition(h int, code, display string, onset, abate cdm.Date) {
	p.condN++
	ch := p.ch
	b := ch.bufs[fileHospitals+3*h+1]
	b = append(b, `{"resourceType":"Condition","id":"`...)
	b = append(b, p.pid...)
	b = append(b, "-c"...)
	b = strconv.AppendInt(b, int64(p.condN), 10)
	status := "active"
	if abate != cdm.NoDate {
		status = "resolved"
	}
	b = append(b, `","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"`...)
	b = append(b, status...)
	b = append(b, `"}]},"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]},"code":{"coding":[{"system":"`...)
	b = append(b, cdm.SystemICD10...)
	b = append(b, `","code":"`...)
	b = append(b, code...)
	b = append(b, `","display":"`...)
	b = append(b, display...)
	b = append(b, `"}]},"subject":{"reference":"Patient/`...)
	b = append(b, p.pid...)
	b = append(b, `"},"onsetDateTime":"`...)
	b = appendDate(b, onset)
	b = append(b, '"')
	if abate != cdm.NoDate {
		b = append(b, `,"abatementDateTime":"`...)
		b = appendDate(b, abate)
		b = append(b, '"')
	}
	ch.bufs[fileHospitals+3*h+1] = append(b, "}\n"...)
}

// encounter writes an Encounter at hospital h.
func (p *cityPerson) encounter(h int, class, typ string, start, end cdm.Date) {
	p.encN++
	ch := p.ch
	b := ch.bufs[fileHospitals+3*h+2]
	b = append(b, `{"resourceType":"Encounter","id":"`...)
	b = append(b, p.pid...)
	b = append(b, "-e"...)
	b = strconv.AppendInt(b, int64(p.encN), 10)
	b = append(b, `","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"`...)
	b = append(b, class...)
	b = append(b, `"},"type":[{"coding":[{"system":"http://snomed.info/sct","code":"`...)
	b = append(b, typ...)
	b = append(b, `"}]}],"subject":{"reference":"Patient/`...)
	b = append(b, p.pid...)
	b = append(b, `"},"period":{"start":"`...)
	b = appendDate(b, start)
	b = append(b, `","end":"`...)
	b = appendDate(b, end)
	ch.bufs[fileHospitals+3*h+2] = append(b, "\"}}\n"...)
}

// Claim categories: index into ClaimCategories, the median amount (yuan)
// and the spread (sd of the log).
var claimModel = [...]struct {
	median, sigma float64
}{
	{220, 0.7},   // outpatient
	{180, 0.8},   // pharmacy
	{120, 0.6},   // laboratory
	{600, 0.6},   // imaging
	{900, 0.8},   // emergency
	{9000, 0.95}, // inpatient
	{400, 0.7},   // dental
	{2500, 0.7},  // rehabilitation
}

var (
	claimMixBase     = [...]float64{0.35, 0.25, 0.12, 0.07, 0.06, 0.05, 0.06, 0.04}
	claimMixDiabetic = [...]float64{0.30, 0.45, 0.17, 0.02, 0.01, 0.05, 0, 0}
)

// claimsOf writes the claims of an insured resident: about 1 a year plus
// 0.05 a year per year of age over 20, 4 more a year once diabetic, 1.5
// more once hypertensive; at most ClaimsRowsPerPatient.
func (p *cityPerson) claimsOf() {
	r, t := p.r, &p.ch.tally
	p.claims = p.claims[:0]
	add := func(from cdm.Date, rate float64, mix *[8]float64) {
		from = max(from, CityStart)
		if from > p.last {
			return
		}
		n := poisson(r, rate*years(p.last-from+1))
		for range n {
			u, cat := r.Float64(), 0
			for x, w := range mix {
				if u < w {
					cat = x
					break
				}
				u -= w
			}
			m := claimModel[cat]
			yuan := math.Max(10, m.median*math.Exp(m.sigma*r.NormFloat64()))
			p.claims = append(p.claims, claim{date: p.uniformDate(from, p.last), category: cat, fen: roundFen(yuan)})
		}
	}
	age := years(CityStart - p.birth)
	add(p.birth, 1+0.05*math.Max(0, age-20), &claimMixBase)
	if p.dm {
		add(p.dmOn, 4, &claimMixDiabetic)
	}
	if p.htn {
		add(p.htnOn, 1.5, &claimMixBase)
	}
	if len(p.claims) > ClaimsRowsPerPatient {
		t.capped++
		for x := range ClaimsRowsPerPatient { // a random subset
			y := x + r.IntN(len(p.claims)-x)
			p.claims[x], p.claims[y] = p.claims[y], p.claims[x]
		}
		p.claims = p.claims[:ClaimsRowsPerPatient]
	}
	slices.SortFunc(p.claims, func(a, b claim) int { return int(a.date - b.date) })
	b := p.ch.bufs[fileClaims]
	for n, cl := range p.claims {
		b = append(b, 'C')
		b = append(b, p.rid...)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(n+1), 10)
		b = append(b, ',')
		b = append(b, p.rid...)
		b = append(b, ',')
		b = appendDate(b, cl.date)
		b = append(b, ',')
		b = strconv.AppendInt(b, cl.fen/100, 10)
		b = append(b, '.')
		b = appendPadded(b, uint64(cl.fen%100), 2)
		b = append(b, ',')
		b = append(b, ClaimCategories[cl.category]...)
		b = append(b, '\n')
		t.claims++
		if cl.fen > ClaimAmountMax*100 {
			t.claimsAbove++
		}
		if p.dmRecorded {
			t.dmClaimsFen += min(cl.fen, ClaimAmountMax*100)
			if n < 5 {
				t.dmClaims5Fen += min(cl.fen, ClaimAmountMax*100)
			}
		}
	}
	p.ch.bufs[fileClaims] = b
}

// appendDate appends d as YYYY-MM-DD (years 0..9999).
func appendDate(b []byte, d cdm.Date) []byte {
	y, m, dd := d.Civil()
	return append(b, byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10),
		'-', byte('0'+m/10), byte('0'+m%10), '-', byte('0'+dd/10), byte('0'+dd%10))
}
