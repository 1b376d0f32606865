package synth

// The synthetic city: one population seen by several agencies, for record
// linkage (docs/synth.md, "A synthetic city").

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
)

// DefaultIdentifierSystem is the FHIR identifier system of the city's
// resident identity numbers (CityConfig.IdentifierSystem).
const DefaultIdentifierSystem = "urn:fedstat:synth:resident-id"

// City defaults.
const (
	DefaultCityResidents = 20_000
	DefaultCityHospitals = 4
	// MaxCityHospitals bounds CityConfig.Hospitals.
	MaxCityHospitals = 99
)

// CityRegions are the city's districts (the default CityConfig.Regions): a
// hospital Patient's address.state holds one, so the importer's default
// region rule ("state") gives the region.
var CityRegions = []string{"central", "north", "south", "east", "west", "riverside", "harbour", "hills"}

// The span of the city's events, inclusive: the population is alive on
// CityStart and followed to CityEnd.
var (
	CityStart = cdm.DateFromYMD(2019, time.January, 1)
	CityEnd   = cdm.DateFromYMD(2025, time.December, 31)
)

// ICD-10 codes of the city's conditions (system cdm.SystemICD10).
const (
	ICDDiabetesT2   = "E11" // type 2 diabetes mellitus (the category; records carry E11.x)
	ICDHypertension = "I10" // essential (primary) hypertension
	ICDCOVID19      = "U07.1"
)

// Claims table constants (insurer/claims.toml).
const (
	// ClaimsRowsPerPatient is the claims schema's rows_per_patient: no
	// resident has more claims.
	ClaimsRowsPerPatient = 60
	// ClaimAmountMax is the claims schema's public range of amount (yuan):
	// [0, ClaimAmountMax]. A few claims exceed it; queries clamp them.
	ClaimAmountMax = 100_000
)

// ClaimCategories are the values of the claims table's category column.
var ClaimCategories = []string{"outpatient", "pharmacy", "laboratory", "imaging", "emergency", "inpatient", "dental", "rehabilitation"}

// DeathCauses are the values of the deaths table's cause column (ICD-10).
var DeathCauses = []string{"E11.9", "U07.1", "I21.9", "I64", "I50.9", "I10", "C34.9", "C16.9", "J44.9", "J18.9", "N18.9", "V89.2", "R99"}

// The queries CityAnswers answers, as an analyst writes them on a linked
// network (patient_id is the linked resident).
const (
	CitySQLDiabetics          = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%'"
	CitySQLDiabeticDeaths2023 = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN (SELECT patient_id FROM deaths WHERE death_date BETWEEN '2023-01-01' AND '2023-12-31')"
	CitySQLDiabeticClaims     = "SELECT SUM(CLAMP(amount, 0, 100000)) FROM claims WHERE patient_id IN (SELECT patient_id FROM conditions WHERE code LIKE 'E11%')"
	// CitySQLDiabeticClaimsAllRows is Q3 with every claim row counted: a
	// study query's rows per patient are bounded by WITH max_rows (default
	// 5, the catalogue's MaxRowsPerPatient), not by rows_per_patient alone.
	CitySQLDiabeticClaimsAllRows = CitySQLDiabeticClaims + " WITH max_rows = 60"
	CitySQLDeathsByYear          = "SELECT year(death_date) AS year, COUNT(DISTINCT patient_id) FROM deaths WHERE death_date BETWEEN '2019-01-01' AND '2025-12-31' AND patient_id IN (SELECT patient_id FROM conditions WHERE code LIKE 'E11%') GROUP BY year"
	CitySQLDiabeticsByRegion     = "SELECT region, COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' GROUP BY region"
	CitySQLCOVIDWinter2023       = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = 'U07.1' AND onset_date BETWEEN '2023-11-01' AND '2024-03-31'"
)

