package synth

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

func TestCivilDates(t *testing.T) {
	w := &Writer{}
	for d := cdm.DateFromYMD(1880, 1, 1); d < cdm.DateFromYMD(2100, 1, 1); d += 7 {
		if got := w.date(d).s; got != d.String() {
			t.Fatalf("day %d: %s, want %s", d, got, d.String())
		}
	}
	if w.date(cdm.NoDate).s != "" {
		t.Fatal("NoDate")
	}
}

func TestWriterCSVAndNDJSON(t *testing.T) {
	recs, err := Generate(Options{Patients: 300, Seed: 3, Regions: []string{"north,east", `say "hi"`}})
	if err != nil {
		t.Fatal(err)
	}
	recs.Observations = append(recs.Observations, cdm.Observation{ID: "x", PatientID: recs.Patients[0].ID, Code: "1-1", System: cdm.SystemLOINC, Date: cdm.DateFromYMD(2020, 1, 1)})
	for _, f := range []Format{FormatCSV, FormatNDJSON} {
		dir := filepath.Join(t.TempDir(), "out")
		w, err := NewWriter(dir, f, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(recs); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := NewWriter(dir, f, false); !errors.Is(err, ErrExists) {
			t.Fatalf("second writer: %v", err)
		}
		want := map[string]int{"patients": len(recs.Patients), "conditions": len(recs.Conditions), "observations": len(recs.Observations),
			"encounters": len(recs.Encounters), "medications": len(recs.Medications)}
		for _, file := range Files {
			rows := readBack(t, filepath.Join(dir, file.Name+"."+string(f)), f, file.Columns)
			if len(rows) != want[file.Name] {
				t.Fatalf("%s %s: %d rows, want %d", f, file.Name, len(rows), want[file.Name])
			}
			switch file.Name {
			case "patients":
				p := recs.Patients[7]
				r := rows[7]
				if r["patient_id"] != p.ID || r["birth_date"] != p.BirthDate.String() || r["sex"] != p.Sex.String() || r["region"] != p.Region || r["death_date"] != p.DeathDate.String() {
					t.Fatalf("%s patient row %v, want %+v", f, r, p)
				}
			case "observations":
				o := recs.Observations[0]
				if v, _ := strconv.ParseFloat(rows[0]["value"], 64); rows[0]["id"] != o.ID || v != o.Value || rows[0]["unit"] != o.Unit {
					t.Fatalf("%s observation row %v, want %+v", f, rows[0], o)
				}
				if last := rows[len(rows)-1]; last["value"] != "" {
					t.Fatalf("%s: observation without value written as %q", f, last["value"])
				}
			case "conditions":
				c := recs.Conditions[0]
				if r := rows[0]; r["id"] != c.ID || r["code"] != c.Code || r["system"] != c.System || r["onset_date"] != c.Onset.String() || r["abatement_date"] != c.Abatement.String() {
					t.Fatalf("%s condition row %v, want %+v", f, r, c)
				}
			}
		}
	}
}

// readBack reads a written file into maps from column to text ("" for
// JSON null).
func readBack(t *testing.T, path string, f Format, cols []string) []map[string]string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []map[string]string
	if f == FormatCSV {
		all, err := csv.NewReader(fh).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range cols {
			if all[0][i] != c {
				t.Fatalf("%s header %v, want %v", path, all[0], cols)
			}
		}
		for _, rec := range all[1:] {
			m := map[string]string{}
			for i, c := range cols {
				m[c] = rec[i]
			}
			out = append(out, m)
		}
		return out
	}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		m := map[string]string{}
		for _, c := range cols {
			v, ok := raw[c]
			if !ok {
				t.Fatalf("%s: no key %s", path, c)
			}
			switch v := v.(type) {
			case string:
				m[c] = v
			case float64:
				m[c] = strconv.FormatFloat(v, 'f', -1, 64)
			}
		}
		out = append(out, m)
	}
	return out
}
