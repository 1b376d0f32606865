package stats

import (
	"encoding/csv"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

// readCSV is a minimal study reader for tests (the node's reader lives in
// node/internal/studycsv, out of reach here).
func readCSV(t *testing.T, path string, s *cdm.StudySchema) *cdm.Study {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, h := range recs[0] {
		idx[strings.TrimSpace(h)] = i
	}
	st := &cdm.Study{Schema: *s, Numbers: map[string][]float64{}, Strings: map[string][]string{}, Dates: map[string][]cdm.Date{}}
	for r, rec := range recs[1:] {
		id := s.Name + "-" + strconv.Itoa(r+1)
		if s.ID != "" {
			id = rec[idx[s.ID]]
		}
		st.PatientIDs = append(st.PatientIDs, id)
		for _, c := range s.Columns {
			v := rec[idx[c.CSV]]
			switch c.ColumnType() {
			case cdm.TypeNumber:
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					x = math.NaN()
				}
				st.Numbers[c.Name] = append(st.Numbers[c.Name], x)
			case cdm.TypeString:
				if s.IsMissing(v) {
					v = ""
				}
				st.Strings[c.Name] = append(st.Strings[c.Name], v)
			}
		}
	}
	return st
}
