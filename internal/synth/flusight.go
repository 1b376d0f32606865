package synth

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
)

// ErrBadFluSight is returned for FluSight files that cannot be read as
// documented; the error names the file and line.
var ErrBadFluSight = errors.New("synth: bad FluSight data")

// FluLocation is one row of FluSight's auxiliary-data/locations.csv.
type FluLocation struct {
	// Code is the region code the converter uses: the 2-letter postal
	// abbreviation ("CA", "DC", "PR"), or the FIPS code when the file has
	// no abbreviation for the location. "US" is the national total.
	Code string
	// FIPS is the 2-digit state FIPS code ("06"), or "US".
	FIPS string
	// Name is the location's name ("California").
	Name string
	// Population is the population FluSight uses for its rates.
	Population int64
}

// FluLocations reads FluSight's locations file (columns abbreviation,
// location, location_name, population, others ignored) and returns its
// locations in file order, the national "US" row included. It is how a
// demo or a test gets population denominators for incidence rates.
func FluLocations(path string) ([]FluLocation, error) {
	rows, err := readCSV(path, []string{"abbreviation", "location", "location_name", "population"})
	if err != nil {
		return nil, err
	}
	out := make([]FluLocation, 0, len(rows))
	for _, r := range rows {
		pop, err := strconv.ParseInt(r.fields[3], 10, 64)
		if err != nil || pop < 0 {
			return nil, fmt.Errorf("%w: %s:%d: population %q is not a count", ErrBadFluSight, path, r.line, r.fields[3])
		}
		code := r.fields[0]
		if code == "" {
			code = r.fields[1]
		}
		out = append(out, FluLocation{Code: code, FIPS: r.fields[1], Name: r.fields[2], Population: pop})
	}
	return out, nil
}

// FluPopulations returns the population of every location in FluSight's
// locations file by region code (FluLocation.Code), the national "US" total
// included.
func FluPopulations(path string) (map[string]int64, error) {
	locs, err := FluLocations(path)
	if err != nil {
		return nil, err
	}
	m := make(map[string]int64, len(locs))
	for _, l := range locs {
		m[l.Code] = l.Population
	}
	return m, nil
}

// FluOptions configure FluSight.
type FluOptions struct {
	// Seed selects the birth dates, sexes and days within the week. The
	// same seed gives identical records. Defaults to 0.
	Seed int64
	// From and To keep only the weeks whose week-ending date lies in
	// [From, To]. Each defaults (when 0 or cdm.NoDate) to no bound.
	From, To cdm.Date
	// Locations keeps only these locations, by region code or FIPS code.
	// Defaults to every state-level location (never the "US" total).
	Locations []string
	// IDPrefix starts every patient id: IDPrefix + region code + "-" + a
	// number counted per region (flu-CA-1). Defaults to "flu-".
	IDPrefix string
}

// fluAgeBands is the age distribution of influenza hospital admissions
// (FluSurv-NET, 2022-23, roughly): bands [lo, hi) in years and shares.
var fluAgeBands = []struct {
	lo, hi float64
	share  float64
}{
	{0, 5, 0.05}, {5, 18, 0.05}, {18, 50, 0.14}, {50, 65, 0.20}, {65, 75, 0.22}, {75, 85, 0.20}, {85, 100, 0.14},
}

