package result

import (
	"bytes"
	"strings"
	"testing"
)

// TestKeyNames: codes with a known name show it in the table, JSON and CSV;
// without names the formats are unchanged.
func TestKeyNames(t *testing.T) {
	r := &Result{Columns: []string{"code", "count"}, KeyColumns: 1, Rows: []Row{
		{Keys: []string{"E11.9"}, Values: []Number{{Value: 12, CILow: 10, CIHigh: 14, Display: "12"}}},
		{Keys: []string{"I10"}, Values: []Number{{Value: 30, CILow: 28, CIHigh: 32, Display: "30"}}},
	}, Mechanism: "gaussian", KeyNames: map[string]string{"E11.9": "Type 2 diabetes mellitus without complications"}}
	var tb, js, cs bytes.Buffer
	if err := r.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteCSV(&cs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tb.String(), "E11.9 (Type 2 diabetes mellitus without complications)") || !strings.Contains(tb.String(), "\nI10 ") {
		t.Errorf("table:\n%s", tb.String())
	}
	if !strings.Contains(js.String(), `"key_names": {`) {
		t.Errorf("json:\n%s", js.String())
	}
	if want := "code,code_name,count,count_ci_low,count_ci_high,count_suppressed\nE11.9,Type 2 diabetes mellitus without complications,12,10,14,false\nI10,,30,28,32,false\n"; cs.String() != want {
		t.Errorf("csv:\n%s\nwant\n%s", cs.String(), want)
	}
	r.KeyNames = nil
	cs.Reset()
	js.Reset()
	_ = r.WriteCSV(&cs)
	_ = r.WriteJSON(&js)
	if strings.Contains(cs.String(), "code_name") || strings.Contains(js.String(), "key_names") {
		t.Errorf("names without names:\n%s\n%s", cs.String(), js.String())
	}
}
