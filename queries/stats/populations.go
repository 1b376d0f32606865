package stats

import (
	"encoding/csv"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadPopulations reads a CSV of populations: columns region (or
// abbreviation) and population, as FluSight's locations.csv. It is the
// format of `fedstat stats incidence --populations` and of the
// coordinator's populations_file.
func ReadPopulations(path string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("%s: want a CSV with a header and rows: %v", path, err)
	}
	ri, pi := -1, -1
	for i, h := range rows[0] {
		switch strings.TrimSpace(h) {
		case "region", "abbreviation":
			if ri < 0 {
				ri = i
			}
		case "population":
			pi = i
		}
	}
	if ri < 0 || pi < 0 {
		return nil, fmt.Errorf("%s: want columns region (or abbreviation) and population", path)
	}
	out := map[string]float64{}
	for n, r := range rows[1:] {
		v, err := strconv.ParseFloat(strings.TrimSpace(r[pi]), 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s:%d: population %q is not a number", path, n+2, r[pi])
		}
		out[strings.TrimSpace(r[ri])] = v
	}
	return out, nil
}
