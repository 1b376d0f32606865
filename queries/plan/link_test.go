package plan

import (
	"cmp"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/queries/parse"
	"github.com/fedstat/fedstat/queries/zcdp"
)

const linkSystem = "urn:city:rid"

const deathsSchema = `
name = "deaths"
id = "rid"
rows_per_patient = 1
[[columns]]
name = "death_date"
type = "date"
`

const claimsSchema = `
name = "claims"
id = "rid"
rows_per_patient = 50
[[columns]]
name = "amount"
type = "float"
min = 0
max = 100000
[[columns]]
name = "service_date"
type = "date"
`

// linkedCatalogue is a linked network of hospitals (CDM tables), a civil
// registry (deaths) and an insurer (claims); patients may be at 2 nodes.
func linkedCatalogue(t testing.TB) *Catalogue {
	t.Helper()
	var studies []cdm.StudySchema
	for _, s := range []string{deathsSchema, claimsSchema} {
		sc, err := cdm.ParseStudySchema(s, "")
		if err != nil {
			t.Fatal(err)
		}
		studies = append(studies, *sc)
	}
	return &Catalogue{Regions: []string{"north", "south", "east", "west"}, Studies: studies,
		MaxNodesPerPatient: 2, Linkage: &Linkage{IdentifierSystem: linkSystem}}
}

const (
	q1 = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%'"
	q2 = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN\n" +
		"  (SELECT patient_id FROM deaths WHERE death_date BETWEEN '2023-01-01' AND '2023-12-31')"
	q3 = "SELECT SUM(CLAMP(amount, 0, 100000)) FROM claims WHERE patient_id IN\n" +
		"  (SELECT patient_id FROM conditions WHERE code LIKE 'E11%')"
)

func TestLinkRefusals(t *testing.T) {
	cases := []struct {
		sql  string
		at   string // the error points at the first occurrence of at
		last bool   // ... or at its last
		want string
	}{
		{sql: "SELECT AVG(CLAMP(amount, 0, 100)) FROM claims WHERE patient_id IN (SELECT patient_id FROM conditions)",
			at: "AVG", want: "AVG is not supported here: a linked query"},
		{sql: "SELECT STDDEV(amount) FROM claims WHERE patient_id IN (SELECT patient_id FROM deaths)",
			at: "STDDEV", want: "exactly one aggregate: COUNT(DISTINCT patient_id), COUNT(*) or SUM"},
		{sql: "SELECT VARIANCE(amount) FROM claims WHERE patient_id NOT IN (SELECT patient_id FROM deaths)",
			at: "VARIANCE", want: "VARIANCE is not supported"},
		{sql: "SELECT COUNT(*), SUM(amount) FROM claims WHERE patient_id IN (SELECT patient_id FROM deaths)",
			at: "SUM", want: "exactly one aggregate"},
		// COUNT(DISTINCT patient_id) alongside another aggregate: the
		// resident count cannot be a local count in a linked network.
		{sql: "SELECT COUNT(*), COUNT(DISTINCT patient_id) FROM conditions",
			at: "COUNT(DISTINCT", want: "run the other aggregates as separate queries"},
		{sql: "SELECT COUNT(*) FROM conditions WHERE code = 'x' OR patient_id IN (SELECT patient_id FROM deaths)",
			at: "patient_id IN", want: "joined to the rest with AND, not under OR"},
		{sql: "SELECT COUNT(*) FROM conditions WHERE NOT patient_id IN (SELECT patient_id FROM deaths)",
			at: "patient_id IN", want: "under NOT (write `patient_id NOT IN (SELECT ...)` instead)"},
		{sql: "SELECT COUNT(*) FROM conditions WHERE code = 'x' AND (code = 'y' OR patient_id NOT IN (SELECT patient_id FROM deaths))",
			at: "patient_id NOT IN", want: "not under OR"},
		{sql: "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE patient_id IN (SELECT patient_id FROM claims WHERE patient_id IN (SELECT patient_id FROM deaths))",
			at: "patient_id IN", last: true, want: "cannot contain another `patient_id IN (SELECT ...)`"},
		{sql: "SELECT SUM(CLAMP(patient_id IN (SELECT patient_id FROM deaths), 0, 1)) FROM conditions",
			at: "patient_id IN", want: "can only be a condition of WHERE"},
	}
	cat := linkedCatalogue(t)
	for _, c := range cases {
		_, err := Build(testRequest(c.sql), cat)
		var pe *parse.Error
		if !errors.As(err, &pe) || !errors.Is(err, parse.ErrInvalid) {
			t.Errorf("%s: got %v, want a *parse.Error (ErrInvalid)", c.sql, err)
			continue
		}
		at := strings.Index(c.sql, c.at)
		if c.last {
			at = strings.LastIndex(c.sql, c.at)
		}
		if pe.Offset != at {
			t.Errorf("%s: error at offset %d (%q), want %d (%q): %v", c.sql, pe.Offset, c.sql[pe.Offset:], at, c.sql[at:], err)
		}
		if !strings.Contains(pe.Msg, c.want) {
			t.Errorf("%s: message %q does not contain %q", c.sql, pe.Msg, c.want)
		}
		// The same queries without linkage are not refused for linkage
		// reasons (they plan or fail for their own).
		if _, err := Build(testRequest(c.sql), &Catalogue{Studies: cat.Studies}); err != nil && strings.Contains(err.Error(), "linkage") {
			t.Errorf("%s without linkage: %v", c.sql, err)
		}
	}
	// Laplace cannot pad.
	req := testRequest(q1)
	req.Mechanism = Laplace
	if _, err := Build(req, cat); !errors.Is(err, ErrRequest) {
		t.Errorf("Laplace linked: got %v, want ErrRequest", err)
	}
}

