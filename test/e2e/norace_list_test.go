package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestNoRaceListInStep: the tests that skip under the race detector
// (noRace) are exactly those scripts/test.sh runs without it, so that none
// is left out of CI.
func TestNoRaceListInStep(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", "scripts", "test.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`go test -count=1 -run '\^\(([A-Za-z|]+)\)\$' \./test/e2e/`).FindSubmatch(script)
	if m == nil {
		t.Fatal("scripts/test.sh has no run of test/e2e's noRace tests")
	}
	listed := strings.Split(string(m[1]), "|")
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	skipping := []string{}
	fn := regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(t \*testing\.T\) \{\n\tnoRace\(t\)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fn.FindAllSubmatch(b, -1) {
			skipping = append(skipping, string(m[1]))
		}
	}
	slices.Sort(listed)
	slices.Sort(skipping)
	if !slices.Equal(listed, skipping) {
		t.Fatalf("scripts/test.sh runs %v without the race detector; the tests that skip under it are %v", listed, skipping)
	}
}
