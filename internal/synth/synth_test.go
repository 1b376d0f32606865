package synth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fedstat/fedstat/internal/cdm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// population is generated once for the statistical tests.
var population = func() func(t *testing.T) *cdm.Records {
	var recs *cdm.Records
	var err error
	return func(t *testing.T) *cdm.Records {
		t.Helper()
		if recs == nil && err == nil {
			recs, err = Generate(Options{Patients: 30000, Seed: 1})
		}
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
}()

func TestDeterministic(t *testing.T) {
	o := Options{Patients: 3000, Seed: 42, Regions: []string{"a", "b", "c"}, IDPrefix: "n1-"}
	a, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same options gave different records")
	}
	o.Seed = 43
	c, _ := Generate(o)
	if reflect.DeepEqual(a.Patients, c.Patients) {
		t.Fatal("different seeds gave the same patients")
	}
	// Patient i does not depend on how many patients follow it nor on
	// the number of cores.
	prev := runtime.GOMAXPROCS(1)
	o.Seed, o.Patients = 42, 2000
	d, _ := Generate(o)
	runtime.GOMAXPROCS(prev)
	if !reflect.DeepEqual(d.Patients, a.Patients[:2000]) {
		t.Fatal("a prefix of the population differs")
	}
}

func TestLargeChunkedSameAsParallel(t *testing.T) {
	defer func(n int) { chunkPatients = n }(chunkPatients)
	chunkPatients = 500
	o := Options{Patients: 3*chunkPatients + 17, Seed: 7}
	var seq cdm.Records
	prev := runtime.GOMAXPROCS(1)
	chunks := 0
	err := GenerateFunc(o, func(r *cdm.Records) error { chunks++; seq.Append(r); return nil })
	runtime.GOMAXPROCS(prev)
	if err != nil {
		t.Fatal(err)
	}
	if chunks != 4 {
		t.Fatalf("%d chunks, want 4", chunks)
	}
	par, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&seq, par) {
		t.Fatal("sequential and parallel generation differ")
	}
	// An emit error stops generation and comes back.
	boom := errors.New("boom")
	n := 0
	if err := GenerateFunc(o, func(*cdm.Records) error { n++; return boom }); !errors.Is(err, boom) || n != 1 {
		t.Fatalf("emit error: %v after %d chunks", err, n)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Options{
		{},
		{Patients: -1},
		{Patients: 1, Start: cdm.DateFromYMD(2020, 1, 1), End: cdm.DateFromYMD(2019, 1, 1)},
		{Patients: 1, Regions: []string{"x", ""}},
	} {
		if _, err := Generate(o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: got %v, want ErrBadOptions", o, err)
		}
	}
}

func TestReferentialIntegrityAndSpan(t *testing.T) {
	recs := population(t)
	o, _ := Options{Patients: 1}.withDefaults()
	byID := map[string]cdm.Patient{}
	for _, p := range recs.Patients {
		if _, dup := byID[p.ID]; dup {
			t.Fatalf("duplicate patient %s", p.ID)
		}
		byID[p.ID] = p
	}
	ids := map[string]bool{}
	check := func(table, id, pid string, d cdm.Date, inSpan bool) {
		t.Helper()
		if ids[id] {
			t.Fatalf("%s: duplicate id %s", table, id)
		}
		ids[id] = true
		p, ok := byID[pid]
		if !ok {
			t.Fatalf("%s %s: unknown patient %s", table, id, pid)
		}
		if d < p.BirthDate || (p.DeathDate.Valid() && d > p.DeathDate) || d > o.End || (inSpan && d < o.Start) {
			t.Fatalf("%s %s: date %s outside life %s..%s or span", table, id, d, p.BirthDate, p.DeathDate)
		}
	}
	for _, c := range recs.Conditions {
		chronic := c.Code == CodeDiabetesT2 || c.Code == CodeHypertension || c.Code == CodeAsthma
		check("condition", c.ID, c.PatientID, c.Onset, !chronic)
	}
	for _, x := range recs.Observations {
		check("observation", x.ID, x.PatientID, x.Date, true)
	}
	for _, x := range recs.Encounters {
		check("encounter", x.ID, x.PatientID, x.Start, true)
		if x.End < x.Start {
			t.Fatalf("encounter %s ends before it starts", x.ID)
		}
	}
	for _, x := range recs.Medications {
		check("medication", x.ID, x.PatientID, x.Authored, true)
	}
	t.Logf("%d patients: %d conditions, %d observations, %d encounters, %d medications",
		len(recs.Patients), len(recs.Conditions), len(recs.Observations), len(recs.Encounters), len(recs.Medications))
}

