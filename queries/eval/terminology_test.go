package eval_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/parse"
	"github.com/fedstat/fedstat/queries/plan"
)

// icdFixture: diagnoses in ICD-10 (canonical, as importers store them),
// SNOMED CT and a local system, over five patients.
//
//	q1: E11.9 (ICD-10-CM), 44054006 (SNOMED)
//	q2: E11.65, E10.9
//	q3: E11 (category only), J45.909
//	q4: E119X (a local code that only looks like ICD-10), E13.9
//	q5: I10
func icdFixture() *cdm.Tables {
	b := cdm.NewBuilder()
	for _, id := range []string{"q1", "q2", "q3", "q4", "q5"} {
		b.AddPatient(&cdm.Patient{ID: id, BirthDate: d("1970-01-01"), Sex: cdm.SexFemale, Region: "north", DeathDate: cdm.NoDate})
	}
	for i, c := range []struct{ p, sys, code string }{
		{"q1", terminology.ICD10CM, "E11.9"}, {"q1", terminology.SNOMED, "44054006"},
		{"q2", terminology.ICD10CM, "E11.65"}, {"q2", terminology.ICD10CM, "E10.9"},
		{"q3", terminology.ICD10, "E11"}, {"q3", terminology.ICD10CM, "J45.909"},
		{"q4", "urn:oid:1.2.3.4", "E119X"}, {"q4", terminology.ICD10CM, "E13.9"},
		{"q5", terminology.ICD10, "I10"},
	} {
		b.AddCondition(&cdm.Condition{ID: string(rune('a' + i)), PatientID: c.p, Code: c.code, System: c.sys, Onset: d("2020-01-01"), Abatement: cdm.NoDate})
	}
	return b.Build()
}