// CityConfig configures City.
type CityConfig struct {
	// Residents is the number of residents (each with an identity number).
	// Defaults to DefaultCityResidents when 0; must not be negative.
	Residents int `json:"residents"`
	// Hospitals is the number of hospitals, 1 to MaxCityHospitals.
	// Defaults to DefaultCityHospitals when 0.
	Hospitals int `json:"hospitals"`
	// Seed selects the city: the same configuration gives byte-identical
	// files. Defaults to 0 (itself a valid seed).
	Seed int64 `json:"seed"`
	// IdentifierSystem is the FHIR identifier system of the resident
	// identity number (the network's [linkage] identifier_system). Defaults
	// to DefaultIdentifierSystem.
	IdentifierSystem string `json:"identifier_system"`
	// Regions are the districts residents live in (letters, digits, '_'
	// and '-'). Defaults to CityRegions.
	Regions []string `json:"regions"`
	// Overwrite lets City replace existing files; without it City refuses
	// (ErrExists) before writing anything.
	Overwrite bool `json:"-"`
}

var regionCodeRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (c CityConfig) withDefaults() (CityConfig, error) {
	if c.Residents == 0 {
		c.Residents = DefaultCityResidents
	}
	if c.Residents < 0 || c.Residents > 1e9 {
		return c, fmt.Errorf("%w: Residents must be 1 to 10^9, got %d", ErrBadOptions, c.Residents)
	}
	if c.Hospitals == 0 {
		c.Hospitals = DefaultCityHospitals
	}
	if c.Hospitals < 1 || c.Hospitals > MaxCityHospitals {
		return c, fmt.Errorf("%w: Hospitals must be 1 to %d, got %d", ErrBadOptions, MaxCityHospitals, c.Hospitals)
	}
	if c.IdentifierSystem == "" {
		c.IdentifierSystem = DefaultIdentifierSystem
	}
	if strings.ContainsAny(c.IdentifierSystem, "\"\\|, \t\r\n") {
		return c, fmt.Errorf("%w: identifier system %q: no quotes, backslashes, '|', ',' or spaces", ErrBadOptions, c.IdentifierSystem)
	}
	if len(c.Regions) == 0 {
		c.Regions = CityRegions
	}
	seen := map[string]bool{}
	for _, r := range c.Regions {
		if !regionCodeRE.MatchString(r) || seen[r] {
			return c, fmt.Errorf("%w: region %q: want distinct codes of letters, digits, '_' and '-'", ErrBadOptions, r)
		}
		seen[r] = true
	}
	return c, nil
}

// HospitalStats describes one hospital's files.
type HospitalStats struct {
	// Name is the directory: hospital-1, hospital-2, ...
	Name string `json:"name"`
	// Patients counts the Patient resources, Visitors those of them without
	// a resident identifier.
	Patients int `json:"patients"`
	Visitors int `json:"visitors"`
	// Conditions and Encounters count the other resources.
	Conditions int `json:"conditions"`
	Encounters int `json:"encounters"`
	// Diabetics counts the hospital's patients with an E11 condition: the
	// hospital's own COUNT(DISTINCT patient_id) of CitySQLDiabetics.
	Diabetics int `json:"diabetics"`
}

