package demo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/admin"
)

// SurvivalSchema is the study schema (TOML) of SurvivalCSV's table,
// "survival": a synthetic trial shaped like survival::lung.
const SurvivalSchema = `# Synthetic survival study (demo and tests): one row per patient.
name = "survival"
unit = "row"   # no id column: each row is a different person
small_count_threshold = -1
doc = "synthetic trial: exponential survival, median about 270 days (sex 1) and 430 days (sex 2)"

[[columns]]
name = "time"
type = "int"
min = 0
max = 1100
doc = "follow-up in days"

[[columns]]
name = "status"
type = "int"
min = 1
max = 2
doc = "1 censored, 2 dead"

[[columns]]
name = "sex"
type = "int"
min = 1
max = 2
doc = "1 male, 2 female"

[[columns]]
name = "age"
type = "int"
min = 39
max = 82
`

// SurvivalCSV returns a synthetic survival table in CSV (header time,
// status, sex, age) for SurvivalSchema: exponential survival with median
// 270 days for sex 1 and 430 for sex 2 at age 62, log hazard ratio 0.02
// per year of age, and uniform censoring between 200 and 1100 days. The
// same seed gives the same rows.
func SurvivalCSV(patients int, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var b strings.Builder
	b.WriteString("time,status,sex,age\n")
	for range patients {
		sex := 1 + rng.IntN(2)
		age := 39 + rng.IntN(44)
		median := 270.0
		if sex == 2 {
			median = 430
		}
		rate := math.Ln2 / median * math.Exp(0.02*float64(age-62))
		t := rng.ExpFloat64() / rate
		c := 200 + 900*rng.Float64()
		status := 2
		if c < t {
			t, status = c, 1
		}
		fmt.Fprintf(&b, "%d,%d,%d,%d\n", max(1, min(1100, int(math.Round(t)))), status, sex, age)
	}
	return b.String()
}

// WriteSurvivalStudy writes SurvivalSchema and, for each of nodes nodes, a
// SurvivalCSV of rows rows (seeds 1, 2, ...) into dir, and returns the
// study table for ServeOptions.Studies.
func WriteSurvivalStudy(dir string, nodes, rows int) (ServeStudy, error) {
	study := ServeStudy{Name: "survival", Schema: filepath.Join(dir, "survival.toml")}
	if err := os.WriteFile(study.Schema, []byte(SurvivalSchema), 0o644); err != nil {
		return ServeStudy{}, err
	}
	for i := range nodes {
		path := filepath.Join(dir, fmt.Sprintf("survival-%d.csv", i+1))
		if err := os.WriteFile(path, []byte(SurvivalCSV(rows, uint64(i+1))), 0o600); err != nil {
			return ServeStudy{}, err
		}
		study.CSV = append(study.CSV, path)
	}
	return study, nil
}

// ImportSurvival imports, at each node of nw, a SurvivalCSV of rows rows
// (seeds 1, 2, ...) as the study table "survival" of SurvivalSchema, which
// the network's catalogue must list (Options.Studies).
func (nw *Network) ImportSurvival(rows int) error {
	schema, err := cdm.ParseStudySchema(SurvivalSchema, "")
	if err != nil {
		return err
	}
	for i, st := range nw.Stores {
		path := filepath.Join(nw.Dir, fmt.Sprintf("survival-%d.csv", i+1))
		if err := os.WriteFile(path, []byte(SurvivalCSV(rows, uint64(i+1))), 0o600); err != nil {
			return err
		}
		study, _, err := admin.ReadStudy(path, schema)
		if err != nil {
			return err
		}
		if _, err := admin.ImportStudyIn(st, study, "demo"); err != nil {
			return fmt.Errorf("demo: %s: %w", NodeID(i), err)
		}
	}
	return nil
}
