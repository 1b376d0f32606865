package synth

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

func readCityDir(t *testing.T, dir string, hospitals int) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, p := range append(cityPaths(dir, hospitals), cityMetaPaths(dir)...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = b
	}
	return m
}

func TestCityDeterministic(t *testing.T) {
	cfg := CityConfig{Residents: 3000, Hospitals: 3, Seed: 7}
	d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
	a1, err := City(cfg, d1)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := City(cfg, d2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a1, a2) {
		t.Fatalf("answers differ between runs:\n%+v\n%+v", a1, a2)
	}
	truth, err := CityTruth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a1, truth) {
		t.Fatalf("CityTruth differs from City:\n%+v\n%+v", truth, a1)
	}
	f1, f2 := readCityDir(t, d1, 3), readCityDir(t, d2, 3)
	for name, b := range f1 {
		if name == "network.toml" { // holds the absolute schema paths
			continue
		}
		if !bytes.Equal(b, f2[name]) {
			t.Errorf("%s differs between runs with the same seed", name)
		}
	}
	cfg.Seed = 8
	if _, err := City(cfg, d3); err != nil {
		t.Fatal(err)
	}
	if f3 := readCityDir(t, d3, 3); bytes.Equal(f1["insurer/claims.csv"], f3["insurer/claims.csv"]) {
		t.Error("seeds 7 and 8 give the same claims")
	}
}

func TestCityRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	cfg := CityConfig{Residents: 100, Hospitals: 2, Seed: 1}
	if _, err := City(cfg, dir); err != nil {
		t.Fatal(err)
	}
	before := readCityDir(t, dir, 2)
	cfg.Seed = 2
	if _, err := City(cfg, dir); !errors.Is(err, ErrExists) {
		t.Fatalf("second run: %v, want ErrExists", err)
	}
	if after := readCityDir(t, dir, 2); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatal("a refused run changed files")
	}
	cfg.Overwrite = true
	if _, err := City(cfg, dir); err != nil {
		t.Fatalf("with Overwrite: %v", err)
	}
	for _, bad := range []CityConfig{{Residents: -1}, {Hospitals: 100}, {Regions: []string{"a", "a"}}, {Regions: []string{"a b"}}, {IdentifierSystem: "urn:a|b"}} {
		if _, err := CityTruth(bad); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%+v: %v, want ErrBadOptions", bad, err)
		}
	}
}

// The test's own reading of the files: FHIR resources as encoding/json sees
// them.
type fhirPatient struct {
	ID         string `json:"id"`
	Identifier []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Gender   string `json:"gender"`
	Birth    string `json:"birthDate"`
	Deceased string `json:"deceasedDateTime"`
	Address  []struct {
		State string `json:"state"`
	} `json:"address"`
}