func TestLinkNotLinked(t *testing.T) {
	cat := linkedCatalogue(t)
	for _, sql := range []string{
		"SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%'",
		"SELECT AVG(CLAMP(amount, 0, 100)) FROM claims",
		"SELECT region, COUNT(*), SUM(CLAMP(value, 0, 10)) FROM observations GROUP BY region",
	} {
		p, err := Build(testRequest(sql), cat)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if p.Link != nil {
			t.Errorf("%s: linked, want not", sql)
		}
		// Exactly as without linkage.
		plain := *cat
		plain.Linkage = nil
		q, err := Build(testRequest(sql), &plain)
		if err != nil {
			t.Fatal(err)
		}
		if p.Fingerprint() != q.Fingerprint() || p.Describe() != q.Describe() {
			t.Errorf("%s: plans differ with and without linkage:\n%s\n%s", sql, p.Describe(), q.Describe())
		}
	}
}

// wantLink checks the numbers of a linked plan: the padding takes ρ/16,
// the measures share the rest, and each measure's L2 is K·PerCell·√G
// (charged with the rounding quantum for sums).
func checkBudget(t *testing.T, p *Plan) {
	t.Helper()
	l := p.Link
	rho := zcdp.RhoFromEpsilonDelta(1, 1e-6)
	if !close(p.Rho(), rho) || !close(l.PadRho, rho/16) {
		t.Errorf("rho %v pad %v, want %v and %v", p.Rho(), l.PadRho, rho, rho/16)
	}
	if !close(l.PadSigma, l.PadL2/math.Sqrt(2*rho/16)) {
		t.Errorf("pad sigma %v, want %v", l.PadSigma, l.PadL2/math.Sqrt(2*rho/16))
	}
	ms := p.Measures()
	total := l.PadRho
	for _, m := range ms {
		total += m.Rho
		if !close(m.Rho, rho*15/16/float64(len(ms))) {
			t.Errorf("%s: rho %v, want %v", m.Label, m.Rho, rho*15/16/float64(len(ms)))
		}
		perCell := m.PerCell
		if m.Kind == Sum {
			perCell += 1 / m.Scale
		}
		if want := float64(m.Nodes) * perCell * math.Sqrt(float64(m.Groups)); !close(m.L2, want) {
			t.Errorf("%s: L2 %v, want %v", m.Label, m.L2, want)
		}
		if want := m.L2 / math.Sqrt(2*m.Rho); m.NodeSigma*m.Scale > 4 && !close(m.Sigma, want) {
			t.Errorf("%s: sigma %v, want %v", m.Label, m.Sigma, want)
		}
		if want := m.Sigma / math.Sqrt(float64(p.HonestNodes())); !close(m.NodeSigma, want) {
			t.Errorf("%s: node sigma %v, want %v", m.Label, m.NodeSigma, want)
		}
	}
	if !close(total, rho) {
		t.Errorf("budget adds up to %v, want %v", total, rho)
	}
}

