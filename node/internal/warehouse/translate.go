package warehouse

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
)

// translator turns one plan into one SQL statement with bind arguments.
type translator struct {
	d      Dialect
	schema string
	info   Info
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
	t     string // alias of the row table (the derived table of its sources)
	p     string // person alias
	l     string // location alias
	dth   string // death alias
}

// Canonical columns of a source's derived table (sourceSQL).
const (
	colID       = "row_id"      // the row id within its source
	colSrc      = "row_src"     // the source's index: row order is (row_src, row_id)
	colStandard = "std_concept" // standard concept id
	colSource   = "src_concept" // source concept id
	colValue    = "src_value"   // source value
)

// inPeriod is the condition that the event date expression date of a row
// of person expression pid falls in one of the person's observation
// periods; a row without a date cannot be placed and is kept when its
// person has a period (persons without one are dropped anyway). One EXISTS
// without an OR around it, so that the database plans a semi-join rather
// than a subquery per row.
func (tr *translator) inPeriod(pid, date string) string {
	return fmt.Sprintf("EXISTS (SELECT 1 FROM %s op WHERE op.person_id = %s AND (%s IS NULL OR %s BETWEEN op.observation_period_start_date AND op.observation_period_end_date))",
		tr.tbl("observation_period"), pid, date, date)
}

// sourceSQL is the derived table of a fedstat table: each source's rows
// under canonical column names (UNION ALL when there are several), inside
// the observation periods when they apply.
func (tr *translator) sourceSQL(m omopTable) string {
	parts := make([]string, len(m.sources))
	for i, s := range m.sources {
		null := func(c string) string {
			if c == "" {
				return "CAST(NULL AS integer)"
			}
			return "x." + c
		}
		sel := []string{
			"x." + s.id + " AS " + colID,
			strconv.Itoa(i) + " AS " + colSrc,
			"x.person_id",
			null(s.standard) + " AS " + colStandard,
			null(s.sourceConcept) + " AS " + colSource,
		}
		if s.sourceValue != "" {
			sel = append(sel, "x."+s.sourceValue+" AS "+colValue)
		} else {
			sel = append(sel, "CAST(NULL AS varchar(50)) AS "+colValue)
		}
		names := make([]string, 0, len(s.cols)+len(s.expr))
		for n := range s.cols {
			names = append(names, n)
		}
		for n := range s.expr {
			names = append(names, n)
		}
		// Every source of a table has the same fedstat columns; sort them
		// so that UNION ALL lines them up.
		slices.Sort(names)
		for _, n := range names {
			if e, ok := s.expr[n]; ok {
				sel = append(sel, "("+e+") AS "+tr.d.Quote(n))
			} else {
				sel = append(sel, "x."+s.cols[n]+" AS "+tr.d.Quote(n))
			}
		}
		q := "SELECT " + strings.Join(sel, ", ") + " FROM " + tr.tbl(s.table) + " x"
		var where []string
		if s.where != "" {
			where = append(where, fmt.Sprintf(s.where, tr.tbl("concept")))
		}
		if tr.info.Periods {
			where = append(where, tr.inPeriod("x.person_id", "x."+s.date))
		}
		if len(where) > 0 {
			q += " WHERE " + strings.Join(where, " AND ")
		}
		parts[i] = q
	}
	return "(" + strings.Join(parts, " UNION ALL ") + ")"
}

func (tr *translator) from(table string) (scope, string, error) {
	m, ok := mapping[table]
	if !ok {
		return scope{}, "", fmt.Errorf("warehouse: table %q has no OMOP mapping", table)
	}
	tr.level++
	n := strconv.Itoa(tr.level)
	s := scope{table: table, t: "t" + n, p: "p" + n, l: "l" + n, dth: "d" + n}
	person := tr.tbl("person")
	if tr.info.Periods {
		person = "(SELECT * FROM " + person + " x WHERE EXISTS (SELECT 1 FROM " + tr.tbl("observation_period") + " op WHERE op.person_id = x.person_id))"
	}
	var b strings.Builder
	if table == cdm.TablePatients {
		s.t = s.p
		fmt.Fprintf(&b, "%s %s", person, s.p)
	} else {
		fmt.Fprintf(&b, "%s %s JOIN %s %s ON %s.person_id = %s.person_id", tr.sourceSQL(m), s.t, person, s.p, s.p, s.t)
	}
	fmt.Fprintf(&b, " LEFT JOIN %s %s ON %s.location_id = %s.location_id", tr.tbl("location"), s.l, s.l, s.p)
	// death may hold more than one row per person (5.3 has no key on it):
	// the earliest date counts.
	fmt.Fprintf(&b, " LEFT JOIN (SELECT person_id, MIN(death_date) AS death_date FROM %s GROUP BY person_id) %s ON %s.person_id = %s.person_id",
		tr.tbl("death"), s.dth, s.dth, s.p)
	return s, b.String(), nil
}

