package warehouse

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
)

// omopTable maps one fedstat CDM table to its OMOP CDM v5.4 table.
type omopTable struct {
	name string            // OMOP table
	id   string            // row id column: the deterministic row order
	cols map[string]string // fedstat column -> OMOP column of this table
	// concepts maps a fedstat column to the concept read through a source
	// concept id column of this table: the concept's vocabulary (as a FHIR
	// system URI, see vocabularies) or its concept_code.
	concepts map[string]conceptCol
}

// conceptCol reads a concept field through a *_source_concept_id column.
type conceptCol struct {
	idCol string // e.g. condition_source_concept_id
	vocab bool   // true: vocabulary_id as a system URI; false: concept_code
}

// vocabularies maps OMOP vocabulary_id to the code system URIs of fedstat's
// CDM. Other vocabulary ids are passed through as they are.
var vocabularies = [][2]string{
	{"SNOMED", cdm.SystemSNOMED},
	{"LOINC", cdm.SystemLOINC},
	{"RxNorm", cdm.SystemRxNorm},
	{"ICD10", cdm.SystemICD10},
	{"ICD10CM", cdm.SystemICD10CM},
}

// mapping is the fedstat CDM -> OMOP CDM v5.4 mapping (docs/warehouse.md).
// Patient columns (sex, region, birth_date, death_date) are read through
// person, location and death on every table.
var mapping = map[string]omopTable{
	cdm.TablePatients: {name: "person", id: "person_id"},
	cdm.TableConditions: {name: "condition_occurrence", id: "condition_occurrence_id", cols: map[string]string{
		"code": "condition_source_value", "onset_date": "condition_start_date", "abatement_date": "condition_end_date"},
		concepts: map[string]conceptCol{"system": {idCol: "condition_source_concept_id", vocab: true}}},
	cdm.TableObservations: {name: "measurement", id: "measurement_id", cols: map[string]string{
		"code": "measurement_source_value", "date": "measurement_date", "value": "value_as_number", "unit": "unit_source_value"},
		concepts: map[string]conceptCol{"system": {idCol: "measurement_source_concept_id", vocab: true}}},
	cdm.TableEncounters: {name: "visit_occurrence", id: "visit_occurrence_id", cols: map[string]string{
		"class": "visit_source_value", "start_date": "visit_start_date", "end_date": "visit_end_date"},
		concepts: map[string]conceptCol{"type_code": {idCol: "visit_source_concept_id"}, "type_system": {idCol: "visit_source_concept_id", vocab: true}}},
	cdm.TableMedications: {name: "drug_exposure", id: "drug_exposure_id", cols: map[string]string{
		"code": "drug_source_value", "authored_date": "drug_exposure_start_date"},
		concepts: map[string]conceptCol{"system": {idCol: "drug_source_concept_id", vocab: true}}},
}

// translator turns one plan into one SQL statement with bind arguments.
type translator struct {
	d      Dialect
	schema string
	p      *plan.Plan
	args   []any
	level  int
}

func (tr *translator) arg(v any) string {
	tr.args = append(tr.args, v)
	return tr.d.Placeholder(len(tr.args))
}

func (tr *translator) tbl(name string) string { return tr.d.Quote(tr.schema) + "." + tr.d.Quote(name) }

// scope is one FROM level: the row table's alias and the patient aliases.
type scope struct {
	table string
	t     string // alias of the row table
	p     string // person alias
	l     string // location alias
	dth   string // death alias
}

func (tr *translator) from(table string) (scope, string, error) {
	m, ok := mapping[table]
	if !ok {
		return scope{}, "", fmt.Errorf("warehouse: table %q has no OMOP mapping", table)
	}
	tr.level++
	n := strconv.Itoa(tr.level)
	s := scope{table: table, t: "t" + n, p: "p" + n, l: "l" + n, dth: "d" + n}
	var b strings.Builder
	if table == cdm.TablePatients {
		s.t = s.p
		fmt.Fprintf(&b, "%s %s", tr.tbl("person"), s.p)
	} else {
		fmt.Fprintf(&b, "%s %s JOIN %s %s ON %s.person_id = %s.person_id", tr.tbl(m.name), s.t, tr.tbl("person"), s.p, s.p, s.t)
	}
	fmt.Fprintf(&b, " LEFT JOIN %s %s ON %s.location_id = %s.location_id", tr.tbl("location"), s.l, s.l, s.p)
	fmt.Fprintf(&b, " LEFT JOIN %s %s ON %s.person_id = %s.person_id", tr.tbl("death"), s.dth, s.dth, s.p)
	return s, b.String(), nil
}