// CityAnswers are the exact answers of the city's queries with the
// semantics of a linked network: patient_id is the resident (linked by the
// identity number across hospitals, registry and insurer); a visitor
// without an identifier is a resident of its own at its hospital; COUNT
// (DISTINCT) counts each resident once however many hospitals know them;
// SUM(CLAMP(amount, 0, 100000)) clamps each claim row.
type CityAnswers struct {
	// Config is the configuration with its defaults filled in.
	Config CityConfig `json:"config"`
	// Residents, with identity numbers; Visitors, hospital patients
	// without one (each a person of their own).
	Residents int `json:"residents"`
	Visitors  int `json:"visitors"`
	// ResidentsByHospitals[k] counts the residents known to k hospitals
	// (k = 0..3).
	ResidentsByHospitals [4]int `json:"residents_by_hospitals"`
	// Hospitals describes each hospital's files.
	Hospitals []HospitalStats `json:"hospitals"`
	// Deaths is the registry's rows (residents who died).
	Deaths int `json:"deaths"`
	// Insured residents, claims rows, claims above ClaimAmountMax, and
	// residents whose claims were capped at ClaimsRowsPerPatient.
	Insured         int `json:"insured"`
	Claims          int `json:"claims"`
	ClaimsAboveMax  int `json:"claims_above_max"`
	ClaimantsCapped int `json:"claimants_capped"`

	// Diabetics answers CitySQLDiabetics (Q1).
	Diabetics int `json:"diabetics"`
	// DiabeticsNaive is the sum of the hospitals' own distinct counts of
	// Q1 (HospitalStats.Diabetics): what adding unlinked per-node counts
	// gives, counting a resident once per hospital.
	DiabeticsNaive int `json:"diabetics_naive"`
	// DiabeticDeaths2023 answers CitySQLDiabeticDeaths2023 (Q2).
	DiabeticDeaths2023 int `json:"diabetic_deaths_2023"`
	// DiabeticClaimsFen answers CitySQLDiabeticClaims (Q3) in fen
	// (hundredths of a yuan), exactly; DiabeticClaims is it in yuan.
	DiabeticClaimsFen int64 `json:"diabetic_claims_fen"`
	// DiabeticClaimsFirst5Fen is Q3 over the first 5 claim rows of each
	// resident (in file order, by service date): what CitySQLDiabeticClaims
	// evaluates to on the insurer's node today, where a query without WITH
	// max_rows keeps at most 5 rows per patient.
	DiabeticClaimsFirst5Fen int64 `json:"diabetic_claims_first5_fen"`
	// DiabeticDeathsByYear answers CitySQLDeathsByYear (Q4): every year
	// 2019..2025, zeros included.
	DiabeticDeathsByYear map[string]int `json:"diabetic_deaths_by_year"`
	// DiabeticsByRegion answers CitySQLDiabeticsByRegion (Q5): every
	// region, zeros included.
	DiabeticsByRegion map[string]int `json:"diabetics_by_region"`
	// COVIDWinter2023 answers CitySQLCOVIDWinter2023 (Q6).
	COVIDWinter2023 int `json:"covid_winter_2023"`
}

// DiabeticClaims is Q3's answer in yuan.
func (a *CityAnswers) DiabeticClaims() float64 { return float64(a.DiabeticClaimsFen) / 100 }

// CityQuery is one query of answers.json with its exact answer: Value for
// a query without GROUP BY, Groups (label to value) with one.
type CityQuery struct {
	Name   string             `json:"name"`
	SQL    string             `json:"sql"`
	Value  *float64           `json:"value,omitempty"`
	Groups map[string]float64 `json:"groups,omitempty"`
	Note   string             `json:"note,omitempty"`
}

// Queries lists the answers as answers.json writes them.
func (a *CityAnswers) Queries() []CityQuery {
	v := func(x float64) *float64 { return &x }
	g := func(m map[string]int) map[string]float64 {
		out := make(map[string]float64, len(m))
		for k, x := range m {
			out[k] = float64(x)
		}
		return out
	}
	naive := make(map[string]float64, len(a.Hospitals))
	for _, h := range a.Hospitals {
		naive[h.Name] = float64(h.Diabetics)
	}
	return []CityQuery{
		{Name: "Q1", SQL: CitySQLDiabetics, Value: v(float64(a.Diabetics))},
		{Name: "Q1-naive", SQL: CitySQLDiabetics, Value: v(float64(a.DiabeticsNaive)), Groups: naive,
			Note: "without linkage: the sum of each hospital's own distinct count (groups: per hospital); a resident known to several hospitals counts once per hospital"},
		{Name: "Q2", SQL: CitySQLDiabeticDeaths2023, Value: v(float64(a.DiabeticDeaths2023))},
		{Name: "Q3", SQL: CitySQLDiabeticClaims, Value: v(a.DiabeticClaims()), Note: "yuan; every claim row clamped to [0, 100000] and counted (see Q3-all-rows and Q3-first-5-rows)"},
		{Name: "Q3-all-rows", SQL: CitySQLDiabeticClaimsAllRows, Value: v(a.DiabeticClaims()), Note: "Q3 as the query language counts every row (no resident has more than 60 claims)"},
		{Name: "Q3-first-5-rows", SQL: CitySQLDiabeticClaims, Value: v(float64(a.DiabeticClaimsFirst5Fen) / 100),
			Note: "Q3 with the default bound of 5 rows per patient (max_rows): the first 5 claims of each resident in file order"},
		{Name: "Q4", SQL: CitySQLDeathsByYear, Groups: g(a.DiabeticDeathsByYear)},
		{Name: "Q5", SQL: CitySQLDiabeticsByRegion, Groups: g(a.DiabeticsByRegion)},
		{Name: "Q6", SQL: CitySQLCOVIDWinter2023, Value: v(float64(a.COVIDWinter2023))},
	}
}

