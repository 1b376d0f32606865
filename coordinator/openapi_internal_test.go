package coordinator

import (
	"encoding/json"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestFiniteJSON: the statistics' JSON has null where a singular number is
// not finite, also in nested messages, keeps protojson's strings in lists,
// the field order and a string that reads "NaN", and still decodes as the
// message.
func TestFiniteJSON(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	m := &coordinatorv1.StatsResponse{Method: "km", Strata: "NaN", Epsilon: 1, Queries: []string{"q1"},
		Estimates: []*coordinatorv1.StatsEstimate{{Name: "NaN", Value: proto.Float64(nan), Se: proto.Float64(0.5),
			CiLow: proto.Float64(math.Inf(-1)), CiHigh: proto.Float64(inf), NoiseSe: proto.Float64(nan)}},
		Curves: []*coordinatorv1.StatsCurve{{Stratum: "1", Times: []float64{1, 2}, Survival: []float64{0.5, nan}, Lower: []float64{inf, 0},
			Median: &coordinatorv1.StatsEstimate{Name: "median", Value: proto.Float64(nan), Se: proto.Float64(0)}}},
		N: proto.Float64(inf)}
	b, err := jsonStats.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := finiteJSON(b, m.ProtoReflect().Descriptor())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"method":"km","table":"","strata":"NaN","epsilon":1,"delta":0,"reference_date":"","queries":["q1"],` +
		`"estimates":[{"name":"NaN","value":null,"se":0.5,"ci_low":null,"ci_high":null,"noise_se":null}],` +
		`"curves":[{"stratum":"1","times":[1,2],"survival":[0.5,"NaN"],"lower":["Infinity",0],"upper":[],"at_risk":0,` +
		`"median":{"name":"median","value":null,"se":0}}],"n":null,"elapsed_ms":0,"last_sql":"","note":""}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var back coordinatorv1.StatsResponse
	if err := protojson.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if back.GetStrata() != "NaN" || back.GetEstimates()[0].GetSe() != 0.5 || back.GetCurves()[0].GetSurvival()[0] != 0.5 ||
		!math.IsNaN(back.GetCurves()[0].GetSurvival()[1]) || back.GetEstimates()[0].Value != nil || back.GetCurves()[0].GetMedian().Se == nil {
		t.Errorf("decoded: %v", &back)
	}
}

// TestForecastJSONIsTheProtoMessage: GET /v1/series/{name}/forecast writes
// the Go type SeriesForecast with encoding/json; its JSON must be the proto
// message SeriesForecast that the OpenAPI document names, field for field.
func TestForecastJSONIsTheProtoMessage(t *testing.T) {
	f := &SeriesForecast{Series: "flu", Method: "ensemble", Skipped: map[string]string{"north": "too few weeks"},
		Rows: []ForecastRow{{ReferenceDate: "2026-11-28", Horizon: 2, TargetEndDate: "2026-12-12", Location: "south",
			OutputType: "quantile", OutputTypeID: 0.975, Value: 41.5}}}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var m coordinatorv1.SeriesForecast
	if err := protojson.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s is not a SeriesForecast: %v", b, err)
	}
	want := &coordinatorv1.SeriesForecast{Series: "flu", Method: "ensemble", Notes: map[string]string{"north": "too few weeks"},
		Rows: []*coordinatorv1.ForecastRow{{ReferenceDate: "2026-11-28", Horizon: 2, TargetEndDate: "2026-12-12", Location: "south",
			OutputType: "quantile", OutputTypeId: 0.975, Value: 41.5}}}
	if !proto.Equal(&m, want) {
		t.Errorf("decoded %v, want %v", &m, want)
	}
}