// column returns the SQL of a column: text never NULL (the empty string when missing),
// dates as DATE (NULL missing), numbers as float8 (NULL missing).
func (tr *translator) column(c plan.ColumnRef, s scope) (string, error) {
	var x string
	switch {
	case c.Patient || s.table == cdm.TablePatients:
		switch c.Name {
		case "sex":
			x = s.p + ".gender_source_value"
		case "region":
			x = s.l + ".location_source_value"
		case "birth_date":
			x = "CAST(" + s.p + ".birth_datetime AS DATE)"
		case "death_date":
			x = s.dth + ".death_date"
		}
	default:
		m := mapping[s.table]
		if col, ok := m.cols[c.Name]; ok {
			x = s.t + "." + col
		} else if cc, ok := m.concepts[c.Name]; ok {
			f := "c.concept_code"
			if cc.vocab {
				var b strings.Builder
				b.WriteString("CASE c.vocabulary_id")
				for _, v := range vocabularies {
					fmt.Fprintf(&b, " WHEN '%s' THEN '%s'", v[0], v[1])
				}
				b.WriteString(" ELSE c.vocabulary_id END")
				f = b.String()
			}
			x = fmt.Sprintf("(SELECT %s FROM %s c WHERE c.concept_id = %s.%s)", f, tr.tbl("concept"), s.t, cc.idCol)
		}
	}
	if x == "" {
		return "", fmt.Errorf("warehouse: column %s.%s has no OMOP mapping", s.table, c.Name)
	}
	if c.Type == cdm.TypeString {
		x = "COALESCE(" + x + ", '')"
	}
	return x, nil
}

func (tr *translator) ref() string { return tr.d.DateLiteral(tr.p.ReferenceDate()) }

// age is the age in whole years at the reference date (NULL unknown).
func (tr *translator) age(s scope) string {
	b := "CAST(" + s.p + ".birth_datetime AS DATE)"
	return fmt.Sprintf("(CASE WHEN %s <= %s THEN %s END)", b, tr.ref(), tr.d.Age(b, tr.ref()))
}

// value translates a numeric expression to float8 SQL (NULL: missing).
func (tr *translator) value(v plan.Value, s scope) (string, error) {
	switch v := v.(type) {
	case plan.ConstValue:
		return tr.d.Float("'" + strconv.FormatFloat(v.V, 'g', -1, 64) + "'"), nil
	case plan.AgeValue:
		return tr.d.Float(tr.age(s)), nil
	case plan.ColumnValue:
		c, err := tr.column(v.Col, s)
		if err != nil {
			return "", err
		}
		switch v.Col.Type {
		case cdm.TypeDate:
			return tr.d.Float(tr.d.DayNumber(c)), nil
		case cdm.TypeNumber:
			return tr.d.Float(c), nil
		}
		return "", fmt.Errorf("warehouse: column %s is not numeric", v.Col.Name)
	case plan.NegValue:
		x, err := tr.value(v.X, s)
		return "(-" + x + ")", err
	case plan.ArithValue:
		l, err := tr.value(v.L, s)
		if err != nil {
			return "", err
		}
		r, err := tr.value(v.R, s)
		if err != nil {
			return "", err
		}
		switch v.Op {
		case '+', '-', '*':
			return "(" + l + " " + string(v.Op) + " " + r + ")", nil
		case '/':
			return "(" + l + " / NULLIF(" + r + ", 0))", nil
		}
	}
	return "", fmt.Errorf("warehouse: unsupported value %T", v)
}

