package eval_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

var sqlBlock = regexp.MustCompile("(?s)```sql\n(.*?)```")

// TestDocExamples parses, plans and evaluates every ```sql block of
// docs/query-language.md, and checks that the doc mentions every column of
// the schema.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/query-language.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := sqlBlock.FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 8 {
		t.Fatalf("found %d sql blocks", len(blocks))
	}
	tb := fixture()
	cat := &plan.Catalogue{Regions: []string{"north", "south", "east", "west"}, ValueSets: diabetesValueSets(t)}
	for _, b := range blocks {
		sql := b[1]
		if strings.Contains(sql, "FROM deaths") || strings.Contains(sql, "FROM claims") {
			// An example across linked agencies: planned in a linked
			// catalogue with the agency tables, evaluated as a node does.
			p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: ref, LinkHolders: 1}, linkCatalogue(t))
			if err != nil {
				t.Errorf("%s\n%v", sql, err)
				continue
			}
			if p.Link == nil {
				t.Errorf("%s\nnot a linked plan", sql)
			} else if _, err := eval.LinkElements(context.Background(), p, tb); err != nil {
				t.Errorf("%s\n%v", sql, err)
			}
			continue
		}
		p, err := plan.Build(plan.Request{SQL: sql, Epsilon: 1, Delta: 1e-6, MinNodes: 3, Threshold: 2, ReferenceDate: ref}, cat)
		if err != nil {
			t.Errorf("%s\n%v", sql, err)
			continue
		}
		e, err := eval.Evaluate(context.Background(), p, tb)
		if err != nil {
			t.Errorf("%s\n%v", sql, err)
			continue
		}
		if _, err := dp.Exact(p, e); err != nil {
			t.Errorf("%s\n%v", sql, err)
		}
		if _, err := dp.NoiseShare(p, e); err != nil {
			t.Errorf("%s\n%v", sql, err)
		}
	}
	for _, s := range cdm.Schema {
		if !strings.Contains(string(doc), "`"+s.Name+"`") {
			t.Errorf("doc does not mention table %s", s.Name)
		}
		for _, c := range s.Columns {
			if c.Secret {
				continue // no query reads it, so the query language does not list it
			}
			if !strings.Contains(string(doc), "`"+c.Name+"`") {
				t.Errorf("doc does not mention column %s.%s", s.Name, c.Name)
			}
		}
	}
}