func TestDemographics(t *testing.T) {
	recs := population(t)
	o, _ := Options{Patients: 1}.withDefaults()
	var female, old, kids, deaths int
	regions := map[string]int{}
	for _, p := range recs.Patients {
		if p.Sex == cdm.SexFemale {
			female++
		}
		switch a := cdm.AgeAt(p.BirthDate, o.Start); {
		case a >= 65:
			old++
		case a < 18:
			kids++
		}
		if p.DeathDate.Valid() {
			deaths++
		}
		regions[p.Region]++
	}
	n := float64(len(recs.Patients))
	within(t, "female share", float64(female)/n, 0.48, 0.53)
	within(t, "65+ share", float64(old)/n, 0.14, 0.20)       // US 2020: 16.8%
	within(t, "under-18 share", float64(kids)/n, 0.19, 0.25) // US 2020: 22%
	within(t, "deaths a year", float64(deaths)/n/5, 0.006, 0.013)
	within(t, "CA share", float64(regions["CA"])/n, 0.18, 0.23)
	if len(regions) != len(DefaultRegions) {
		t.Errorf("regions %v", regions)
	}
}

func within(t *testing.T, what string, got, lo, hi float64) {
	t.Helper()
	if got < lo || got > hi || math.IsNaN(got) {
		t.Errorf("%s = %.4f, want in [%g, %g]", what, got, lo, hi)
	} else {
		t.Logf("%s = %.4f", what, got)
	}
}

func TestChronicPrevalence(t *testing.T) {
	recs := population(t)
	o, _ := Options{Patients: 1}.withDefaults()
	has := map[string]map[string]bool{CodeDiabetesT2: {}, CodeHypertension: {}, CodeAsthma: {}}
	for _, c := range recs.Conditions {
		if m, ok := has[c.Code]; ok {
			m[c.PatientID] = true
		}
	}
	var adults, all, young, older, dmYoung, dmOlder int
	counts := map[string]int{}
	for _, p := range recs.Patients {
		all++
		if has[CodeAsthma][p.ID] {
			counts["asthma-all"]++
		}
		a := cdm.AgeAt(p.BirthDate, o.End)
		if a < 18 {
			continue
		}
		adults++
		for code, m := range has {
			if m[p.ID] {
				counts[code]++
			}
		}
		if a < 45 {
			young++
			if has[CodeDiabetesT2][p.ID] {
				dmYoung++
			}
		} else if a >= 65 {
			older++
			if has[CodeDiabetesT2][p.ID] {
				dmOlder++
			}
		}
	}
	within(t, "adult type-2 diabetes", float64(counts[CodeDiabetesT2])/float64(adults), 0.085, 0.12)
	within(t, "adult hypertension", float64(counts[CodeHypertension])/float64(adults), 0.26, 0.34)
	within(t, "asthma", float64(counts["asthma-all"])/float64(all), 0.065, 0.095)
	py, po := float64(dmYoung)/float64(young), float64(dmOlder)/float64(older)
	if po < 3*py {
		t.Errorf("diabetes 65+ %.3f not well above 18-44 %.3f", po, py)
	}
}