// pred translates a predicate to a boolean that is never NULL (two-valued
// logic, as eval).
func (tr *translator) pred(p plan.Pred, s scope) (string, error) {
	switch p := p.(type) {
	case *plan.And, *plan.Or:
		var l, r plan.Pred
		op := "AND"
		if a, ok := p.(*plan.And); ok {
			l, r = a.L, a.R
		} else {
			o := p.(*plan.Or)
			l, r, op = o.L, o.R, "OR"
		}
		ls, err := tr.pred(l, s)
		if err != nil {
			return "", err
		}
		rs, err := tr.pred(r, s)
		if err != nil {
			return "", err
		}
		return "(" + ls + " " + op + " " + rs + ")", nil
	case *plan.Not:
		x, err := tr.pred(p.X, s)
		return "(NOT " + x + ")", err
	case *plan.StringIn:
		c, err := tr.column(p.Col, s)
		if err != nil {
			return "", err
		}
		var terms []string
		if len(p.Values) > 0 {
			ph := make([]string, len(p.Values))
			for i, v := range p.Values {
				ph[i] = tr.arg(v)
			}
			terms = append(terms, c+" IN ("+strings.Join(ph, ", ")+")")
		}
		for _, pre := range p.Prefixes {
			// A code family (terminology.FamilyLike): the head and LIKE
			// 'below%', with the head's own wildcards escaped.
			like := pre
			if p.Codes {
				var exact string
				if exact, like = terminology.FamilyLike(pre); exact != "" {
					terms = append(terms, c+" = "+tr.arg(exact))
				}
			}
			esc := strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(like)
			terms = append(terms, c+" LIKE "+tr.arg(esc+"%")+` ESCAPE '\'`)
		}
		if len(terms) == 0 {
			terms = []string{"FALSE"}
		}
		not := ""
		if p.Negate {
			not = "NOT "
		}
		return "(" + not + "(" + strings.Join(terms, " OR ") + "))", nil
	case *plan.Compare:
		l, err := tr.value(p.L, s)
		if err != nil {
			return "", err
		}
		r, err := tr.value(p.R, s)
		if err != nil {
			return "", err
		}
		switch p.Op {
		case "=", "<>", "<", "<=", ">", ">=":
		default:
			return "", fmt.Errorf("warehouse: unsupported comparison %q", p.Op)
		}
		return "COALESCE(" + l + " " + p.Op + " " + r + ", FALSE)", nil
	case *plan.Cohort:
		sub, from, err := tr.from(p.Table)
		if err != nil {
			return "", err
		}
		q := "SELECT " + sub.t + ".person_id FROM " + from
		if p.Where != nil {
			w, err := tr.pred(p.Where, sub)
			if err != nil {
				return "", err
			}
			q += " WHERE " + w
		}
		not := ""
		if p.Negate {
			not = "NOT "
		}
		return "(" + s.t + ".person_id " + not + "IN (" + q + "))", nil
	}
	return "", fmt.Errorf("warehouse: unsupported predicate %T", p)
}

// keyIndex translates a group key to its label index (NULL: outside the
// public domain, the row is dropped), as eval's keyIndex.
func (tr *translator) keyIndex(k plan.Key, s scope) (string, error) {
	n := len(k.Labels)
	switch k.Kind {
	case plan.KeyString:
		c, err := tr.column(k.Col, s)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		b.WriteString("(CASE " + c)
		seen := map[string]bool{}
		for i, l := range k.Labels {
			forms := []string{l}
			if k.Codes {
				forms = terminology.Forms(l)
			}
			for _, f := range forms {
				if !seen[f] {
					seen[f] = true
					fmt.Fprintf(&b, " WHEN %s THEN %d", tr.arg(f), i)
				}
			}
		}
		b.WriteString(" END)")
		return b.String(), nil
	case plan.KeyWeek, plan.KeyMonth, plan.KeyYear:
		c, err := tr.column(k.Col, s)
		if err != nil {
			return "", err
		}
		var bk string
		switch k.Kind {
		case plan.KeyWeek:
			bk = tr.d.Week(c)
		case plan.KeyMonth:
			bk = tr.d.Month(c)
		default:
			bk = tr.d.Year(c)
		}
		i := fmt.Sprintf("(%s - %d)", bk, k.First)
		return fmt.Sprintf("(CASE WHEN %s BETWEEN 0 AND %d THEN %s END)", i, n-1, i), nil
	case plan.KeyAgeBand:
		a := tr.age(s)
		bands := n
		unknown, open := "NULL", "NULL"
		if k.Unknown {
			bands--
			unknown = strconv.Itoa(n - 1)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "(CASE WHEN %s IS NULL THEN %s", a, unknown)
		if k.OpenTop {
			bands--
			open = strconv.Itoa(bands)
			fmt.Fprintf(&b, " WHEN %s >= %d THEN %s", a, k.Top, open)
		}
		i := fmt.Sprintf("((%s - %d) / %d)", a, k.Start, k.Width)
		fmt.Fprintf(&b, " WHEN %s < %d THEN NULL WHEN %s < %d THEN %s END)", a, k.Start, i, bands, i)
		return b.String(), nil
	}
	return "", fmt.Errorf("warehouse: unsupported key kind %d", k.Kind)
}

