package plan

import (
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

// DesignQueries are the queries of DESIGN.md ("Query language").
var DesignQueries = []string{
	`SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = '38341003';`,
	`SELECT COUNT(*) FROM patients
  WHERE sex = 'female' AND age BETWEEN 40 AND 64
    AND patient_id IN (SELECT patient_id FROM conditions WHERE code = '44054006');`,
	`SELECT week(onset_date) AS week, region, COUNT(DISTINCT patient_id) FROM conditions
  WHERE code = '840539006' AND onset_date BETWEEN '2020-02-01' AND '2020-04-30'
  GROUP BY week, region;`,
	`SELECT AVG(CLAMP(value, 3, 20)), STDDEV(CLAMP(value, 3, 20)) FROM observations WHERE code = '4548-4';`,
}

func testRequest(sql string) Request {
	return Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: cdm.DateFromYMD(2024, 1, 1)}
}

func testCatalogue() *Catalogue {
	return &Catalogue{Regions: []string{"north", "south", "east", "west"}}
}

func TestDesignQueriesPlan(t *testing.T) {
	for _, q := range DesignQueries {
		p, err := Build(testRequest(q), testCatalogue())
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		t.Log("\n" + p.Describe())
	}
}
