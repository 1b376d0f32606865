package eval_test

import (
	"context"
	"slices"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/eval"
)

const (
	icd10cm  = "http://hl7.org/fhir/sid/icd-10-cm"
	localOID = "urn:oid:1.2.3.4"
)

// codedFixture: three patients whose diabetes is coded [local L1, ICD-10-CM
// E11.9, SNOMED 44054006] in three different orders (as three EHR exports
// give it), one coded ICD-10-CM E11.9 only, one coded in SNOMED only, and
// one whose local code is "E11.9" (a local system that reuses the string).
func codedFixture(t *testing.T) *cdm.Tables {
	t.Helper()
	b := cdm.NewBuilder()
	orders := [][]cdm.Coding{
		{{System: localOID, Code: "L1"}, {System: icd10cm, Code: "E11.9"}, {System: cdm.SystemSNOMED, Code: diabetes}},
		{{System: cdm.SystemSNOMED, Code: diabetes}, {System: localOID, Code: "L1"}, {System: icd10cm, Code: "E11.9"}},
		{{System: icd10cm, Code: "E11.9"}, {System: cdm.SystemSNOMED, Code: diabetes}, {System: localOID, Code: "L1"}},
		{{System: icd10cm, Code: "E11.9"}},
		{{System: cdm.SystemSNOMED, Code: diabetes}},
		{{System: localOID, Code: "E11.9"}},
	}
	for i, cs := range orders {
		id := string(rune('a' + i))
		b.AddPatient(&cdm.Patient{ID: id, BirthDate: d("1970-01-01"), Sex: cdm.SexFemale, DeathDate: cdm.NoDate})
		prim, others, ok := cdm.CodedRecord(slices.Clone(cs))
		if !ok {
			t.Fatal("no coding")
		}
		b.AddCondition(&cdm.Condition{ID: id, PatientID: id, Code: prim.Code, System: prim.System, Codings: others,
			Onset: d("2020-01-01"), Abatement: cdm.NoDate})
	}
	return b.Build()
}

func TestMultiCodedConditions(t *testing.T) {
	tables := codedFixture(t)
	cases := []struct {
		sql  string
		want []float64
	}{
		{"SELECT COUNT(*) FROM conditions WHERE code = '44054006'", []float64{4}},
		{"SELECT COUNT(*) FROM conditions WHERE code = 'E11.9'", []float64{5}},
		{"SELECT COUNT(*) FROM conditions WHERE code = 'L1'", []float64{3}},
		// One row per record: a record with both codes counts once.
		{"SELECT COUNT(*) FROM conditions WHERE code IN ('44054006', 'E11.9')", []float64{6}},
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code IN ('44054006', 'E11.9', 'L1')", []float64{6}},
		// Negation: no coding matches.
		{"SELECT COUNT(*) FROM conditions WHERE code <> '44054006'", []float64{2}},
		{"SELECT COUNT(*) FROM conditions WHERE code NOT IN ('E11.9')", []float64{1}},
		{"SELECT COUNT(*) FROM conditions WHERE NOT (code = 'E11.9')", []float64{1}},
		// system alone: any coding of that system.
		{"SELECT COUNT(*) FROM conditions WHERE system = '" + icd10cm + "'", []float64{4}},
		{"SELECT COUNT(*) FROM conditions WHERE system = '" + localOID + "'", []float64{4}},
		// code AND system: on the same coding (the local "E11.9" is not ICD-10-CM).
		{"SELECT COUNT(*) FROM conditions WHERE code = 'E11.9' AND system = '" + icd10cm + "'", []float64{4}},
		{"SELECT COUNT(*) FROM conditions WHERE system = '" + localOID + "' AND onset_date >= '2019-01-01' AND code = 'E11.9'", []float64{1}},
		{"SELECT COUNT(*) FROM conditions WHERE code = '44054006' AND system = '" + icd10cm + "'", []float64{0}},
		{"SELECT COUNT(*) FROM conditions WHERE NOT (code = 'E11.9' AND system = '" + icd10cm + "')", []float64{2}},
		{"SELECT COUNT(*) FROM conditions WHERE (code = 'L1' AND system = '" + localOID + "') OR (code = 'E11.9' AND system = '" + localOID + "')", []float64{4}},
		// Cohorts see every coding too.
		{"SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM conditions WHERE code = 'E11.9' AND system = '" + icd10cm + "')", []float64{4}},
		// Code families and ICD-10 forms see every coding too.
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%'", []float64{5}},
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%' AND system = 'ICD-10-CM'", []float64{4}},
		{"SELECT COUNT(*) FROM conditions WHERE code NOT LIKE 'E11%'", []float64{1}},
		{"SELECT COUNT(*) FROM conditions WHERE code = 'E119'", []float64{5}},
		{"SELECT code, COUNT(*) FROM conditions WHERE code IN ('E119', '44054006') GROUP BY code", []float64{5, 1}},
		// GROUP BY code: each row in one group, the first listed label it carries.
		{"SELECT code, COUNT(*) FROM conditions WHERE code IN ('44054006', 'E11.9') GROUP BY code", []float64{4, 2}},
		{"SELECT code, COUNT(*) FROM conditions WHERE code IN ('E11.9', '44054006') GROUP BY code", []float64{5, 1}},
		{"SELECT code, COUNT(*) FROM conditions WHERE code IN ('L1', 'E11.9') GROUP BY code", []float64{3, 2}},
	}
	for _, c := range cases {
		e, err := eval.Evaluate(context.Background(), build(t, c.sql), tables)
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		if got := e.Values(); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.sql, got, c.want)
		}
	}
}

// TestMultiCodedOrderFree: the three orders give the same row.
func TestMultiCodedOrderFree(t *testing.T) {
	tables := codedFixture(t)
	tb, _ := tables.Table(cdm.TableConditions)
	code, sys, other := tb.Strings["code"], tb.Strings["system"], tb.Strings["codings"]
	for r := 1; r < 3; r++ {
		if code.IDs[r] != code.IDs[0] || sys.IDs[r] != sys.IDs[0] || other.IDs[r] != other.IDs[0] {
			t.Errorf("row %d differs from row 0", r)
		}
	}
	if got := code.Dict.Value(code.IDs[0]); got != diabetes {
		t.Errorf("primary code %s, want the SNOMED one", got)
	}
}
