package dp

import (
	"context"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

func TestSmokeCountDistinct(t *testing.T) {
	b := cdm.NewBuilder()
	for i := 0; i < 50; i++ {
		id := string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		b.AddPatient(&cdm.Patient{ID: id, BirthDate: cdm.DateFromYMD(1970, 1, 1), Sex: cdm.SexFemale, Region: "north"})
		b.AddCondition(&cdm.Condition{ID: id + "c1", PatientID: id, Code: "38341003", Onset: cdm.DateFromYMD(2020, 1, 1)})
		b.AddCondition(&cdm.Condition{ID: id + "c2", PatientID: id, Code: "38341003", Onset: cdm.DateFromYMD(2021, 1, 1)})
	}
	tables := b.Build()
	p, err := plan.Build(plan.Request{SQL: "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003'", Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := eval.Evaluate(context.Background(), p, tables)
	if err != nil {
		t.Fatal(err)
	}
	if got := ex.Values(); got[0] != 50 {
		t.Fatalf("exact = %v", got)
	}
	total := make([]int64, p.VectorLen())
	for n := 0; n < 3; n++ {
		s, err := NoiseShare(p, ex)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range s.Slots() {
			total[i] += v
		}
	}
	r, err := Release(p, total, 3)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	r.WriteTable(&sb)
	t.Log("\n" + sb.String())
}