// FluSight converts FluSight's weekly laboratory-confirmed influenza hospital
// admissions (csvPath: target-data/target-hospital-admissions.csv, columns
// date (week ending, a Saturday), location (FIPS), location_name, value,
// weekly_rate) into one node's worth of records per location, keyed by
// region code (FluLocation.Code from locationsPath; the FIPS code for a
// location missing there).
//
// Every weekly count becomes that many patients, each with exactly one
// influenza condition (SNOMED CT 6142004, id <patient>-c1) whose onset lies
// in that week (the 7 days ending on the date) and which abates 5-14 days
// later, and with a birth date and sex drawn from the age distribution of
// influenza admissions (57% aged 65+) and 52% female. Region is the
// location's code. The national "US" row is never converted; "NA" values are
// weeks without data (no patients). Rows are taken in (location, date) order,
// so ids and draws depend only on the data and FluOptions, not on the order
// of the file.
//
// The whole file (2022-02 to 2026-06) is about 1.4 million patients; use
// FluOptions.From/To or Locations to convert less.
func FluSight(csvPath, locationsPath string, o FluOptions) (map[string]*cdm.Records, error) {
	if o.IDPrefix == "" {
		o.IDPrefix = "flu-"
	}
	if o.From == 0 || o.From == cdm.NoDate {
		o.From = math.MinInt32 + 1
	}
	if o.To == 0 || o.To == cdm.NoDate {
		o.To = math.MaxInt32
	}
	locs, err := FluLocations(locationsPath)
	if err != nil {
		return nil, err
	}
	codeOf := map[string]string{} // FIPS -> code
	for _, l := range locs {
		codeOf[l.FIPS] = l.Code
	}
	var keep map[string]bool
	if len(o.Locations) > 0 {
		keep = map[string]bool{}
		for _, x := range o.Locations {
			keep[x] = true
		}
	}

	rows, err := readCSV(csvPath, []string{"date", "location", "value"})
	if err != nil {
		return nil, err
	}
	type week struct {
		end   cdm.Date
		fips  string
		code  string
		count int
	}
	var weeks []week
	for _, r := range rows {
		fips := r.fields[1]
		if fips == "US" {
			continue
		}
		code := codeOf[fips]
		if code == "" {
			code = fips
		}
		if keep != nil && !keep[code] && !keep[fips] {
			continue
		}
		end, err := cdm.ParseDate(r.fields[0])
		if err != nil || len(r.fields[0]) != 10 {
			return nil, fmt.Errorf("%w: %s:%d: date %q: want YYYY-MM-DD", ErrBadFluSight, csvPath, r.line, r.fields[0])
		}
		if end < o.From || end > o.To {
			continue
		}
		if r.fields[2] == "NA" || r.fields[2] == "" {
			continue
		}
		v, err := strconv.ParseFloat(r.fields[2], 64)
		if err != nil || v < 0 || v != math.Trunc(v) || v > 1e7 {
			return nil, fmt.Errorf("%w: %s:%d: value %q is not a count", ErrBadFluSight, csvPath, r.line, r.fields[2])
		}
		weeks = append(weeks, week{end: end, fips: fips, code: code, count: int(v)})
	}
	sort.Slice(weeks, func(i, j int) bool {
		if weeks[i].fips != weeks[j].fips {
			return weeks[i].fips < weeks[j].fips
		}
		return weeks[i].end < weeks[j].end
	})
	for i := 1; i < len(weeks); i++ {
		if weeks[i].fips == weeks[i-1].fips && weeks[i].end == weeks[i-1].end {
			return nil, fmt.Errorf("%w: %s: location %s has two rows for the week ending %s", ErrBadFluSight, csvPath, weeks[i].fips, weeks[i].end)
		}
	}

	out := map[string]*cdm.Records{}
	next := map[string]int{}
	src := rand.NewPCG(0, 0)
	rng := rand.New(src)
	for _, w := range weeks {
		recs := out[w.code]
		if recs == nil {
			recs = &cdm.Records{}
			out[w.code] = recs
		}
		src.Seed(splitmix64(uint64(o.Seed)^0xf105), splitmix64(hash64("fips:"+w.fips)^uint64(uint32(w.end))))
		for range w.count {
			next[w.code]++
			pid := o.IDPrefix + w.code + "-" + strconv.Itoa(next[w.code])
			onset := w.end - cdm.Date(rng.IntN(7))
			u := rng.Float64()
			band := fluAgeBands[len(fluAgeBands)-1]
			for _, b := range fluAgeBands {
				if u < b.share {
					band = b
					break
				}
				u -= b.share
			}
			age := band.lo + rng.Float64()*(band.hi-band.lo)
			sex := cdm.SexMale
			if rng.Float64() < 0.52 {
				sex = cdm.SexFemale
			}
			recs.Patients = append(recs.Patients, cdm.Patient{
				ID: pid, BirthDate: onset - cdm.Date(age*daysPerYear), Sex: sex, Region: w.code, DeathDate: cdm.NoDate,
			})
			recs.Conditions = append(recs.Conditions, cdm.Condition{
				ID: pid + "-c1", PatientID: pid, Code: CodeInfluenza, System: cdm.SystemSNOMED,
				Onset: onset, Abatement: onset + cdm.Date(5+rng.IntN(10)),
			})
		}
	}
	return out, nil
}

type csvRow struct {
	line   int
	fields []string // in the order of the wanted columns
}

// readCSV reads a CSV file with a header and returns the wanted columns of
// every row, by header name.
func readCSV(path string, want []string) ([]csvRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: header: %w", ErrBadFluSight, path, err)
	}
	idx := make([]int, len(want))
	for i, w := range want {
		idx[i] = -1
		for j, h := range header {
			if strings.TrimPrefix(strings.TrimSpace(h), "\ufeff") == w {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			return nil, fmt.Errorf("%w: %s: no column %q (have %s)", ErrBadFluSight, path, w, strings.Join(header, ","))
		}
	}
	var out []csvRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadFluSight, path, err)
		}
		r := csvRow{line: line, fields: make([]string, len(want))}
		for i, j := range idx {
			r.fields[i] = strings.TrimSpace(rec[j])
		}
		out = append(out, r)
	}
}

// weekEnding is a helper for tests and callers: the Saturday ending the
// FluSight week that contains d.
func weekEnding(d cdm.Date) cdm.Date {
	wd := d.Time().Weekday()
	return d + cdm.Date((time.Saturday-wd+7)%7)
}
