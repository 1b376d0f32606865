package eval_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/eval"
)

// bigNode returns a node with nPatients patients and nRows condition rows
// over 1,000 codes (the conditions table is built directly in columnar form
// to keep the set-up short).
func bigNode(nPatients, nRows int) *cdm.Tables {
	b := cdm.NewBuilder()
	for i := 0; i < nPatients; i++ {
		b.AddPatient(&cdm.Patient{ID: fmt.Sprint(i), BirthDate: cdm.DateFromYMD(1940+i%70, 1, 1), Sex: cdm.Sex(i % 4), Region: "north"})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	t := &cdm.Table{Name: cdm.TableConditions, Rows: nRows, Patient: make([]uint32, nRows),
		Strings: map[string]*cdm.StringColumn{}, Dates: map[string][]cdm.Date{}, Numbers: map[string][]float64{}}
	codes := &cdm.StringColumn{IDs: make([]uint32, nRows), Dict: cdm.NewDict()}
	for i := 0; i < 1000; i++ {
		codes.Dict.Put(fmt.Sprint(38341000 + i))
	}
	onset := make([]cdm.Date, nRows)
	start := cdm.DateFromYMD(2015, 1, 1)
	for i := 0; i < nRows; i++ {
		t.Patient[i] = uint32(rng.IntN(nPatients))
		codes.IDs[i] = uint32(rng.IntN(1000))
		onset[i] = start + cdm.Date(rng.IntN(3000))
	}
	t.Strings["code"] = codes
	t.Strings["system"] = &cdm.StringColumn{IDs: make([]uint32, nRows), Dict: func() *cdm.Dict { d := cdm.NewDict(); d.Put(""); return d }()}
	t.Dates["onset_date"] = onset
	t.Dates["abatement_date"] = make([]cdm.Date, nRows)
	b.AddTable(t)
	return b.Build()
}

// BenchmarkCountDistinct10M: COUNT(DISTINCT patient_id) with one code filter
// over 10 million condition rows (1 million patients).
func BenchmarkCountDistinct10M(b *testing.B) {
	tb := bigNode(1_000_000, 10_000_000)
	p := build(b, "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'")
	b.ResetTimer()
	for b.Loop() {
		if _, err := eval.Evaluate(context.Background(), p, tb); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWeeklyByRegion10M: DESIGN.md query 3 shape over 10 million rows.
func BenchmarkWeeklyByRegion10M(b *testing.B) {
	tb := bigNode(1_000_000, 10_000_000)
	p := build(b, `SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions
	  WHERE code = '38341003' AND onset_date BETWEEN '2016-01-01' AND '2016-12-31' GROUP BY week, region`)
	b.ResetTimer()
	for b.Loop() {
		if _, err := eval.Evaluate(context.Background(), p, tb); err != nil {
			b.Fatal(err)
		}
	}
}

// bigCodedNode is bigNode where every third row also carries an ICD-10-CM
// coding (one of 100) in its codings column, as a hospital export coded in
// SNOMED CT and ICD-10-CM gives.
func bigCodedNode(nPatients, nRows int) *cdm.Tables {
	t := bigNode(nPatients, nRows)
	tb, _ := t.Table(cdm.TableConditions)
	col := &cdm.StringColumn{IDs: make([]uint32, nRows), Dict: cdm.NewDict()}
	col.Dict.Put("")
	for i := range 100 {
		col.Dict.Put(cdm.FormatCodings([]cdm.Coding{{System: cdm.SystemICD10CM, Code: fmt.Sprintf("E11.%d", i)}}))
	}
	for r := 0; r < nRows; r += 3 {
		col.IDs[r] = uint32(1 + r%100)
	}
	tb.Strings["codings"] = col
	tb.Codings = make([][]cdm.Coding, col.Dict.Len())
	for id, v := range col.Dict.Values() {
		tb.Codings[id], _ = cdm.ParseCodings(v)
	}
	return t
}

// BenchmarkCountDistinctCoded10M: BenchmarkCountDistinct10M on rows with
// several codings, matching the primary code (code) and another coding
// (icd); a code AND system pair on the same coding (pair).
func BenchmarkCountDistinctCoded10M(b *testing.B) {
	tb := bigCodedNode(1_000_000, 10_000_000)
	for name, sql := range map[string]string{
		"code": "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'",
		"icd":  "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = 'E11.9'",
		"pair": "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = 'E11.9' AND system = 'http://hl7.org/fhir/sid/icd-10-cm'",
	} {
		p := build(b, sql)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := eval.Evaluate(context.Background(), p, tb); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
