package coordinator_test

import (
	"testing"

	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
)

// TestCatalogueInfoValueSets: the public catalogue lists each value set
// with its counts, code names and digest, so analysts can see what a name
// means and operators can compare it with a node's.
func TestCatalogueInfoValueSets(t *testing.T) {
	v, err := terminology.Parse("dm.json", "dm", []byte(`{"resourceType":"ValueSet","name":"dm","title":"Diabetes","compose":{
 "include":[{"system":"http://snomed.info/sct","concept":[{"code":"44054006","display":"Diabetes mellitus type 2"}]},
            {"system":"http://hl7.org/fhir/sid/icd-10","filter":[{"property":"concept","op":"is-a","value":"E11"}]}],
 "exclude":[{"system":"http://hl7.org/fhir/sid/icd-10","concept":[{"code":"E11.9"}]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	cat := plan.DefaultCatalogue()
	cat.ValueSets = []terminology.ValueSet{*v}
	info := coordinator.NewOffline(cat).CatalogueInfo()
	if len(info.ValueSets) != 1 {
		t.Fatalf("value sets %v", info.ValueSets)
	}
	got := info.ValueSets[0]
	if got.Name != "dm" || got.Title != "Diabetes" || got.Codes != 1 || got.Families != 1 || got.Excluded != 1 ||
		got.Names["44054006"] != "Diabetes mellitus type 2" || got.Digest != v.Digest() {
		t.Errorf("%v", got)
	}
}