func close(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestLinkPlans(t *testing.T) {
	cat := linkedCatalogue(t)
	cases := []struct {
		name, sql   string
		holders     int
		outer       string
		filters     []LinkFilter // Where not compared
		outerWhere  bool
		payload     bool
		cells       int
		g, r        int // plan's G and R
		histG       int // match histogram's G
		payloadKind MeasureKind
		payloadK    int
		payloadCell float64
		padL2       float64
	}{
		{name: "Q1", sql: q1, outer: cdm.TableConditions, outerWhere: true, cells: 1, g: 1, r: 5, histG: 1, padL2: 1},
		{name: "Q2", sql: q2, outer: cdm.TableConditions, outerWhere: true, filters: []LinkFilter{{Table: "deaths"}},
			cells: 1, g: 1, r: 5, histG: 1, padL2: math.Sqrt2},
		// Q3: the claims' rows_per_patient (50) bounds R, not the
		// catalogue's default of 5; K = LinkHolders, 3.
		{name: "Q3", sql: q3, holders: 3, outer: "claims", filters: []LinkFilter{{Table: cdm.TableConditions}},
			payload: true, cells: 1, g: 1, r: 50, histG: 1, payloadKind: Sum, payloadK: 3, payloadCell: 50 * 100000, padL2: math.Sqrt2},
		{name: "Q3 count", sql: "SELECT COUNT(*) FROM claims WHERE patient_id NOT IN (SELECT patient_id FROM deaths)", outer: "claims",
			filters: []LinkFilter{{Table: "deaths", Negate: true}}, payload: true, cells: 1, g: 1, r: 50, histG: 1,
			payloadKind: CountRows, payloadK: 2, payloadCell: 50, padL2: math.Sqrt2},
		{name: "Q3 max_rows", sql: q3 + " WITH max_rows = 10", holders: 1, outer: "claims", filters: []LinkFilter{{Table: cdm.TableConditions}},
			payload: true, cells: 1, g: 1, r: 10, histG: 1, payloadKind: Sum, payloadK: 1, payloadCell: 10 * 100000, padL2: math.Sqrt2},
		// Deaths by year: today a date key of a study is row-level even
		// with rows_per_patient 1, so G = min(4, 5) = 4; a cohort filter
		// puts every filter member in each cell's histogram.
		{name: "deaths by year", sql: "SELECT year(death_date) AS y, COUNT(DISTINCT patient_id) FROM deaths WHERE death_date BETWEEN '2019-01-01' AND '2023-12-31'" +
			" AND patient_id IN (SELECT patient_id FROM conditions WHERE code LIKE 'E11%') GROUP BY y", outer: "deaths", outerWhere: true,
			filters: []LinkFilter{{Table: cdm.TableConditions}}, cells: 5, g: 4, r: 1, histG: 5, padL2: math.Sqrt(4 + 5)},
		{name: "deaths by year, no filter", sql: "SELECT year(death_date) AS y, COUNT(DISTINCT patient_id) FROM deaths WHERE death_date BETWEEN '2019-01-01' AND '2023-12-31' GROUP BY y",
			outer: "deaths", outerWhere: true, cells: 5, g: 4, r: 1, histG: 5, padL2: 2},
		// Region: hospitals may disagree on a resident's region, so the
		// resident may be in H = 2 region cells.
		{name: "Q1 by region", sql: "SELECT region, COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' GROUP BY region",
			outer: cdm.TableConditions, outerWhere: true, cells: 4, g: 1, r: 5, histG: 2, padL2: 1},
		{name: "Q2 by region", sql: "SELECT region, COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN (SELECT patient_id FROM deaths) GROUP BY region",
			outer: cdm.TableConditions, outerWhere: true, filters: []LinkFilter{{Table: "deaths"}}, cells: 4, g: 1, r: 5, histG: 4, padL2: math.Sqrt(1 + 4)},
		{name: "claims by year", sql: "SELECT year(service_date) AS y, SUM(amount) FROM claims WHERE service_date BETWEEN '2020-01-01' AND '2023-12-31' AND patient_id IN (SELECT patient_id FROM deaths) GROUP BY y",
			holders: 1, outer: "claims", outerWhere: true, filters: []LinkFilter{{Table: "deaths"}}, payload: true, cells: 4, g: 4, r: 50, histG: 4,
			payloadKind: Sum, payloadK: 1, payloadCell: 50 * 100000, padL2: math.Sqrt(4 + 4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := testRequest(c.sql)
			req.LinkHolders = c.holders
			p, err := Build(req, cat)
			if err != nil {
				t.Fatal(err)
			}
			l := p.Link
			if l == nil {
				t.Fatal("not linked")
			}
			t.Log("\n" + p.Describe())
			if l.IdentifierSystem != linkSystem || l.Outer != c.outer || (l.OuterWhere != nil) != c.outerWhere || l.Payload != c.payload {
				t.Errorf("link %+v", l)
			}
			if len(l.Filters) != len(c.filters) {
				t.Fatalf("filters %+v, want %+v", l.Filters, c.filters)
			}
			for i, f := range l.Filters {
				if f.Table != c.filters[i].Table || f.Negate != c.filters[i].Negate {
					t.Errorf("filter %d: %+v, want %+v", i, f, c.filters[i])
				}
			}
			if p.Cells() != c.cells || p.MaxGroupsPerPatient() != c.g || p.MaxRowsPerPatient() != c.r {
				t.Errorf("cells %d G %d R %d, want %d %d %d", p.Cells(), p.MaxGroupsPerPatient(), p.MaxRowsPerPatient(), c.cells, c.g, c.r)
			}
			ms := p.Measures()
			m0 := ms[0]
			if m0.Kind != CountDistinct || m0.Nodes != 1 || m0.Groups != c.histG || m0.PerCell != 1 {
				t.Errorf("measure 0: %+v, want the match histogram, K 1, G %d", m0, c.histG)
			}
			outs := p.Outputs()
			agg := outs[len(outs)-1]
			if c.payload {
				if len(ms) != 2 {
					t.Fatalf("%d measures, want 2", len(ms))
				}
				m1 := ms[1]
				if m1.Kind != c.payloadKind || m1.Nodes != c.payloadK || m1.Groups != c.g || m1.PerCell != c.payloadCell {
					t.Errorf("measure 1: %+v, want kind %d K %d G %d PerCell %v", m1, c.payloadKind, c.payloadK, c.g, c.payloadCell)
				}
				if agg.Count != 1 && agg.Sum != 1 {
					t.Errorf("output %+v does not read measure 1", agg)
				}
			} else {
				if len(ms) != 1 || agg.Count != 0 {
					t.Errorf("measures %d, output %+v: want one measure read by the output", len(ms), agg)
				}
			}
			if !close(l.PadL2, c.padL2) {
				t.Errorf("pad L2 %v, want %v", l.PadL2, c.padL2)
			}
			// The coordinator's count of holders; without one, the
			// catalogue's max_nodes_per_patient (2).
			if want := cmp.Or(c.holders, 2); l.Holders != want {
				t.Errorf("holders %d", l.Holders)
			}
			checkBudget(t, p)
			d := p.Describe()
			for _, w := range []string{"linked:", linkSystem, "outer: residents with a row of", "padding:"} {
				if !strings.Contains(d, w) {
					t.Errorf("Describe lacks %q:\n%s", w, d)
				}
			}
			// Same request, same plan; other holders, other fingerprint
			// whenever they change the payload's K.
			q, _ := Build(req, cat)
			if q.Fingerprint() != p.Fingerprint() {
				t.Error("fingerprint not deterministic")
			}
			req.LinkHolders = 7
			o, _ := Build(req, cat)
			if c.payload && o.Fingerprint() == p.Fingerprint() {
				t.Error("fingerprint ignores the link holders")
			}
		})
	}
}

// TestLinkCellsAsBefore: a linked plan's cells are the plan's cells as
// without linkage (same keys, same numbering).
func TestLinkCellsAsBefore(t *testing.T) {
	cat := linkedCatalogue(t)
	plain := *cat
	plain.Linkage = nil
	sql := "SELECT region, COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN (SELECT patient_id FROM deaths) GROUP BY region"
	a, err := Build(testRequest(sql), cat)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(testRequest(sql), &plain)
	if err != nil {
		t.Fatal(err)
	}
	ka, kb := a.Keys(), b.Keys()
	if a.Cells() != b.Cells() || len(ka) != len(kb) || strings.Join(ka[0].Labels, ",") != strings.Join(kb[0].Labels, ",") {
		t.Errorf("cells differ: %v vs %v", ka, kb)
	}
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("the linked and the local plan have one fingerprint")
	}
}

// TestStudyRowsBound pins R on a study table: a local (not linked) SUM
// takes min(catalogue MaxRowsPerPatient, rows_per_patient), so with the
// default 5 a SUM over claims (50 rows per patient) counts only each
// patient's first 5 rows; a linked one takes rows_per_patient.
func TestStudyRowsBound(t *testing.T) {
	cat := linkedCatalogue(t)
	for _, c := range []struct {
		sql  string
		rows int
	}{
		{"SELECT SUM(amount) FROM claims", 5},
		{"SELECT SUM(amount) FROM claims WITH max_rows = 50", 50},
		{"SELECT SUM(amount) FROM claims WITH max_rows = 80", 50},
		{q3, 50},
		{q3 + " WITH max_rows = 20", 20},
	} {
		p, err := Build(testRequest(c.sql), cat)
		if err != nil {
			t.Fatal(err)
		}
		if p.MaxRowsPerPatient() != c.rows {
			t.Errorf("%s: R = %d, want %d", c.sql, p.MaxRowsPerPatient(), c.rows)
		}
	}
}