func diabetesValueSets(t *testing.T) []terminology.ValueSet {
	t.Helper()
	v, err := terminology.Parse("diabetes.json", "diabetes", []byte(`{"resourceType":"ValueSet","name":"diabetes","compose":{
 "include":[{"system":"http://snomed.info/sct","concept":[{"code":"44054006"}]},
            {"system":"http://hl7.org/fhir/sid/icd-10-cm","filter":[{"property":"concept","op":"is-a","value":"E11"},{"property":"concept","op":"is-a","value":"E10"}]}],
 "exclude":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","concept":[{"code":"E10.9"}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	return []terminology.ValueSet{*v}
}

// TestCodeFamiliesAndValueSets: `code LIKE 'E11%'` is the family of E11 on
// canonical codes, literals match in every ICD-10 form, and `IN VALUESET`
// matches a value set's codes and families minus its exclusions, all with
// exact counts.
func TestCodeFamiliesAndValueSets(t *testing.T) {
	tabs := icdFixture()
	cat := catalogue()
	cat.ValueSets = diabetesValueSets(t)
	for _, c := range []struct {
		sql  string
		want float64
	}{
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%'", 3}, // q1 E11.9, q2 E11.65, q3 E11 (not q4's local E119X: stored as written, it starts E119)
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11.6%'", 1},                 // E11.65
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E116%'", 1},                  // undotted head
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'e11%'", 3},                   // case
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E1%'", 6},                    // E10, E11, E13 families and the local E119X
		{"SELECT COUNT(*) FROM conditions WHERE code NOT LIKE 'E1%'", 3},                // 44054006, J45.909, I10
		{"SELECT COUNT(*) FROM conditions WHERE code = 'E119'", 1},                      // undotted literal finds E11.9
		{"SELECT COUNT(*) FROM conditions WHERE code = 'E119X'", 1},                     // the local code matches itself
		{"SELECT COUNT(*) FROM conditions WHERE code IN ('e11.9', 'I10')", 2},           // forms in IN lists
		{"SELECT COUNT(*) FROM conditions WHERE code IN VALUESET 'diabetes'", 4},        // 44054006, E11.9, E11.65, E11 (E10.9 excluded)
		{"SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code IN VALUESET 'DIABETES'", 3},
		{"SELECT COUNT(*) FROM conditions WHERE code NOT IN VALUESET 'diabetes'", 5},
		{"SELECT COUNT(*) FROM patients WHERE patient_id IN (SELECT patient_id FROM conditions WHERE code IN VALUESET 'diabetes')", 3},
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%' AND system = 'http://hl7.org/fhir/sid/icd-10-cm'", 2},
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%' AND system = 'ICD-10-CM'", 2}, // a short name
		{"SELECT COUNT(*) FROM conditions WHERE system IN ('icd10', 'SNOMED')", 3},             // I10, E11, 44054006
	} {
		p, err := plan.Build(plan.Request{SQL: c.sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, cat)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		e, err := eval.Evaluate(context.Background(), p, tabs)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if got := e.Values()[0]; got != c.want {
			t.Errorf("%s: %v, want %v", c.sql, got, c.want)
		}
	}
}

func TestTerminologyErrors(t *testing.T) {
	cat := catalogue()
	cat.ValueSets = diabetesValueSets(t)
	for _, c := range []struct{ sql, want string }{
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE '%11'", "column 49: LIKE takes a code family written 'head%'"},
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E1_%'", "'E1_%' is not one"},
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11'", "'E11' is not one"},
		{"SELECT COUNT(*) FROM conditions WHERE code LIKE 11", "expected a 'quoted string' after LIKE"},
		{"SELECT COUNT(*) FROM conditions WHERE onset_date LIKE '2020%'", "LIKE needs a text column; onset_date is not text"},
		{"SELECT COUNT(*) FROM conditions WHERE code IN VALUESET 'diabetis'", "unknown value set 'diabetis'; did you mean 'diabetes'? (the catalogue has diabetes)"},
		{"SELECT COUNT(*) FROM conditions WHERE system IN VALUESET 'diabetes'", "IN VALUESET matches codes; system is not a code column"},
		{"SELECT COUNT(*) FROM patients WHERE region IN VALUESET 'diabetes'", "region is not a code column"},
		{"SELECT COUNT(*) FROM conditions WHERE code IN VALUESET diabetes", "expected a 'quoted string' after VALUESET"},
	} {
		_, err := plan.Build(plan.Request{SQL: c.sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, cat)
		var pe *parse.Error
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want a located error with ...%s...", c.sql, err, c.want)
		}
	}
	// Without value sets in the catalogue the error says where they come from.
	_, err := plan.Build(plan.Request{SQL: "SELECT COUNT(*) FROM conditions WHERE code IN VALUESET 'x'", Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, catalogue())
	if err == nil || !strings.Contains(err.Error(), "value_sets in the daemons' config") {
		t.Errorf("no value sets: %v", err)
	}
}

// TestValueSetInFingerprint: a node that expands a value set's name to
// other codes than the coordinator plans a different query, and the plan
// fingerprint (which the evaluate request carries) tells them apart.
func TestValueSetInFingerprint(t *testing.T) {
	sql := "SELECT COUNT(*) FROM conditions WHERE code IN VALUESET 'diabetes'"
	fp := func(vs []terminology.ValueSet) string {
		cat := catalogue()
		cat.ValueSets = vs
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, cat)
		if err != nil {
			t.Fatal(err)
		}
		return p.Fingerprint()
	}
	a := diabetesValueSets(t)
	b := diabetesValueSets(t)
	b[0].Exclude = nil
	if fp(a) == fp(b) {
		t.Error("value sets with other codes under one name give the same plan fingerprint")
	}
	if fp(a) != fp(diabetesValueSets(t)) {
		t.Error("the same value set gives different fingerprints")
	}
}

// TestGroupByCodeForms: a group domain is the codes as the query wrote
// them, each collecting its every form: 'E119' collects the stored E11.9,
// while a local code that only looks like ICD-10 (E119X) collects itself.
func TestGroupByCodeForms(t *testing.T) {
	p, err := plan.Build(plan.Request{SQL: "SELECT code, COUNT(*) FROM conditions WHERE code IN ('E119', 'E119X', 'i10') GROUP BY code",
		Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, catalogue())
	if err != nil {
		t.Fatal(err)
	}
	e, err := eval.Evaluate(context.Background(), p, icdFixture())
	if err != nil {
		t.Fatal(err)
	}
	if labels := p.Keys()[0].Labels; !reflect.DeepEqual(labels, []string{"E119", "E119X", "i10"}) {
		t.Errorf("domain %q", labels)
	}
	if got := e.Values(); !reflect.DeepEqual(got, []float64{1, 1, 1}) {
		t.Errorf("counts %v, want 1 each", got)
	}
}
