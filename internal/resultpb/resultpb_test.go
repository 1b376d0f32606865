package resultpb

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/result"
)

// TestVarianceTravels: a released number's noise variance goes over the
// wire and back (also a variance of exactly 0, which a count on a fine grid
// has at a large epsilon), in the binary and the JSON form; a suppressed
// number sends neither its value nor its variance; a number without one
// (a ratio) comes back NaN.
func TestVarianceTravels(t *testing.T) {
	nan := math.NaN()
	r := &result.Result{Columns: []string{"region", "n", "total", "mean"}, KeyColumns: 1, Nodes: 3, Mechanism: "gaussian",
		Rows: []result.Row{
			{Keys: []string{"north"}, Values: []result.Number{
				{Value: 120, CILow: 110, CIHigh: 130, Display: "120", Variance: 27.5},
				{Value: 5, CILow: 5, CIHigh: 5, Display: "5", Variance: 0},
				{Value: 7.25, CILow: 6.9, CIHigh: 7.6, Display: "7.25", Variance: nan}}},
			{Keys: []string{"south"}, Values: []result.Number{
				{Value: 4, CILow: -6, CIHigh: 14, Display: "< 10", Suppressed: true, Variance: 27.5},
				{Value: 2, CILow: 1, CIHigh: 3, Display: "2", Variance: 0.25},
				{Value: nan, CILow: nan, CIHigh: nan, Display: "n < 10", Suppressed: true, Variance: nan}}},
		}}
	p := ToProto(r)
	if n := p.Rows[1].Values[0]; n.Variance != nil || n.Value != 0 {
		t.Errorf("suppressed count sent %v", n)
	}
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var bin typesv1.Result
	if err := proto.Unmarshal(b, &bin); err != nil {
		t.Fatal(err)
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"variance":27.5`) || !strings.Contains(string(js), `"variance":0`) {
		t.Errorf("JSON form without the variances: %s", js)
	}
	var fromJSON typesv1.Result
	if err := protojson.Unmarshal(js, &fromJSON); err != nil {
		t.Fatal(err)
	}
	for name, w := range map[string]*typesv1.Result{"binary": &bin, "json": &fromJSON} {
		back := FromProto(w)
		want := [][]float64{{27.5, 0, nan}, {nan, 0.25, nan}}
		for i, row := range back.Rows {
			for j, n := range row.Values {
				if got := n.Variance; got != want[i][j] && !(math.IsNaN(got) && math.IsNaN(want[i][j])) {
					t.Errorf("%s: row %d value %d: variance %v, want %v", name, i, j, got, want[i][j])
				}
			}
		}
		if !math.IsNaN(back.Rows[1].Values[0].Value) {
			t.Errorf("%s: suppressed count came back with value %v", name, back.Rows[1].Values[0].Value)
		}
	}
}