// Translate returns the SQL statement (and its bind arguments) that computes
// p's exact aggregates on an OMOP CDM v5.4 schema: one row per non-empty
// cell, (cell, measure 0, measure 1, ...), all float8. The contribution
// bounds are enforced as queries/eval does, with the OMOP row id as the row
// order:
//
//   - rn: ROW_NUMBER() OVER (PARTITION BY person, cell ORDER BY id): the
//     first R rows of a (patient, cell) count;
//   - gr: DENSE_RANK() OVER (PARTITION BY person ORDER BY the cell's first
//     id): the first G cells a patient reaches in row order count.
//
// Sums are added in row order (SUM(x ORDER BY id)) so that floating-point
// rounding matches eval's loop where the dialect supports it.
func Translate(d Dialect, schema string, p *plan.Plan) (string, []any, error) {
	tr := &translator{d: d, schema: schema, p: p}
	s, from, err := tr.from(p.Table())
	if err != nil {
		return "", nil, err
	}
	cell := "0"
	if keys := p.Keys(); len(keys) > 0 {
		parts := make([]string, len(keys))
		stride := 1
		for i := len(keys) - 1; i >= 0; i-- {
			ki, err := tr.keyIndex(keys[i], s)
			if err != nil {
				return "", nil, err
			}
			parts[i] = fmt.Sprintf("%s * %d", ki, stride)
			stride *= len(keys[i].Labels)
		}
		cell = "(" + strings.Join(parts, " + ") + ")"
	}
	ms := p.Measures()
	sel := []string{s.t + ".person_id AS pid", s.t + "." + mapping[p.Table()].id + " AS ord", cell + " AS cell"}
	aggs := []string{"cell"}
	for i, m := range ms {
		v := fmt.Sprintf("v%d", i)
		switch m.Kind {
		case plan.CountRows:
			aggs = append(aggs, d.Float("COUNT(*)"))
		case plan.CountDistinct:
			aggs = append(aggs, d.Float("COUNT(DISTINCT pid)"))
		case plan.CountValues, plan.Sum, plan.SumSquares:
			x, err := tr.value(m.Value, s)
			if err != nil {
				return "", nil, err
			}
			if m.Kind == plan.CountValues {
				sel = append(sel, x+" AS "+v)
				aggs = append(aggs, d.Float("COUNT("+v+")"))
				break
			}
			c := fmt.Sprintf("(LEAST(GREATEST(%s, %s), %s) - %s)", x, fl(d, m.Lo), fl(d, m.Hi), fl(d, m.Center))
			if m.Kind == plan.SumSquares {
				c = "(" + c + " * " + c + ")"
			}
			sel = append(sel, fmt.Sprintf("(CASE WHEN %s IS NULL THEN NULL ELSE %s END) AS %s", x, c, v))
			aggs = append(aggs, "COALESCE(SUM("+v+" ORDER BY ord), 0)")
		default:
			return "", nil, fmt.Errorf("warehouse: unsupported measure kind %d", m.Kind)
		}
	}
	where := ""
	if w := p.Where(); w != nil {
		ws, err := tr.pred(w, s)
		if err != nil {
			return "", nil, err
		}
		where = " WHERE " + ws
	}
	rowLevel := false
	for _, k := range p.Keys() {
		rowLevel = rowLevel || k.RowLevel
	}
	r := strconv.Itoa(p.MaxRowsPerPatient())
	q := "WITH base AS (SELECT " + strings.Join(sel, ", ") + " FROM " + from + where + "),\n"
	if rowLevel {
		q += "b AS (SELECT base.*, ROW_NUMBER() OVER (PARTITION BY pid, cell ORDER BY ord) AS rn, MIN(ord) OVER (PARTITION BY pid, cell) AS fo FROM base WHERE cell IS NOT NULL),\n" +
			"c AS (SELECT b.*, DENSE_RANK() OVER (PARTITION BY pid ORDER BY fo) AS gr FROM b WHERE rn <= " + r + ")\n" +
			"SELECT " + strings.Join(aggs, ", ") + " FROM c WHERE gr <= " + strconv.Itoa(p.MaxGroupsPerPatient()) + " GROUP BY cell"
	} else {
		// Patient-level keys only: a patient's rows share one cell, so only
		// the row bound applies (as eval's per-patient counter).
		q += "b AS (SELECT base.*, ROW_NUMBER() OVER (PARTITION BY pid, cell ORDER BY ord) AS rn FROM base WHERE cell IS NOT NULL)\n" +
			"SELECT " + strings.Join(aggs, ", ") + " FROM b WHERE rn <= " + r + " GROUP BY cell"
	}
	return q, tr.args, nil
}

func fl(d Dialect, v float64) string { return d.Float("'" + strconv.FormatFloat(v, 'g', -1, 64) + "'") }