// City writes a synthetic city into dir and returns the exact answers of
// its queries (also written to dir/answers.json):
//
//	hospital-K/Patient.ndjson, Condition.ndjson, Encounter.ndjson   FHIR R4 Bulk NDJSON
//	registry/deaths.csv, deaths.toml     resident_id,death_date,cause
//	insurer/claims.csv, claims.toml      claim_id,resident_id,service_date,amount,category
//	network.toml                         the catalogue: regions, studies, [linkage]
//	answers.json                         CityAnswers.Queries and the counts
//
// Resident i is drawn from its own random stream seeded from (Seed, i), so
// the files depend only on the configuration (and, as for Generate, on Go's
// floating-point math agreeing to the last bit). It streams: residents are
// generated in chunks on every core and written in order; memory does not
// grow with the city. docs/synth.md describes the model.
func City(cfg CityConfig, dir string) (*CityAnswers, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := newCityGen(cfg)
	out, err := openCityFiles(dir, cfg)
	if err != nil {
		return nil, err
	}
	ans, err := c.run(out.write)
	if cerr := out.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := writeCityMeta(dir, cfg, ans); err != nil {
		return nil, err
	}
	return ans, nil
}

// CityTruth returns the answers City would write for cfg without writing
// anything.
func CityTruth(cfg CityConfig) (*CityAnswers, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return newCityGen(cfg).run(func(*cityChunk) error { return nil })
}

// run generates every chunk in order, passes it to write and adds up the
// answers.
func (c *cityGen) run(write func(*cityChunk) error) (*CityAnswers, error) {
	n := c.cfg.Residents
	nChunks := (n + cityChunkResidents - 1) / cityChunkResidents
	total := newCityTally(c.cfg)
	err := inOrder(nChunks, c.chunk, func(ch *cityChunk) error {
		total.add(&ch.tally)
		err := write(ch)
		select {
		case c.free <- ch:
		default:
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return total.answers(c.cfg), nil
}

// cityChunkResidents is the number of residents a chunk holds.
const cityChunkResidents = 4096

// The files a city writes, by index in cityFiles.files.
const (
	fileDeaths = iota
	fileClaims
	fileHospitals // then 3 a hospital: Patient, Condition, Encounter
)

var hospitalFiles = [3]string{"Patient.ndjson", "Condition.ndjson", "Encounter.ndjson"}

const (
	deathsHeader = "resident_id,death_date,cause\n"
	claimsHeader = "claim_id,resident_id,service_date,amount,category\n"
)

// cityPaths lists the data files of a city in dir, in file index order.
func cityPaths(dir string, hospitals int) []string {
	paths := []string{filepath.Join(dir, "registry", "deaths.csv"), filepath.Join(dir, "insurer", "claims.csv")}
	for h := range hospitals {
		for _, f := range hospitalFiles {
			paths = append(paths, filepath.Join(dir, hospitalDir(h), f))
		}
	}
	return paths
}

func cityMetaPaths(dir string) []string {
	return []string{
		filepath.Join(dir, "registry", "deaths.toml"), filepath.Join(dir, "insurer", "claims.toml"),
		filepath.Join(dir, "network.toml"), filepath.Join(dir, "answers.json"),
	}
}

func hospitalDir(h int) string { return "hospital-" + strconv.Itoa(h+1) }

type cityFiles struct {
	files []*os.File
	bufs  []*bufio.Writer
}

// openCityFiles creates the data files. Without cfg.Overwrite it refuses,
// before creating anything, when one of the city's files exists.
func openCityFiles(dir string, cfg CityConfig) (*cityFiles, error) {
	paths := cityPaths(dir, cfg.Hospitals)
	if !cfg.Overwrite {
		for _, p := range append(paths, cityMetaPaths(dir)...) {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%w: %s", ErrExists, p)
			}
		}
	}
	out := &cityFiles{}
	for i, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			out.close()
			return nil, fmt.Errorf("synth: %w", err)
		}
		f, err := createFile(p, cfg.Overwrite)
		if err != nil {
			out.close()
			return nil, err
		}
		out.files = append(out.files, f)
		out.bufs = append(out.bufs, bufio.NewWriterSize(f, 256<<10))
		switch i {
		case fileDeaths:
			out.bufs[i].WriteString(deathsHeader)
		case fileClaims:
			out.bufs[i].WriteString(claimsHeader)
		}
	}
	return out, nil
}

