package result

import (
	"flag"
	"math"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sample() *Result {
	return &Result{
		Columns: []string{"week", "region", "patients", "mean"}, KeyColumns: 2,
		Rows: []Row{
			{Keys: []string{"2020-W06", "north"}, Values: []Number{
				{Value: 123, CILow: 112.5, CIHigh: 133.5, Display: "123"},
				{Value: 7.25, CILow: 6.9, CIHigh: 7.6, Display: "7.25"}}},
			{Keys: []string{"2020-W06", "south"}, Values: []Number{
				{Value: 4, CILow: -6.5, CIHigh: 14.5, Display: "< 10", Suppressed: true},
				{Value: math.NaN(), CILow: math.NaN(), CIHigh: math.NaN(), Display: "n < 10", Suppressed: true}}},
		},
		Epsilon: 1, Delta: 1e-6, Rho: 0.0174689, Mechanism: "gaussian", Nodes: 3, SmallCountThreshold: 10,
	}
}

func TestFormatsGolden(t *testing.T) {
	var b strings.Builder
	r := sample()
	b.WriteString("-- table\n")
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	b.WriteString("-- json\n")
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	b.WriteString("-- csv\n")
	if err := r.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	if strings.Contains(got, "\"value\": 4") || strings.Contains(got, ",4,") {
		t.Error("a suppressed count leaked into JSON or CSV")
	}
	const path = "testdata/formats.golden"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(want) != got {
		t.Errorf("formats differ (run with -update):\n%s", got)
	}
}
