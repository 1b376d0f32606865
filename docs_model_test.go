package fedstat_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
)

// TestDocsDataModel: the documents that list the tables of the data model
// list exactly the tables of the registry (cdm.Schema), in its order, each
// with all its columns, and docs/data.md gives each table's CSV header as
// the importer reads it. A table declared in the code but not documented,
// or a column renamed in one place only, fails here.
func TestDocsDataModel(t *testing.T) {
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (.*) \\|$")
	for _, doc := range []string{"docs/data.md", "docs/query-language.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		i := strings.Index(text, "| table | columns")
		if i < 0 {
			t.Fatalf("%s: no table of tables (| table | columns ...)", doc)
		}
		block := text[i:]
		if j := strings.Index(block, "\n\n"); j >= 0 {
			block = block[:j]
		}
		var names []string
		for _, m := range row.FindAllStringSubmatch(block, -1) {
			names = append(names, m[1])
			s, ok := cdm.LookupTable(m[1])
			if !ok {
				t.Errorf("%s lists table %s, which cdm.Schema does not declare", doc, m[1])
				continue
			}
			for _, c := range s.Columns {
				if c.Secret && doc == "docs/query-language.md" {
					continue // no query reads it
				}
				if !strings.Contains(m[2], "`"+c.Name+"`") {
					t.Errorf("%s: table %s does not list column %s", doc, s.Name, c.Name)
				}
			}
		}
		if want := cdm.TableNames(); !slices.Equal(names, want) {
			t.Errorf("%s lists tables %v, cdm.Schema declares %v", doc, names, want)
		}
		if doc != "docs/data.md" {
			continue
		}
		for _, name := range cdm.TableNames() {
			s, _ := cdm.LookupTable(name)
			line := regexp.MustCompile("(?m)^" + name + `\.csv +(\S+)$`).FindStringSubmatch(text)
			if want := strings.Join(s.CSVColumns(), ","); line == nil || line[1] != want {
				t.Errorf("%s: CSV header of %s.csv: got %v, want %s", doc, name, line, want)
			}
		}
	}
}
