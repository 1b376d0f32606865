package forecast

import (
	"bytes"
	"encoding/csv"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReadSeries(t *testing.T) {
	// Columns in another order, an extra column, rows out of order.
	in := "location,extra,date,variance,value\n" +
		"US,x,2024-01-13,4,120\n" +
		"06,x,2024-01-06,1,-2\n" +
		"US,x,2024-01-06,4,100\n" +
		"06,x,2024-01-13,1,3.5\n"
	s, err := ReadSeries(strings.NewReader(in), "in.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 2 || s[0].Location != "US" || s[1].Location != "06" {
		t.Fatalf("series %+v", s)
	}
	want := Point{Date: time.Date(2024, 1, 6, 0, 0, 0, 0, time.UTC), Value: 100, Variance: 4}
	if s[0].Points[0] != want || s[0].Points[1].Value != 120 || s[1].Points[0].Value != -2 || s[1].Points[1].Value != 3.5 {
		t.Errorf("points %+v", s)
	}
}

func TestReadSeriesErrors(t *testing.T) {
	const header = "date,location,value,variance\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"no header", "", `in.csv: empty file`},
		{"missing column", "date,location,value\n2024-01-06,US,1\n", `in.csv:1: no column "variance"`},
		{"bad date", header + "2024-01-06,US,1,0\n2024-13-01,US,1,0\n", `in.csv:3: column "date": "2024-13-01" is not a date`},
		{"bad value", header + "2024-01-06,US,1,0\n2024-01-13,US,NA,0\n", `in.csv:3: column "value": "NA" is not a finite number`},
		{"bad variance", header + "2024-01-06,US,1,x\n", `in.csv:2: column "variance": "x" is not a finite number`},
		{"negative variance", header + "2024-01-06,US,1,-1\n", `in.csv:2: column "variance": -1 is negative`},
		{"empty location", header + "2024-01-06,,1,0\n", `in.csv:2: column "location": empty location`},
		{"duplicate", header + "2024-01-06,US,1,0\n2024-01-13,US,1,0\n2024-01-06,US,2,0\n", `in.csv:4: column "date": week 2024-01-06 of location US is also on line 2`},
		{"gap", header + "2024-01-06,US,1,0\n2024-01-20,US,1,0\n", `in.csv:3: column "date": location US has week 2024-01-20 after 2024-01-06 (line 2)`},
		{"ragged", header + "2024-01-06,US,1\n", `in.csv: record on line 2: wrong number of fields`},
		{"no rows", header, `in.csv: no rows`},
	} {
		_, err := ReadSeries(strings.NewReader(tc.in), "in.csv")
		if !errors.Is(err, ErrCSV) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrCSV with %q", tc.name, err, tc.want)
		}
	}
}

func TestReadTruth(t *testing.T) {
	// FluSight's target-hospital-admissions.csv as published.
	in := `"date","location","location_name","value","weekly_rate"
2024-10-05,"25","Massachusetts",NA,NA
2024-10-12,"25","Massachusetts",31,0.44
2024-10-12,"US","US",2177,0.64
`
	truth, err := ReadTruth(strings.NewReader(in), "t.csv")
	if err != nil {
		t.Fatal(err)
	}
	d := func(s string) time.Time { x, _ := time.Parse(time.DateOnly, s); return x }
	if _, ok := truth.Lookup("25", d("2024-10-05")); ok {
		t.Error("NA read as a value")
	}
	if v, ok := truth.Lookup("25", d("2024-10-12")); !ok || v != 31 {
		t.Errorf("MA 2024-10-12: %v %v", v, ok)
	}
	if v, ok := truth.Lookup("US", d("2024-10-12")); !ok || v != 2177 {
		t.Errorf("US: %v %v", v, ok)
	}
	if _, err := ReadTruth(strings.NewReader("date,location,value\n2024-10-12,US,many\n"), "t.csv"); err == nil || !strings.Contains(err.Error(), `t.csv:2: column "value"`) {
		t.Errorf("bad value: %v", err)
	}
}

func TestWriteFluSight(t *testing.T) {
	series := weekly([]float64{10, 12, 11, 15, 14, 18, 17, 20, 22, 21, 25, 24, 28, 30}, 2)
	fc, err := Forecast(series, Horizons, Baseline)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(FluSightColumns)
	if err := WriteFluSight(w, "US", fc); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows[0], ","); got != "reference_date,horizon,target_end_date,location,output_type,output_type_id,value" {
		t.Errorf("header %s", got)
	}
	if len(rows) != 1+4*23 {
		t.Fatalf("%d rows, want 1 + 4 horizons × 23 levels", len(rows))
	}
	last := series[len(series)-1].Date
	if want := []string{last.AddDate(0, 0, 7).Format(time.DateOnly), "0", last.AddDate(0, 0, 7).Format(time.DateOnly), "US", "quantile", "0.01"}; strings.Join(rows[1][:6], ",") != strings.Join(want, ",") {
		t.Errorf("first row %v, want %v", rows[1], want)
	}
	if want := []string{last.AddDate(0, 0, 7).Format(time.DateOnly), "3", last.AddDate(0, 0, 28).Format(time.DateOnly), "US", "quantile", "0.99"}; strings.Join(rows[92][:6], ",") != strings.Join(want, ",") {
		t.Errorf("last row %v, want %v", rows[92], want)
	}
	if rows[12][5] != "0.5" || rows[12][6] != "30" {
		t.Errorf("the h0 median row %v: want level 0.5 and the last value 30", rows[12])
	}
}