// birth is the person's birth date: birth_datetime's date, else the date
// of year_of_birth, month_of_birth (default January) and day_of_birth
// (default 1), as a partial FHIR birthDate is read; NULL when neither is
// usable (no year, or a year outside 1800-2200).
func (tr *translator) birth(s scope) string {
	y, m, d := s.p+".year_of_birth", s.p+".month_of_birth", s.p+".day_of_birth"
	mm := fmt.Sprintf("(CASE WHEN %s BETWEEN 1 AND 12 THEN %s ELSE 1 END)", m, m)
	dd := fmt.Sprintf("(CASE WHEN %s BETWEEN 1 AND 31 THEN %s ELSE 1 END)", d, d)
	parts := fmt.Sprintf("(CASE WHEN %s BETWEEN 1800 AND 2200 THEN %s END)", y, tr.d.MakeDate(y, mm, dd))
	return "COALESCE(CAST(" + s.p + ".birth_datetime AS DATE), " + parts + ")"
}

// sex is gender_concept_id read as fedstat's sex; concepts outside the
// Gender vocabulary's five (0: no matching concept) fall back to
// gender_source_value with cdm.ParseSex's spellings, else "unknown".
func (tr *translator) sex(s scope) string {
	var b strings.Builder
	b.WriteString("(CASE " + s.p + ".gender_concept_id")
	for _, g := range genders {
		fmt.Fprintf(&b, " WHEN %s THEN '%s'", g[0], g[1])
	}
	src := "lower(trim(" + s.p + ".gender_source_value))"
	fmt.Fprintf(&b, " ELSE (CASE WHEN %[1]s IN ('female', 'f') THEN 'female' WHEN %[1]s IN ('male', 'm') THEN 'male' WHEN %[1]s IN ('other', 'o') THEN 'other' ELSE 'unknown' END) END)", src)
	return b.String()
}

// conceptCase reads a concept id column through a table of concept ids to
// fedstat values, falling back to a source value column.
func conceptCase(col string, table [][2]string, fallback string) string {
	var b strings.Builder
	b.WriteString("(CASE " + col)
	for _, v := range table {
		fmt.Fprintf(&b, " WHEN %s THEN '%s'", v[0], v[1])
	}
	b.WriteString(" ELSE " + fallback + " END)")
	return b.String()
}

// vocabURI is the system URI of the vocabulary_id expression v.
func vocabURI(v string) string {
	var b strings.Builder
	b.WriteString("(CASE " + v)
	for _, x := range vocabularies {
		fmt.Fprintf(&b, " WHEN '%s' THEN '%s'", x[0], x[1])
	}
	b.WriteString(" ELSE " + v + " END)")
	return b.String()
}

// conceptField reads field (an SQL expression over concept alias c) of the
// concept whose id is the column idCol of s's row (0, "No matching
// concept", is none).
func (tr *translator) conceptField(s scope, idCol, field string) string {
	return fmt.Sprintf("(SELECT %s FROM %s c WHERE c.concept_id = NULLIF(%s.%s, 0))", field, tr.tbl("concept"), s.t, idCol)
}

// coded reports whether column name of s's table is its code or system
// column, read through concepts.
func coded(s scope, name string) (code, system bool) {
	m := mapping[s.table]
	return m.code != "" && name == m.code, m.system != "" && name == m.system
}

