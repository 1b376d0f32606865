package fedstat_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsNameRealTests: every test, fuzz target or benchmark that the
// privacy and crypto documents name as the evidence for a claim exists in
// the code. A claim whose test was renamed or deleted would otherwise rest
// on nothing while still reading as backed.
func TestDocsNameRealTests(t *testing.T) {
	defined := map[string]bool{}
	def := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)\(`)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != ".") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range def.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	named := regexp.MustCompile("`((?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*)(\\*?)`")
	for _, doc := range []string{"docs/threat-model.md", "docs/crypto.md", "docs/operations.md", "docs/privacy-audit.md", "docs/linkage.md", "docs/statistics.md"} {
		b, err := os.ReadFile(doc)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range named.FindAllStringSubmatch(string(b), -1) {
			name, prefix := m[1], m[2] == "*"
			ok := defined[name]
			if prefix {
				for d := range defined {
					if strings.HasPrefix(d, name) {
						ok = true
						break
					}
				}
			}
			checked++
			if !ok {
				t.Errorf("%s names %s, which no test file defines", doc, m[1]+m[2])
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d test names found in the documents: is the pattern still right?", checked)
	}
}