func createFile(p string, overwrite bool) (*os.File, error) {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(p, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: %s", ErrExists, p)
	}
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	return f, nil
}

func (o *cityFiles) write(ch *cityChunk) error {
	for i, b := range ch.bufs {
		if _, err := o.bufs[i].Write(b); err != nil {
			return fmt.Errorf("synth: write %s: %w", o.files[i].Name(), err)
		}
	}
	return nil
}

func (o *cityFiles) close() error {
	var first error
	for i, f := range o.files {
		if err := o.bufs[i].Flush(); err != nil && first == nil {
			first = err
		}
		if err := f.Sync(); err != nil && first == nil {
			first = err
		}
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	o.files, o.bufs = nil, nil
	if first != nil {
		return fmt.Errorf("synth: %w", first)
	}
	return nil
}

// writeCityMeta writes the schemas, network.toml and answers.json.
func writeCityMeta(dir string, cfg CityConfig, ans *CityAnswers) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	paths := cityMetaPaths(dir)
	aj, err := json.MarshalIndent(struct {
		*CityAnswers
		Queries []CityQuery `json:"queries"`
	}{ans, ans.Queries()}, "", "  ")
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	texts := []string{
		DeathsSchema(), ClaimsSchema(),
		NetworkTOML(cfg, filepath.Join(abs, "registry", "deaths.toml"), filepath.Join(abs, "insurer", "claims.toml")),
		string(aj) + "\n",
	}
	for i, p := range paths {
		f, err := createFile(p, cfg.Overwrite)
		if err != nil {
			return err
		}
		_, err = f.WriteString(texts[i])
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	return nil
}

// DeathsSchema is the study schema (TOML, cdm.ParseStudySchema) of the
// registry's deaths table.
func DeathsSchema() string {
	return `# Civil registry deaths of the synthetic city (fedstat synth city).
name = "deaths"
id = "resident_id"
rows_per_patient = 1
doc = "Civil registry: one row per deceased resident, keyed by the resident identity number"

[[columns]]
name = "death_date"
type = "date"
doc = "date of death (2019-2025)"

[[columns]]
name = "cause"
type = "string"
values = ` + tomlStrings(DeathCauses) + `
doc = "underlying cause of death, ICD-10 code"
`
}

// ClaimsSchema is the study schema (TOML) of the insurer's claims table.
// claim_id is in the CSV but not in the schema (it is not queried).
func ClaimsSchema() string {
	return `# Insurer claims of the synthetic city (fedstat synth city).
name = "claims"
id = "resident_id"
rows_per_patient = ` + strconv.Itoa(ClaimsRowsPerPatient) + `
doc = "Health insurance claims, keyed by the resident identity number"

[[columns]]
name = "service_date"
type = "date"
doc = "date of the service claimed"

[[columns]]
name = "amount"
type = "float"
min = 0
max = ` + strconv.Itoa(ClaimAmountMax) + `
doc = "amount claimed, yuan; a few claims exceed the range and are clamped by queries"

[[columns]]
name = "category"
type = "string"
values = ` + tomlStrings(ClaimCategories) + `
doc = "kind of service"
`
}

// NetworkTOML is the catalogue snippet of the city's network: the keys the
// coordinator and every node must share. deaths and claims are the paths of
// the study schemas.
func NetworkTOML(cfg CityConfig, deaths, claims string) string {
	maxNodes := min(cfg.Hospitals, 3) + 2
	return `# Network catalogue of the synthetic city (fedstat synth city): put these keys,
# identical, in the coordinator's and every node's configuration.
# Nodes: hospital-1..hospital-` + strconv.Itoa(cfg.Hospitals) + ` (FHIR, region rule "state"), registry (study deaths),
# insurer (study claims).
regions = ` + tomlStrings(cfg.Regions) + `
studies = ` + tomlStrings([]string{deaths, claims}) + `
# A resident may be known to up to ` + strconv.Itoa(min(cfg.Hospitals, 3)) + ` hospitals, the registry and the insurer.
max_nodes_per_patient = ` + strconv.Itoa(maxNodes) + `

[linkage]
identifier_system = ` + strconv.Quote(cfg.IdentifierSystem) + `
`
}

func tomlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// cityTally adds up the answers of a chunk, then of the city.
type cityTally struct {
	residents, visitors                                int
	byHospitals                                        [4]int
	patients, visitorsAt, conditions, encounters, dmAt []int
	deaths, insured, claims, claimsAbove, capped       int
	dm, dmDeaths2023, covidWinter                      int
	dmClaimsFen, dmClaims5Fen                          int64
	dmDeathsByYear                                     [7]int // 2019..2025
	dmByRegion                                         []int
}

func newCityTally(cfg CityConfig) cityTally {
	h := cfg.Hospitals
	return cityTally{
		patients: make([]int, h), visitorsAt: make([]int, h), conditions: make([]int, h),
		encounters: make([]int, h), dmAt: make([]int, h), dmByRegion: make([]int, len(cfg.Regions)),
	}
}

func (t *cityTally) reset() {
	patients, visitorsAt, conditions, encounters, dmAt, dmByRegion := t.patients, t.visitorsAt, t.conditions, t.encounters, t.dmAt, t.dmByRegion
	for _, s := range [][]int{patients, visitorsAt, conditions, encounters, dmAt, dmByRegion} {
		clear(s)
	}
	*t = cityTally{patients: patients, visitorsAt: visitorsAt, conditions: conditions, encounters: encounters, dmAt: dmAt, dmByRegion: dmByRegion}
}

func (t *cityTally) add(o *cityTally) {
	t.residents += o.residents
	t.visitors += o.visitors
	for k := range t.byHospitals {
		t.byHospitals[k] += o.byHospitals[k]
	}
	for h := range t.patients {
		t.patients[h] += o.patients[h]
		t.visitorsAt[h] += o.visitorsAt[h]
		t.conditions[h] += o.conditions[h]
		t.encounters[h] += o.encounters[h]
		t.dmAt[h] += o.dmAt[h]
	}
	t.deaths += o.deaths
	t.insured += o.insured
	t.claims += o.claims
	t.claimsAbove += o.claimsAbove
	t.capped += o.capped
	t.dm += o.dm
	t.dmDeaths2023 += o.dmDeaths2023
	t.covidWinter += o.covidWinter
	t.dmClaimsFen += o.dmClaimsFen
	t.dmClaims5Fen += o.dmClaims5Fen
	for y := range t.dmDeathsByYear {
		t.dmDeathsByYear[y] += o.dmDeathsByYear[y]
	}
	for r := range t.dmByRegion {
		t.dmByRegion[r] += o.dmByRegion[r]
	}
}

func (t *cityTally) answers(cfg CityConfig) *CityAnswers {
	a := &CityAnswers{
		Config: cfg, Residents: t.residents, Visitors: t.visitors, ResidentsByHospitals: t.byHospitals,
		Deaths: t.deaths, Insured: t.insured, Claims: t.claims, ClaimsAboveMax: t.claimsAbove, ClaimantsCapped: t.capped,
		Diabetics: t.dm, DiabeticDeaths2023: t.dmDeaths2023, DiabeticClaimsFen: t.dmClaimsFen, DiabeticClaimsFirst5Fen: t.dmClaims5Fen, COVIDWinter2023: t.covidWinter,
		DiabeticDeathsByYear: map[string]int{}, DiabeticsByRegion: map[string]int{},
	}
	for h := range t.patients {
		a.Hospitals = append(a.Hospitals, HospitalStats{Name: hospitalDir(h), Patients: t.patients[h], Visitors: t.visitorsAt[h],
			Conditions: t.conditions[h], Encounters: t.encounters[h], Diabetics: t.dmAt[h]})
		a.DiabeticsNaive += t.dmAt[h]
	}
	for y, n := range t.dmDeathsByYear {
		a.DiabeticDeathsByYear[strconv.Itoa(CityStart.Year()+y)] = n
	}
	for r, n := range t.dmByRegion {
		a.DiabeticsByRegion[cfg.Regions[r]] = n
	}
	return a
}

// roundFen converts yuan to whole fen.
func roundFen(yuan float64) int64 { return int64(math.Round(yuan * 100)) }