type fhirCondition struct {
	ID   string `json:"id"`
	Code struct {
		Coding []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"coding"`
	} `json:"code"`
	Subject struct {
		Reference string `json:"reference"`
	} `json:"subject"`
	Onset string `json:"onsetDateTime"`
}

type fhirEncounter struct {
	ID      string `json:"id"`
	Subject struct {
		Reference string `json:"reference"`
	} `json:"subject"`
}

func readNDJSON[T any](t *testing.T, path string, fn func(T)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var v T
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		fn(v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func readCityCSV(t *testing.T, path string, header string, fn func([]string)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	h, err := r.Read()
	if err != nil || strings.Join(h, ",")+"\n" != header {
		t.Fatalf("%s: header %v (%v), want %q", path, h, err, header)
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(rec)
	}
}

// fen parses a yuan amount with two decimals exactly.
func fen(t *testing.T, s string) int64 {
	t.Helper()
	whole, frac, ok := strings.Cut(s, ".")
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if !ok || len(frac) != 2 || err1 != nil || err2 != nil {
		t.Fatalf("amount %q: want yuan with two decimals", s)
	}
	return w*100 + f
}

// TestCityAnswersFromFiles recomputes every answer from the written files,
// linking by the identifier as a linked network does, and checks the
// files' shape: overlaps, visitors, consistent regions and death dates,
// the claims cap, the schemas.
func TestCityAnswersFromFiles(t *testing.T) {
	cfg := CityConfig{Residents: 6000, Hospitals: 4, Seed: 3}
	dir := t.TempDir()
	ans, err := City(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	sys := DefaultIdentifierSystem

	// Hospitals.
	type person struct {
		region    string
		hospitals int
		deceased  string
	}
	people := map[string]*person{} // by linked key
	keyOf := map[string]string{}   // "hospital/local id" -> linked key
	dm, covidWinter := map[string]bool{}, map[string]bool{}
	naive := 0
	visitorsTotal := 0
	for h := range cfg.Hospitals {
		hd := filepath.Join(dir, hospitalDir(h))
		local := map[string]bool{}
		visitors := 0
		readNDJSON(t, filepath.Join(hd, "Patient.ndjson"), func(p fhirPatient) {
			if local[p.ID] {
				t.Fatalf("%s: patient %s twice", hd, p.ID)
			}
			local[p.ID] = true
			key, mrnOK := "", false
			for _, id := range p.Identifier {
				switch id.System {
				case sys:
					key = id.Value
				case "urn:fedstat:synth:hospital-" + strconv.Itoa(h+1) + ":mrn":
					mrnOK = id.Value == p.ID && strings.HasPrefix(p.ID, "H"+strconv.Itoa(h+1)+"-")
				}
			}
			if !mrnOK {
				t.Fatalf("%s: patient %s without its hospital MRN: %+v", hd, p.ID, p.Identifier)
			}
			if key == "" {
				visitors++
				key = hospitalDir(h) + "/" + p.ID
			}
			if len(p.Address) != 1 || !slices.Contains(cfg.withDefaultsT(t).Regions, p.Address[0].State) {
				t.Fatalf("%s: patient %s address %+v: want one with a district in state", hd, p.ID, p.Address)
			}
			if _, err := cdm.ParseSex(p.Gender); err != nil || len(p.Birth) != 10 {
				t.Fatalf("%s: patient %s gender %q birth %q", hd, p.ID, p.Gender, p.Birth)
			}
			ps := people[key]
			if ps == nil {
				ps = &person{region: p.Address[0].State, deceased: p.Deceased}
				people[key] = ps
			}
			if ps.region != p.Address[0].State || ps.deceased != p.Deceased {
				t.Fatalf("resident %s: region %s/%s, deceased %q/%q at different hospitals", key, ps.region, p.Address[0].State, ps.deceased, p.Deceased)
			}
			ps.hospitals++
			keyOf[hospitalDir(h)+"/"+p.ID] = key
		})
		if visitors == 0 {
			t.Errorf("%s: no visitors without identifier", hd)
		}
		if hs := ans.Hospitals[h]; hs.Patients != len(local) || hs.Visitors != visitors {
			t.Errorf("%s: %d patients, %d visitors; answers say %d, %d", hd, len(local), visitors, hs.Patients, hs.Visitors)
		}
		visitorsTotal += visitors
		dmHere := map[string]bool{}
		conds := 0
		readNDJSON(t, filepath.Join(hd, "Condition.ndjson"), func(c fhirCondition) {
			conds++
			if len(c.Code.Coding) != 1 || c.Code.Coding[0].System != cdm.SystemICD10 {
				t.Fatalf("%s: condition %s coded %+v, want one ICD-10 coding", hd, c.ID, c.Code.Coding)
			}
			ref, ok := strings.CutPrefix(c.Subject.Reference, "Patient/")
			key := keyOf[hospitalDir(h)+"/"+ref]
			if !ok || key == "" {
				t.Fatalf("%s: condition %s refers to %q, not a patient of the hospital", hd, c.ID, c.Subject.Reference)
			}
			switch code := c.Code.Coding[0].Code; {
			case strings.HasPrefix(code, "E11"):
				dm[key], dmHere[key] = true, true
			case code == "U07.1":
				if c.Onset >= "2023-11-01" && c.Onset <= "2024-03-31" {
					covidWinter[key] = true
				}
			}
		})
		encs := 0
		readNDJSON(t, filepath.Join(hd, "Encounter.ndjson"), func(e fhirEncounter) {
			encs++
			if ref, _ := strings.CutPrefix(e.Subject.Reference, "Patient/"); keyOf[hospitalDir(h)+"/"+ref] == "" {
				t.Fatalf("%s: encounter %s refers to %q", hd, e.ID, e.Subject.Reference)
			}
		})
		if hs := ans.Hospitals[h]; hs.Conditions != conds || hs.Encounters != encs || hs.Diabetics != len(dmHere) {
			t.Errorf("%s: %d conditions, %d encounters, %d diabetics; answers say %+v", hd, conds, encs, len(dmHere), hs)
		}
		naive += len(dmHere)
	}
	if visitorsTotal != ans.Visitors {
		t.Errorf("%d visitors, answers say %d", visitorsTotal, ans.Visitors)
	}
	var byHospitals [4]int
	for _, p := range people {
		byHospitals[p.hospitals]++
	}
	if byHospitals[2] == 0 || byHospitals[3] == 0 {
		t.Errorf("residents by number of hospitals %v: want some at 2 and 3", byHospitals)
	}
	// Visitors and residents known to 1..3 hospitals.
	if got := byHospitals[1] - visitorsTotal; got != ans.ResidentsByHospitals[1] || byHospitals[2] != ans.ResidentsByHospitals[2] || byHospitals[3] != ans.ResidentsByHospitals[3] {
		t.Errorf("residents at 1, 2, 3 hospitals: %d %d %d; answers say %v", got, byHospitals[2], byHospitals[3], ans.ResidentsByHospitals)
	}

	// Registry.
	deaths := map[string]string{}
	readCityCSV(t, filepath.Join(dir, "registry", "deaths.csv"), deathsHeader, func(r []string) {
		if _, dup := deaths[r[0]]; dup {
			t.Fatalf("deaths: %s twice", r[0])
		}
		if r[1] < "2019-01-01" || r[1] > "2025-12-31" || !slices.Contains(DeathCauses, r[2]) {
			t.Fatalf("deaths: row %v", r)
		}
		deaths[r[0]] = r[1]
	})
	for key, p := range people {
		if d, ok := deaths[key]; p.deceased != "" && d != p.deceased || ok && p.deceased != d {
			t.Fatalf("resident %s: deceased %q at hospitals, %q in the registry", key, p.deceased, d)
		}
	}

	// Insurer.
	perResident := map[string]int{}
	var q3, q3first5 int64
	above := 0
	claimIDs := map[string]bool{}
	readCityCSV(t, filepath.Join(dir, "insurer", "claims.csv"), claimsHeader, func(r []string) {
		if claimIDs[r[0]] {
			t.Fatalf("claim id %s twice", r[0])
		}
		claimIDs[r[0]] = true
		perResident[r[1]]++
		a := fen(t, r[3])
		if a <= 0 || !slices.Contains(ClaimCategories, r[4]) || len(r[2]) != 10 {
			t.Fatalf("claims: row %v", r)
		}
		if d, dead := deaths[r[1]]; dead && r[2] > d {
			t.Fatalf("claims: row %v after death on %s", r, d)
		}
		if a > ClaimAmountMax*100 {
			above++
		}
		if dm[r[1]] {
			q3 += min(a, ClaimAmountMax*100)
			if perResident[r[1]] <= 5 {
				q3first5 += min(a, ClaimAmountMax*100)
			}
		}
	})
	most := 0
	for _, n := range perResident {
		most = max(most, n)
	}
	if most > ClaimsRowsPerPatient || ans.ClaimantsCapped == 0 || most != ClaimsRowsPerPatient {
		t.Errorf("most claims of a resident %d, capped %d: want exactly %d at most, some capped", most, ans.ClaimantsCapped, ClaimsRowsPerPatient)
	}
	if above == 0 || above != ans.ClaimsAboveMax {
		t.Errorf("%d claims above the max (answers: %d), want some", above, ans.ClaimsAboveMax)
	}

	// The answers.
	q2, byYear, byRegion := 0, map[string]int{}, map[string]int{}
	for y := 2019; y <= 2025; y++ {
		byYear[strconv.Itoa(y)] = 0
	}
	for _, r := range cfg.withDefaultsT(t).Regions {
		byRegion[r] = 0
	}
	for key := range dm {
		byRegion[people[key].region]++
		if d, ok := deaths[key]; ok {
			byYear[d[:4]]++
			if d[:4] == "2023" {
				q2++
			}
		}
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: from the files %v, the generator says %v", name, got, want)
		}
	}
	check("Q1", len(dm), ans.Diabetics)
	check("Q1 naive", naive, ans.DiabeticsNaive)
	check("Q2", q2, ans.DiabeticDeaths2023)
	check("Q3", q3, ans.DiabeticClaimsFen)
	check("Q3 first 5 rows", q3first5, ans.DiabeticClaimsFirst5Fen)
	check("Q4", byYear, ans.DiabeticDeathsByYear)
	check("Q5", byRegion, ans.DiabeticsByRegion)
	check("Q6", len(covidWinter), ans.COVIDWinter2023)
	check("deaths", len(deaths), ans.Deaths)
	check("insured with claims", len(perResident) <= ans.Insured, true)
	if naive <= len(dm) || q2 == 0 || q3 == 0 || len(covidWinter) == 0 {
		t.Errorf("degenerate answers: naive %d, Q1 %d, Q2 %d, Q3 %d, Q6 %d", naive, len(dm), q2, q3, len(covidWinter))
	}

	// answers.json holds the same.
	b, err := os.ReadFile(filepath.Join(dir, "answers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var aj struct {
		Queries []CityQuery `json:"queries"`
	}
	if err := json.Unmarshal(b, &aj); err != nil {
		t.Fatal(err)
	}
	check("answers.json", aj.Queries, ans.Queries())
	if *aj.Queries[3].Value != float64(q3)/100 || *aj.Queries[4].Value != float64(q3)/100 || aj.Queries[0].SQL != CitySQLDiabetics {
		t.Errorf("answers.json: Q3 %v, want %v", *aj.Queries[3].Value, float64(q3)/100)
	}

	// Schemas.
	for _, s := range []struct{ path, name string }{{"registry/deaths.toml", "deaths"}, {"insurer/claims.toml", "claims"}} {
		sc, err := cdm.ReadStudySchema(filepath.Join(dir, s.path), "")
		if err != nil {
			t.Fatal(err)
		}
		if sc.Name != s.name || sc.ID != "resident_id" {
			t.Errorf("%s: name %q id %q", s.path, sc.Name, sc.ID)
		}
	}
	if sc, _ := cdm.ReadStudySchema(filepath.Join(dir, "insurer/claims.toml"), ""); sc.RowsPerPatient != ClaimsRowsPerPatient {
		t.Errorf("claims rows_per_patient %d", sc.RowsPerPatient)
	}
	nt, err := os.ReadFile(filepath.Join(dir, "network.toml"))
	if err != nil || !bytes.Contains(nt, []byte("[linkage]\nidentifier_system = \""+sys+"\"")) {
		t.Errorf("network.toml: %v\n%s", err, nt)
	}
}

// TestCityShape checks the documented proportions on a larger city.
func TestCityShape(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	residents := 100_000
	if raceEnabled {
		residents = 40_000 // the shares stay within 5 standard errors of the tolerance
	}
	a, err := CityTruth(CityConfig{Residents: residents, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	n := float64(a.Residents)
	for k, want := range cityHospitalShares {
		if got := float64(a.ResidentsByHospitals[k]) / n; got < want-0.01 || got > want+0.01 {
			t.Errorf("share at %d hospitals %.3f, want %.2f", k, got, want)
		}
	}
	for _, h := range a.Hospitals {
		if s := float64(h.Visitors) / float64(h.Patients); s < 0.015 || s > 0.025 {
			t.Errorf("%s: visitors %.3f of patients, want about 0.02", h.Name, s)
		}
	}
	if s := float64(a.Insured) / n; s < 0.84 || s > 0.86 {
		t.Errorf("insured %.3f, want 0.85", s)
	}
	// Diabetes recorded somewhere: about 10% of adults times the 80% seen by
	// a hospital; all ages.
	if s := float64(a.Diabetics) / n; s < 0.06 || s > 0.09 {
		t.Errorf("Q1 %.3f of residents", s)
	}
	if a.ClaimsAboveMax == 0 || float64(a.ClaimsAboveMax) > 0.002*float64(a.Claims) {
		t.Errorf("%d of %d claims above the max: want a few", a.ClaimsAboveMax, a.Claims)
	}
}

// withDefaultsT is withDefaults for tests.
func (c CityConfig) withDefaultsT(t *testing.T) CityConfig {
	t.Helper()
	c, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// BenchmarkCity writes a city of a million residents (go test -bench City
// -benchtime 1x -benchmem ./internal/synth).
func BenchmarkCity(b *testing.B) {
	dir := b.TempDir()
	for b.Loop() {
		a, err := City(CityConfig{Residents: 1_000_000, Seed: 1, Overwrite: true}, dir)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(a.Claims), "claims")
	}
}

// BenchmarkCityTruth generates a million residents without writing.
func BenchmarkCityTruth(b *testing.B) {
	for b.Loop() {
		if _, err := CityTruth(CityConfig{Residents: 1_000_000, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