// column returns the SQL of a column: text never NULL (the empty string when missing),
// dates as DATE (NULL missing), numbers as float8 (NULL missing).
func (tr *translator) column(c plan.ColumnRef, s scope) (string, error) {
	var x string
	switch {
	case c.Patient || s.table == cdm.TablePatients:
		switch c.Name {
		case "sex":
			x = tr.sex(s)
		case "region":
			x = s.l + ".location_source_value"
		case "birth_date":
			x = tr.birth(s)
		case "death_date":
			x = s.dth + ".death_date"
		case "race":
			x = conceptCase(s.p+".race_concept_id", races, s.p+".race_source_value")
		case "ethnicity":
			x = conceptCase(s.p+".ethnicity_concept_id", ethnicities, s.p+".ethnicity_source_value")
		}
	default:
		code, system := coded(s, c.Name)
		switch {
		case code:
			// What the record was coded as: the source value, else the
			// source concept's code, else the standard concept's.
			x = "COALESCE(" + s.t + "." + colValue + ", " + tr.conceptField(s, colSource, "c.concept_code") + ", " + tr.conceptField(s, colStandard, "c.concept_code") + ")"
		case system:
			x = "COALESCE(" + tr.conceptField(s, colSource, vocabURI("c.vocabulary_id")) + ", " + tr.conceptField(s, colStandard, vocabURI("c.vocabulary_id")) + ")"
		default:
			if tr.hasColumn(s.table, c.Name) {
				x = s.t + "." + tr.d.Quote(c.Name)
			}
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

// hasColumn reports whether the sources of table map the fedstat column
// name.
func (tr *translator) hasColumn(table, name string) bool {
	for _, s := range mapping[table].sources {
		_, c := s.cols[name]
		_, e := s.expr[name]
		if !c && !e {
			return false
		}
	}
	return len(mapping[table].sources) > 0
}

// textSet is the bound form of a text filter: values (IN) and prefixes
// (LIKE, code families), whose placeholders are bound once and named by
// every condition built from it.
type textSet struct {
	in    string   // "(ph, ...)" or ""
	exact []string // placeholders of code families' heads
	like  []string // placeholders of LIKE patterns
}

// bindText binds values and prefixes; on a code column (codes) a prefix is
// a code family (terminology.FamilyLike: the head and what lies below it),
// else a plain prefix. A pattern's own wildcards are escaped.
func (tr *translator) bindText(values, prefixes []string, codes bool) textSet {
	var ts textSet
	if len(values) > 0 {
		ph := make([]string, len(values))
		for i, v := range values {
			ph[i] = tr.arg(v)
		}
		ts.in = "(" + strings.Join(ph, ", ") + ")"
	}
	esc := strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)
	for _, pre := range prefixes {
		like := pre
		if codes {
			var exact string
			if exact, like = terminology.FamilyLike(pre); exact != "" {
				ts.exact = append(ts.exact, tr.arg(exact))
			}
		}
		ts.like = append(ts.like, tr.arg(esc.Replace(like)+"%"))
	}
	return ts
}

// cond is the condition that the text expression x is in the set; never
// NULL when x is not.
func (ts textSet) cond(x string) string {
	var terms []string
	if ts.in != "" {
		terms = append(terms, x+" IN "+ts.in)
	}
	for _, e := range ts.exact {
		terms = append(terms, x+" = "+e)
	}
	for _, l := range ts.like {
		terms = append(terms, x+" LIKE "+l+` ESCAPE '\'`)
	}
	if len(terms) == 0 {
		return "FALSE"
	}
	return "(" + strings.Join(terms, " OR ") + ")"
}

// codeMatch is the condition that a row of s carries one of the codes of
// ts (values, and code families by concept_code). A row carries:
//
//   - its source value (*_source_value) and its source concept's code:
//     what the source system recorded, local codes included;
//   - every code that names its standard concept (*_concept_id) or an
//     ancestor of it: a standard concept whose concept_code is the value
//     names itself and, through concept_ancestor, every concept below it;
//     a non-standard concept (ICD-10, a local code) names the standard
//     concepts it 'Maps to' (concept_relationship, valid rows), those
//     exactly: a mapped code's standard concept is often broader than the
//     code (E11.9 maps to Type 2 diabetes mellitus), and expanding it
//     would count every kind of type 2 diabetes.
//
// The result is never NULL.
func (tr *translator) codeMatch(s scope, ts textSet) string {
	concept, ancestor, rel := tr.tbl("concept"), tr.tbl("concept_ancestor"), tr.tbl("concept_relationship")
	code := ts.cond("c.concept_code")
	var or []string
	or = append(or, ts.cond("COALESCE("+s.t+"."+colValue+", '')"))
	or = append(or, fmt.Sprintf("COALESCE(%s.%s IN (SELECT c.concept_id FROM %s c WHERE %s), FALSE)",
		s.t, colSource, concept, code))
	std := fmt.Sprintf("SELECT ca.descendant_concept_id FROM %s c JOIN %s ca ON ca.ancestor_concept_id = c.concept_id WHERE c.standard_concept = 'S' AND %s", concept, ancestor, code)
	std += fmt.Sprintf(" UNION ALL SELECT c.concept_id FROM %s c WHERE c.standard_concept = 'S' AND %s", concept, code)
	std += fmt.Sprintf(" UNION ALL SELECT cr.concept_id_2 FROM %s c JOIN %s cr ON cr.concept_id_1 = c.concept_id WHERE cr.relationship_id = 'Maps to' AND cr.invalid_reason IS NULL AND c.standard_concept IS DISTINCT FROM 'S' AND %s", concept, rel, code)
	or = append(or, fmt.Sprintf("COALESCE(%s.%s IN (%s), FALSE)", s.t, colStandard, std))
	return "(" + strings.Join(or, " OR ") + ")"
}

// systemMatch is the condition that a row of s has one of the code systems
// of ts: the vocabulary (as a system URI) of its source concept or of its
// standard concept. The result is never NULL.
func (tr *translator) systemMatch(s scope, ts textSet) (string, error) {
	read, err := tr.column(plan.ColumnRef{Name: mapping[s.table].system, Type: cdm.TypeString}, s)
	if err != nil {
		return "", err
	}
	std := "COALESCE(" + tr.conceptField(s, colStandard, vocabURI("c.vocabulary_id")) + ", '')"
	return "(" + ts.cond(read) + " OR " + ts.cond(std) + ")", nil
}

// stringMatch is the condition that text column c is one of values or
// starts with one of prefixes (a code family when codes is set), never
// NULL: code and system columns through their concepts, others by value.
func (tr *translator) stringMatch(c plan.ColumnRef, values, prefixes []string, codes bool, s scope) (string, error) {
	if !c.Patient && s.table != cdm.TablePatients {
		switch code, system := coded(s, c.Name); {
		case code:
			return tr.codeMatch(s, tr.bindText(values, prefixes, codes)), nil
		case system:
			return tr.systemMatch(s, tr.bindText(values, prefixes, codes))
		}
	}
	x, err := tr.column(c, s)
	if err != nil {
		return "", err
	}
	return tr.bindText(values, prefixes, codes).cond(x), nil
}

func (tr *translator) ref() string { return tr.d.DateLiteral(tr.p.ReferenceDate()) }

// age is the age in whole years at the reference date (NULL unknown).
func (tr *translator) age(s scope) string {
	b := tr.birth(s)
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
	case plan.IndicatorValue:
		c, err := tr.pred(v.P, s)
		if err != nil {
			return "", err
		}
		return tr.d.Float("CASE WHEN " + c + " THEN 1 ELSE 0 END"), nil
	case plan.FuncValue:
		x, err := tr.value(v.X, s)
		if err != nil {
			return "", err
		}
		switch v.Name {
		case "exp":
			// As Go's math.Exp: +Inf above, 0 below the float64 range
			// (PostgreSQL raises overflow and underflow errors there).
			return fmt.Sprintf("(CASE WHEN %[1]s > 709.782712893384 THEN %[2]s WHEN %[1]s < -745.1332191019411 THEN %[3]s ELSE exp(%[1]s) END)",
				x, tr.d.Float("'Infinity'"), tr.d.Float("0")), nil
		case "ln":
			return fmt.Sprintf("(CASE WHEN %[1]s > 0 THEN ln(%[1]s) END)", x), nil
		}
		return "", fmt.Errorf("warehouse: unsupported function %q", v.Name)
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
		m, err := tr.stringMatch(p.Col, p.Values, p.Prefixes, p.Codes, s)
		if err != nil {
			return "", err
		}
		if p.Negate {
			return "(NOT " + m + ")", nil
		}
		return m, nil
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
		// The first label the row matches (as a filter on that label
		// would): a coded row carries several codes.
		var b strings.Builder
		b.WriteString("(CASE")
		for i, l := range k.Labels {
			// A code label collects its every form (E119 the stored E11.9).
			forms := []string{l}
			if k.Codes {
				forms = terminology.Forms(l)
			}
			m, err := tr.stringMatch(k.Col, forms, nil, k.Codes, s)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&b, " WHEN %s THEN %d", m, i)
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
		i := tr.d.IntDiv(fmt.Sprintf("(%s - %d)", a, k.Start), strconv.Itoa(k.Width))
		fmt.Fprintf(&b, " WHEN %s < %d THEN NULL WHEN %s < %d THEN %s END)", a, k.Start, i, bands, i)
		return b.String(), nil
	}
	return "", fmt.Errorf("warehouse: unsupported key kind %d", k.Kind)
}

// Translate returns the SQL statement (and its bind arguments) that computes
// p's exact aggregates on an OMOP CDM 5.3/5.4 schema described by info
// (Backend.Info; the zero Info reads without observation periods): one row
// per non-empty cell, (cell, measure 0, measure 1, ...), all float8. The
// contribution bounds are enforced as queries/eval does, with the OMOP row
// order (source, row id) (a fedstat table read from several OMOP tables
// takes them in mapping order):
//
//   - rn: ROW_NUMBER() OVER (PARTITION BY person, cell ORDER BY row): the
//     first R rows of a (patient, cell) count;
//   - gr: DENSE_RANK() OVER (PARTITION BY person ORDER BY the cell's first
//     row): the first G cells a patient reaches in row order count.
//
// Sums are added in row order (SUM(x ORDER BY row)) so that floating-point
// rounding matches eval's loop where the dialect supports it.
func Translate(d Dialect, schema string, info Info, p *plan.Plan) (string, []any, error) {
	if ch, ok := d.(ClickHouse); ok {
		q, err := translateClickHouse(ch, schema, info, p)
		return q, nil, err
	}
	tr := &translator{d: d, schema: schema, info: info, p: p}
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
	sel := []string{s.t + ".person_id AS pid", s.t + "." + colSrc + " AS src", s.t + "." + colID + " AS ord", cell + " AS cell"}
	if p.Table() == cdm.TablePatients {
		sel[1], sel[2] = "0 AS src", s.t+".person_id AS ord"
	}
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
			aggs = append(aggs, "COALESCE(SUM("+v+" ORDER BY src, ord), 0)")
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
		q += "b AS (SELECT base.*, ROW_NUMBER() OVER w AS rn, FIRST_VALUE(src) OVER w AS fs, FIRST_VALUE(ord) OVER w AS fo FROM base WHERE cell IS NOT NULL WINDOW w AS (PARTITION BY pid, cell ORDER BY src, ord)),\n" +
			"c AS (SELECT b.*, DENSE_RANK() OVER (PARTITION BY pid ORDER BY fs, fo) AS gr FROM b WHERE rn <= " + r + ")\n" +
			"SELECT " + strings.Join(aggs, ", ") + " FROM c WHERE gr <= " + strconv.Itoa(p.MaxGroupsPerPatient()) + " GROUP BY cell"
	} else {
		// Patient-level keys only: a patient's rows share one cell, so only
		// the row bound applies (as eval's per-patient counter).
		q += "b AS (SELECT base.*, ROW_NUMBER() OVER (PARTITION BY pid, cell ORDER BY src, ord) AS rn FROM base WHERE cell IS NOT NULL)\n" +
			"SELECT " + strings.Join(aggs, ", ") + " FROM b WHERE rn <= " + r + " GROUP BY cell"
	}
	return q, tr.args, nil
}

func fl(d Dialect, v float64) string { return d.Float("'" + strconv.FormatFloat(v, 'g', -1, 64) + "'") }
