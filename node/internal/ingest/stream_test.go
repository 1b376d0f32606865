package ingest

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

// TestStreamMatchesRead: reading CDM files in chunks gives the records,
// origins and bad records (file and line) that reading them whole gives,
// across chunk boundaries, quoted fields spanning lines and compression.
func TestStreamMatchesRead(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "patients.csv"), "patient_id,birth_date,sex,region\np1,1970-01-01,female,A\np2,1980-02-02,male,B\n")
	var conds strings.Builder
	conds.WriteString("id,patient_id,code,system,onset_date\n")
	for _, line := range []string{
		"c1,p1,44054006,http://snomed.info/sct,2020-01-01",
		"c2,p2,38341003,http://snomed.info/sct,2020-01-02",
		"c3,p1,\"4405\n4006\",http://snomed.info/sct,2020-01-03", // a field over two lines
		"c4,p2,38341003,http://snomed.info/sct,not-a-date",
		"c5,p1,,http://snomed.info/sct,2020-01-05",
		"c6,p2,195967001,http://snomed.info/sct,2020-01-06",
		"c7,p1,195967001,http://snomed.info/sct,2020-01-07",
	} {
		conds.WriteString(line + "\n")
	}
	writeFile(t, filepath.Join(dir, "conditions.csv"), conds.String())
	writeFile(t, filepath.Join(dir, "site_observations.ndjson.gz"), gz(strings.Join([]string{
		`{"id":"o1","patient_id":"p1","code":"4548-4","value":"6.1","date":"2021-01-01"}`,
		`{"id":"o2","patient_id":"p2","code":"4548-4","value":"x","date":"2021-01-01"}`,
		`{"id":"o3","patient_id":"p2","code":"4548-4","value":"7.5","date":"2021-01-01"}`,
	}, "\n")+"\n"))

	whole, err := Read(context.Background(), Options{}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	patients, others, err := StreamFiles(Options{}, []string{dir})
	if err != nil || len(patients) != 1 || len(others) != 2 {
		t.Fatalf("StreamFiles: %v, %v, %v", patients, others, err)
	}
	for _, n := range []int{1, 2, 3, 100} {
		var got cdm.Batch
		chunks := 0
		err := Stream(context.Background(), Options{}, append(patients, others...), n, func(b *cdm.Batch) error {
			chunks++
			for ti := range cdm.Schema {
				tb := &cdm.Schema[ti]
				row := tb.NewRow()
				os := b.Origins.Of(tb.Name)
				for i := range tb.Len(&b.Records) {
					tb.Row(&b.Records, i, row)
					got.Add(tb, row, os[i])
				}
			}
			got.Errors = append(got.Errors, b.Errors...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Records, whole.Records) {
			t.Errorf("chunks of %d: records differ:\n%+v\nwant\n%+v", n, got.Records, whole.Records)
		}
		for _, table := range cdm.TableNames() {
			if !reflect.DeepEqual(got.Origins.Of(table), whole.Origins.Of(table)) {
				t.Errorf("chunks of %d: %s origins %v, want %v", n, table, got.Origins.Of(table), whole.Origins.Of(table))
			}
		}
		var ge, we []string
		for _, e := range got.Errors {
			ge = append(ge, e.Error())
		}
		for _, e := range whole.Errors {
			we = append(we, e.Error())
		}
		if !reflect.DeepEqual(ge, we) || len(we) != 3 {
			t.Errorf("chunks of %d: errors\n%s\nwant\n%s", n, strings.Join(ge, "\n"), strings.Join(we, "\n"))
		}
		if n == 1 && chunks < 9 {
			t.Errorf("%d chunks of one record", chunks)
		}
	}
}

func TestStreamRefusesFHIR(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "Patient.ndjson"), "{}\n")
	if _, _, err := StreamFiles(Options{}, []string{dir}); !errors.Is(err, ErrFormat) {
		t.Fatalf("FHIR NDJSON: %v", err)
	}
}