func TestInfluenzaSeasonalAndCOVIDWaves(t *testing.T) {
	recs := population(t)
	var winter, summer int
	covidBefore := 0
	covidByMonth := map[string]int{}
	for _, c := range recs.Conditions {
		tm := c.Onset.Time()
		switch c.Code {
		case CodeInfluenza:
			switch tm.Month() {
			case time.December, time.January, time.February:
				winter++
			case time.June, time.July, time.August:
				summer++
			}
		case CodeCOVID19:
			if c.Onset < cdm.DateFromYMD(2020, time.March, 1) {
				covidBefore++
			}
			covidByMonth[tm.Format("2006-01")]++
		}
	}
	t.Logf("influenza Dec-Feb %d, Jun-Aug %d", winter, summer)
	if winter < 10*summer || winter < 500 {
		t.Errorf("influenza Dec-Feb %d not >> Jun-Aug %d", winter, summer)
	}
	if covidBefore != 0 {
		t.Errorf("%d COVID-19 cases before March 2020", covidBefore)
	}
	if covidByMonth["2022-01"] < 3*covidByMonth["2021-06"] || covidByMonth["2022-01"] < 1000 {
		t.Errorf("no Omicron wave: 2022-01 %d, 2021-06 %d", covidByMonth["2022-01"], covidByMonth["2021-06"])
	}
}

func TestHbA1cCorrelatesWithDiabetes(t *testing.T) {
	recs := population(t)
	dm := map[string]cdm.Date{}
	for _, c := range recs.Conditions {
		if c.Code == CodeDiabetesT2 {
			dm[c.PatientID] = c.Onset
		}
	}
	var sumD, sumN float64
	var nD, nN int
	for _, x := range recs.Observations {
		if x.Code != CodeHbA1c {
			continue
		}
		if x.Unit != "%" || !x.HasValue || x.System != cdm.SystemLOINC {
			t.Fatalf("bad HbA1c %+v", x)
		}
		if on, ok := dm[x.PatientID]; ok {
			if x.Date >= on {
				sumD += x.Value
				nD++
			}
		} else {
			sumN += x.Value
			nN++
		}
	}
	mD, mN := sumD/float64(nD), sumN/float64(nN)
	within(t, "HbA1c of diabetics", mD, 7.0, 9.0)
	within(t, "HbA1c of others", mN, 5.0, 5.7)
	var metformin int
	for _, m := range recs.Medications {
		if m.Code == CodeMetformin {
			if _, ok := dm[m.PatientID]; !ok {
				t.Fatalf("metformin for non-diabetic %s", m.PatientID)
			}
			metformin++
		}
	}
	if metformin < len(dm) {
		t.Errorf("%d metformin prescriptions for %d diabetics", metformin, len(dm))
	}
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		n := 0
		err := GenerateFunc(Options{Patients: 1_000_000, Seed: 1}, func(r *cdm.Records) error {
			n += r.Len()
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n), "records")
	}
}

// TestPinnedOutput notices any change to what a seed generates. If the
// change is intended (a better model), update the digest and say so in the
// commit: data sets generated before no longer reproduce.
func TestPinnedOutput(t *testing.T) {
	recs, err := Generate(Options{Patients: 200, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Per table, skipping tables the generator leaves empty: a table added
	// to the data model does not change the digest, new generated rows do.
	var b []byte
	v := reflect.ValueOf(*recs)
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Slice && f.Len() > 0 {
			b = fmt.Appendf(b, "%s:%+v\n", v.Type().Field(i).Name, f.Interface())
		}
	}
	h := sha256.Sum256(b)
	const want = "f14e6c3b44a4616a5170d472d089cab3c58b564bd208278b28d35085329713e4"
	if got := hex.EncodeToString(h[:]); got != want {
		t.Fatalf("Generate(200 patients, seed 1) digest %s, pinned %s", got, want)
	}
}
