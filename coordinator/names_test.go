package coordinator

import (
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/resultpb"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/result"
)

// TestReleaseNamesCodes: a released result grouped by code carries the
// names the catalogue's value sets give those codes, in every form the
// query wrote them, through the wire form.
func TestReleaseNamesCodes(t *testing.T) {
	v, err := terminology.Parse("dm.json", "dm", []byte(`{"resourceType":"ValueSet","name":"dm","compose":{"include":[
 {"system":"http://hl7.org/fhir/sid/icd-10","concept":[{"code":"E11.9","display":"Type 2 diabetes without complications"}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	cat := plan.DefaultCatalogue()
	cat.ValueSets = []terminology.ValueSet{*v}
	p, err := plan.Build(plan.Request{SQL: "SELECT code, COUNT(*) FROM conditions WHERE code IN ('E119', 'I10') GROUP BY code",
		Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, cat)
	if err != nil {
		t.Fatal(err)
	}
	r := &result.Result{}
	nameCodes(cat, p, r)
	got := resultpb.FromProto(resultpb.ToProto(r)).KeyNames
	if len(got) != 1 || got["E119"] != "Type 2 diabetes without complications" {
		t.Errorf("key names %v", got)
	}
}
