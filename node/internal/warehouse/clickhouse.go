package warehouse

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/queries/plan"
)

// ClickHouse is the ClickHouse dialect, for the largest nodes: an OMOP CDM
// whose person-keyed tables (person, death, observation_period and the
// event tables) are Distributed tables sharded by person_id, the
// vocabulary tables (concept, concept_ancestor, concept_relationship),
// location and cdm_source plain tables. It is written for ClickHouse 18.16
// (what Debian packages), which has no window functions, no correlated
// subqueries, one JOIN per SELECT and no query parameters, so it has its
// own translator (translateClickHouse) rather than the standard-SQL one;
// the plan shapes and the answers are the same (docs/warehouse.md).
//
// Cluster and Shards are read by the test loader (LoadRecords) only: the
// remote_servers cluster the Distributed tables address, and each shard's
// database (its replica's default_database), where the loader writes the
// rows of persons with person_id % len(Shards) == i. Queries need neither.
type ClickHouse struct {
	Cluster string   // defaults to "fedstat"
	Shards  []string // none: the loader writes plain MergeTree tables in the schema
}

// ErrClickHouseUnsupported is returned for a plan or schema the ClickHouse
// dialect cannot push down; the error names what.
var ErrClickHouseUnsupported = errors.New("warehouse: not supported on ClickHouse")

// Name implements Dialect.
func (ClickHouse) Name() string { return "clickhouse" }

// Quote implements Dialect.
func (ClickHouse) Quote(id string) string {
	return "`" + strings.NewReplacer(`\`, `\\`, "`", "\\`").Replace(id) + "`"
}

// Placeholder implements Dialect; ClickHouse statements carry their values
// as literals (chLiteral), so the translator never asks for one.
func (ClickHouse) Placeholder(n int) string { return "{p" + strconv.Itoa(n) + "}" }

// DayNumber implements Dialect.
func (ClickHouse) DayNumber(d string) string { return "toInt64(toInt32(" + d + "))" }

// DateLiteral implements Dialect: a day number (dates are day numbers
// throughout the ClickHouse translation, so that dates before 1970, which
// 18.16's Date cannot hold, still compute).
func (ClickHouse) DateLiteral(d cdm.Date) string { return "toInt64(" + strconv.Itoa(int(d)) + ")" }

// Week implements Dialect for a day-number expression.
func (ClickHouse) Week(d string) string { return "toInt64(floor((" + d + " + 3) / 7))" }

// Month implements Dialect for a day-number expression.
func (ClickHouse) Month(d string) string {
	y, m, _ := chCivil(d)
	return "(" + y + " * 12 + " + m + " - 1)"
}

// Year implements Dialect for a day-number expression.
func (ClickHouse) Year(d string) string { y, _, _ := chCivil(d); return y }

// Age implements Dialect for day-number expressions.
func (ClickHouse) Age(birth, ref string) string {
	by, bm, bd := chCivil(birth)
	ry, rm, rd := chCivil(ref)
	return fmt.Sprintf("(%s - %s - ((%s * 100 + %s) < (%s * 100 + %s)))", ry, by, rm, rd, bm, bd)
}

// MakeDate implements Dialect: the day number of y-m-1 plus d-1.
func (ClickHouse) MakeDate(y, m, d string) string {
	return "(" + chDaysFromCivil(y, m) + " + toInt64(" + d + ") - 1)"
}

// IntDiv implements Dialect.
func (ClickHouse) IntDiv(a, b string) string { return "intDiv(" + a + ", " + b + ")" }

// Float implements Dialect.
func (ClickHouse) Float(x string) string { return "toFloat64(" + x + ")" }

// Limit implements Dialect.
func (ClickHouse) Limit(q string, n int) string { return q + " LIMIT " + strconv.Itoa(n) }

// chDaysFromCivil is the day number (days since 1970-01-01) of the first
// day of month m (1-12) of year y (positive), H. Hinnant's days_from_civil.
func chDaysFromCivil(y, m string) string {
	yy := fmt.Sprintf("(toInt64(%s) - (%s <= 2))", y, m)
	era := "intDiv(" + yy + ", 400)"
	yoe := "(" + yy + " % 400)"
	doy := fmt.Sprintf("intDiv(153 * (toInt64(%[1]s) + (CASE WHEN %[1]s > 2 THEN -3 ELSE 9 END)) + 2, 5)", m)
	doe := fmt.Sprintf("(%[1]s * 365 + intDiv(%[1]s, 4) - intDiv(%[1]s, 100) + %[2]s)", yoe, doy)
	return "(" + era + " * 146097 + " + doe + " - 719468)"
}

// chCivil is the year, month and day of a day-number expression (from year
// 0 on), H. Hinnant's civil_from_days in integer arithmetic.
func chCivil(dn string) (y, m, d string) {
	z := "(toInt64(" + dn + ") + 719468)"
	era := "intDiv(" + z + ", 146097)"
	doe := "(" + z + " % 146097)"
	yoe := fmt.Sprintf("intDiv(%[1]s - intDiv(%[1]s, 1460) + intDiv(%[1]s, 36524) - intDiv(%[1]s, 146096), 365)", doe)
	doy := fmt.Sprintf("(%[1]s - (365 * %[2]s + intDiv(%[2]s, 4) - intDiv(%[2]s, 100)))", doe, yoe)
	mp := "intDiv(5 * " + doy + " + 2, 153)"
	m = "(" + mp + " + (CASE WHEN " + mp + " < 10 THEN 3 ELSE -9 END))"
	d = "(" + doy + " - intDiv(153 * " + mp + " + 2, 5) + 1)"
	y = "(" + yoe + " + " + era + " * 400 + (" + m + " <= 2))"
	return y, m, d
}

// chLiteral is s as a ClickHouse string literal: backslash and quote
// escaped, control bytes as \xHH.
func chLiteral(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// chTranslator turns one plan into one ClickHouse statement. Every
// fedstat table is read per OMOP source, with the patient columns it
// needs (from, persons), so that filters, cohorts and cell numbers are
// evaluated on the shards and a (patient, cell)'s rows are collected
// there.
type chTranslator struct {
	d      ClickHouse
	schema string
	info   Info
	p      *plan.Plan
}

func (tr *chTranslator) tbl(name string) string {
	return tr.d.Quote(tr.schema) + "." + tr.d.Quote(name)
}

// chScope is one source's SELECT: the fedstat table, the OMOP source and
// the patient columns it reads.
type chScope struct {
	table string
	src   source
	// x prefixes the source's columns: empty, since ClickHouse 18.16
	// loses a table alias where it rewrites an IN subquery's Distributed
	// table to the shard's local one (distributed_product_mode = 'local').
	// Every SELECT reads one OMOP table, and the person view's columns are
	// named apart (p_*), so unqualified names are unambiguous.
	x string
	// need collects the person view's columns the scope reads (column,
	// value, keyIndex add to it); none: the rows are not joined with the
	// person view.
	need map[string]bool
}

// ref is the plan's reference date as a day number.
func (tr *chTranslator) ref() string { return tr.d.DateLiteral(tr.p.ReferenceDate()) }

// persons is the person view: person_id and the patient columns need
// names (p_sex, p_race, p_ethnicity, p_birth and p_death as day numbers,
// p_age at the reference date, p_region, and p_periods, the person's
// observation periods as (start, end) day numbers), one row per person, read as
// docs/warehouse.md maps them (the same rules as the standard-SQL
// translator). Only the columns asked for are computed, and location and
// death are joined only when region or death_date is.
func (tr *chTranslator) persons(need map[string]bool) string {
	sel := tr.personExprs(need)
	cols := []string{"person_id"}
	for _, x := range sel {
		cols = append(cols, x[strings.LastIndex(x, " AS ")+4:])
	}
	q := "SELECT person_id"
	for _, x := range sel {
		q += ", " + x
	}
	if need["p_region"] {
		q += ", toInt64(ifNull(location_id, -1)) AS loc FROM " + tr.tbl("person")
		cols = append(cols, "p_region")
		q = fmt.Sprintf("SELECT %s FROM (%s) ANY LEFT JOIN (SELECT toInt64(location_id) AS loc, location_source_value AS p_region FROM %s) USING loc",
			strings.Join(cols, ", "), q, tr.tbl("location"))
	} else {
		q += " FROM " + tr.tbl("person")
	}
	if need["p_death"] {
		cols = append(cols, "p_death")
		q = fmt.Sprintf("SELECT %s FROM (%s) ANY LEFT JOIN (SELECT person_id, toInt64(toInt32(min(death_date))) AS p_death FROM %s GROUP BY person_id) USING person_id",
			strings.Join(cols, ", "), q, tr.tbl("death"))
	}
	if need["p_periods"] {
		// Persons without a period drop out (inner join).
		cols = append(cols, "p_periods")
		q = fmt.Sprintf("SELECT %s FROM (%s) ANY INNER JOIN (SELECT person_id, groupArray((toInt64(toInt32(observation_period_start_date)), toInt64(toInt32(observation_period_end_date)))) AS p_periods FROM %s GROUP BY person_id) USING person_id",
			strings.Join(cols, ", "), q, tr.tbl("observation_period"))
	}
	return q
}

// personExprs are the patient columns of need that person alone gives
// (all but p_region and p_death), as "expression AS p_name" over the
// person table's columns.
func (tr *chTranslator) personExprs(need map[string]bool) []string {
	d := tr.d
	var sel []string
	if need["p_sex"] {
		var sex strings.Builder
		sex.WriteString("(CASE gender_concept_id")
		for _, g := range genders {
			fmt.Fprintf(&sex, " WHEN %s THEN '%s'", g[0], g[1])
		}
		src := "lower(replaceRegexpAll(ifNull(gender_source_value, ''), '^ +| +$', ''))"
		fmt.Fprintf(&sex, " ELSE (CASE WHEN %[1]s IN ('female', 'f') THEN 'female' WHEN %[1]s IN ('male', 'm') THEN 'male' WHEN %[1]s IN ('other', 'o') THEN 'other' ELSE 'unknown' END) END)", src)
		sel = append(sel, sex.String()+" AS p_sex")
	}
	if need["p_race"] {
		sel = append(sel, conceptCase("race_concept_id", races, "race_source_value")+" AS p_race")
	}
	if need["p_ethnicity"] {
		sel = append(sel, conceptCase("ethnicity_concept_id", ethnicities, "ethnicity_source_value")+" AS p_ethnicity")
	}
	if need["p_birth"] || need["p_age"] {
		mm := "(CASE WHEN month_of_birth BETWEEN 1 AND 12 THEN month_of_birth ELSE 1 END)"
		dd := "(CASE WHEN day_of_birth BETWEEN 1 AND 31 THEN day_of_birth ELSE 1 END)"
		sel = append(sel, fmt.Sprintf("ifNull(toInt64(toInt32(toDate(birth_datetime))), (CASE WHEN year_of_birth BETWEEN 1800 AND 2200 THEN %s END)) AS p_birth", d.MakeDate("year_of_birth", mm, dd)))
	}
	if need["p_age"] {
		sel = append(sel, fmt.Sprintf("(CASE WHEN p_birth <= %s THEN %s END) AS p_age", tr.ref(), d.Age("p_birth", tr.ref())))
	}
	return sel
}

// sources returns the scopes of a fedstat table, one per OMOP source.
func (tr *chTranslator) sources(table string) ([]chScope, error) {
	m, ok := mapping[table]
	if !ok {
		return nil, fmt.Errorf("warehouse: table %q has no OMOP mapping", table)
	}
	out := make([]chScope, len(m.sources))
	for i, s := range m.sources {
		out[i] = chScope{table: table, src: s, need: map[string]bool{}}
		if tr.info.Periods && table != cdm.TablePatients {
			out[i].need["p_periods"] = true
		}
	}
	return out, nil
}

// from is the FROM clause of a scope, the condition it adds and a WITH
// clause for the statement. Rows are restricted to those with a person,
// as the standard-SQL translator's inner join does, and with observation
// periods to persons with one:
//
//   - the patients table: its own rows, the patient columns as WITH
//     expressions over them, unless region or death_date is read; persons
//     with a period IN observation_period;
//   - an event table whose scope reads no patient column (nor periods): IN
//     the person table;
//   - otherwise the person view joined (GLOBAL ANY INNER JOIN: computed
//     once on the initiator and sent to every shard; ClickHouse 18.16
//     resolves a plain JOIN's right side in the wrong database on a
//     shard).
//
// The IN subqueries are evaluated on each shard against its own rows
// (distributed_product_mode = 'local': the tables are sharded alike by
// person_id). Call from after the scope's expressions are translated
// (they fill need).
func (tr *chTranslator) from(s chScope) (with, from, cond string) {
	t := tr.tbl(s.src.table)
	if s.table == cdm.TablePatients {
		cond = "1"
		if tr.info.Periods {
			cond = s.x + "person_id IN (SELECT person_id FROM " + tr.tbl("observation_period") + ")"
		}
		switch {
		case s.need["p_region"] || s.need["p_death"]:
			return "", t + " GLOBAL ANY INNER JOIN (" + tr.persons(s.need) + ") USING person_id", cond
		case len(s.need) > 0:
			return "WITH " + strings.Join(tr.personExprs(s.need), ", ") + " ", t, cond
		}
		return "", t, cond
	}
	if len(s.need) == 0 {
		return "", t, s.x + "person_id IN (SELECT person_id FROM " + tr.tbl("person") + ")"
	}
	return "", t + " GLOBAL ANY INNER JOIN (" + tr.persons(s.need) + ") USING person_id", "1"
}

// where is the source's own restriction (vaccines or not, for
// drug_exposure) and, with observation periods, that the event's date
// falls in one of its person's periods (a row without a date is kept), as
// a condition over the scope.
func (tr *chTranslator) where(s chScope) (string, error) {
	vaccine := fmt.Sprintf("(ifNull(toInt64(%[1]sdrug_concept_id) GLOBAL IN (SELECT toInt64(concept_id) FROM %[2]s WHERE vocabulary_id = 'CVX'), 0) OR ifNull(toInt64(%[1]sdrug_source_concept_id) GLOBAL IN (SELECT toInt64(concept_id) FROM %[2]s WHERE vocabulary_id = 'CVX'), 0))", s.x, tr.tbl("concept"))
	var w string
	switch s.src.where {
	case "":
		w = "1"
	case cvx:
		w = vaccine
	case "NOT " + cvx:
		w = "(NOT " + vaccine + ")"
	default:
		return "", fmt.Errorf("%w: the row restriction of OMOP table %s", ErrClickHouseUnsupported, s.src.table)
	}
	if s.need["p_periods"] {
		dn := tr.d.DayNumber(s.x + s.src.date)
		w += fmt.Sprintf(" AND (isNull(%[1]s) OR arrayExists(pr -> ifNull(%[1]s BETWEEN tupleElement(pr, 1) AND tupleElement(pr, 2), 0), p_periods))", dn)
	}
	return w, nil
}

// col is a column of the source row (NULL when the source lacks it).
func (s chScope) col(name, typ string) string {
	if name == "" {
		return "CAST(NULL AS Nullable(" + typ + "))"
	}
	return s.x + name
}

// column returns the SQL of a column: text never NULL (the empty string
// when missing), dates as day numbers and numbers as Float64 (NULL
// missing).
func (tr *chTranslator) column(c plan.ColumnRef, s chScope) (string, error) {
	var x string
	switch {
	case c.Patient || s.table == cdm.TablePatients:
		switch c.Name {
		case "sex", "region", "race", "ethnicity", "birth_date", "death_date":
			x = "p_" + strings.TrimSuffix(c.Name, "_date")
			s.need[x] = true
		}
	default:
		code, system := coded(chToScope(s), c.Name)
		switch {
		case code || system:
			return "", fmt.Errorf("%w: reading %s.%s as a value (only matching it: =, IN, LIKE, GROUP BY)", ErrClickHouseUnsupported, s.table, c.Name)
		default:
			if e, ok := s.src.expr[c.Name]; ok {
				switch {
				case e == noText:
					x = "CAST(NULL AS Nullable(String))"
				case c.Name == "class":
					x = conceptCase(s.x+"visit_concept_id", visitClasses, s.x+"visit_source_value")
				default:
					return "", fmt.Errorf("%w: the expression of column %s.%s", ErrClickHouseUnsupported, s.table, c.Name)
				}
			} else if oc, ok := s.src.cols[c.Name]; ok {
				x = s.x + oc
				if c.Type == cdm.TypeDate {
					x = tr.d.DayNumber(x)
				}
			}
		}
	}
	if x == "" {
		return "", fmt.Errorf("warehouse: column %s.%s has no OMOP mapping", s.table, c.Name)
	}
	if c.Type == cdm.TypeString {
		x = "ifNull(" + x + ", '')"
	}
	return x, nil
}

// chToScope adapts a chScope for coded (which reads the table only).
func chToScope(s chScope) scope { return scope{table: s.table} }

// chText is a text filter's values and prefixes as literals.
type chText struct {
	in    string   // "('a', ...)" or ""
	exact []string // code families' heads
	like  []string // LIKE patterns (backslash escapes their wildcards)
	empty bool     // the empty string is in the set
}

func chBindText(values, prefixes []string, codes bool) chText {
	var ts chText
	if len(values) > 0 {
		l := make([]string, len(values))
		for i, v := range values {
			l[i] = chLiteral(v)
			ts.empty = ts.empty || v == ""
		}
		ts.in = "(" + strings.Join(l, ", ") + ")"
	}
	esc := strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)
	for _, pre := range prefixes {
		like := pre
		if codes {
			var exact string
			if exact, like = terminology.FamilyLike(pre); exact != "" {
				ts.exact = append(ts.exact, chLiteral(exact))
			}
		}
		ts.empty = ts.empty || like == ""
		ts.like = append(ts.like, chLiteral(esc.Replace(like)+"%"))
	}
	return ts
}

func (ts chText) cond(x string) string {
	var terms []string
	if ts.in != "" {
		terms = append(terms, x+" IN "+ts.in)
	}
	for _, e := range ts.exact {
		terms = append(terms, x+" = "+e)
	}
	for _, l := range ts.like {
		terms = append(terms, x+" LIKE "+l)
	}
	if len(terms) == 0 {
		return "0"
	}
	return "(" + strings.Join(terms, " OR ") + ")"
}

// in is "ifNull(toInt64(x) GLOBAL IN (q), 0)": never NULL; the set is
// computed once on the initiator and sent to the shards.
func chIn(x, q string) string { return "ifNull(toInt64(" + x + ") GLOBAL IN (" + q + "), 0)" }

// codeMatch is translate.go's codeMatch (the same rule) without
// correlated subqueries: the concept sets are IN subqueries.
func (tr *chTranslator) codeMatch(s chScope, ts chText) string {
	concept, ancestor, rel := tr.tbl("concept"), tr.tbl("concept_ancestor"), tr.tbl("concept_relationship")
	code := ts.cond("concept_code")
	or := []string{ts.cond("ifNull(" + s.col(s.src.sourceValue, "String") + ", '')")}
	or = append(or, chIn(s.col(s.src.sourceConcept, "Int64"), fmt.Sprintf("SELECT toInt64(concept_id) FROM %s WHERE %s", concept, code)))
	std := fmt.Sprintf("SELECT toInt64(descendant_concept_id) FROM %s WHERE toInt64(ancestor_concept_id) IN (SELECT toInt64(concept_id) FROM %s WHERE ifNull(standard_concept, '') = 'S' AND %s)", ancestor, concept, code)
	std += fmt.Sprintf(" UNION ALL SELECT toInt64(concept_id) FROM %s WHERE ifNull(standard_concept, '') = 'S' AND %s", concept, code)
	std += fmt.Sprintf(" UNION ALL SELECT toInt64(concept_id_2) FROM %s WHERE relationship_id = 'Maps to' AND isNull(invalid_reason) AND toInt64(concept_id_1) IN (SELECT toInt64(concept_id) FROM %s WHERE ifNull(standard_concept, '') != 'S' AND %s)", rel, concept, code)
	or = append(or, chIn(s.col(s.src.standard, "Int64"), std))
	return "(" + strings.Join(or, " OR ") + ")"
}

// systemMatch is translate.go's systemMatch: the source concept's
// vocabulary, else the standard concept's, or the standard concept's (as
// a URI) is in the set; the empty string (no concept) matches a row
// without a standard concept when the set holds it.
func (tr *chTranslator) systemMatch(s chScope, ts chText) string {
	set := fmt.Sprintf("SELECT toInt64(concept_id) FROM %s WHERE concept_id != 0 AND %s", tr.tbl("concept"), ts.cond(vocabURI("vocabulary_id")))
	or := []string{chIn(s.col(s.src.sourceConcept, "Int64"), set), chIn(s.col(s.src.standard, "Int64"), set)}
	if ts.empty {
		or = append(or, "(NOT "+chIn(s.col(s.src.standard, "Int64"), fmt.Sprintf("SELECT toInt64(concept_id) FROM %s WHERE concept_id != 0", tr.tbl("concept")))+")")
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

func (tr *chTranslator) stringMatch(c plan.ColumnRef, values, prefixes []string, codes bool, s chScope) (string, error) {
	if !c.Patient && s.table != cdm.TablePatients {
		switch code, system := coded(chToScope(s), c.Name); {
		case code:
			return tr.codeMatch(s, chBindText(values, prefixes, codes)), nil
		case system:
			return tr.systemMatch(s, chBindText(values, prefixes, codes)), nil
		}
	}
	x, err := tr.column(c, s)
	if err != nil {
		return "", err
	}
	return chBindText(values, prefixes, codes).cond(x), nil
}

func chFloat(v float64) string {
	return "toFloat64(" + chLiteral(strconv.FormatFloat(v, 'g', -1, 64)) + ")"
}

// value translates a numeric expression to Float64 SQL (NULL: missing).
func (tr *chTranslator) value(v plan.Value, s chScope) (string, error) {
	switch v := v.(type) {
	case plan.ConstValue:
		return chFloat(v.V), nil
	case plan.AgeValue:
		s.need["p_age"] = true
		return "toFloat64(p_age)", nil
	case plan.ColumnValue:
		c, err := tr.column(v.Col, s)
		if err != nil {
			return "", err
		}
		switch v.Col.Type {
		case cdm.TypeDate, cdm.TypeNumber:
			return "toFloat64(" + c + ")", nil
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
		return "toFloat64(" + c + ")", nil
	case plan.FuncValue:
		x, err := tr.value(v.X, s)
		if err != nil {
			return "", err
		}
		switch v.Name {
		case "exp":
			return fmt.Sprintf("(CASE WHEN %[1]s > 709.782712893384 THEN inf WHEN %[1]s < -745.1332191019411 THEN toFloat64(0) ELSE exp(%[1]s) END)", x), nil
		case "ln":
			return fmt.Sprintf("(CASE WHEN %[1]s > 0 THEN log(%[1]s) END)", x), nil
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
			return "(" + l + " / nullIf(" + r + ", 0))", nil
		}
	}
	return "", fmt.Errorf("warehouse: unsupported value %T", v)
}

// pred translates a predicate to a UInt8 that is never NULL (two-valued
// logic, as eval).
func (tr *chTranslator) pred(p plan.Pred, s chScope) (string, error) {
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
		return "ifNull(" + l + " " + p.Op + " " + r + ", 0)", nil
	case *plan.Cohort:
		subs, err := tr.sources(p.Table)
		if err != nil {
			return "", err
		}
		parts := make([]string, len(subs))
		for i, sub := range subs {
			w, err := tr.where(sub)
			if err != nil {
				return "", err
			}
			if p.Where != nil {
				pw, err := tr.pred(p.Where, sub)
				if err != nil {
					return "", err
				}
				w += " AND " + pw
			}
			with, f, c := tr.from(sub)
			parts[i] = with + "SELECT person_id FROM " + f + " WHERE " + c + " AND " + w
		}
		q := parts[0]
		if len(parts) > 1 {
			q = "SELECT person_id FROM (" + strings.Join(parts, " UNION ALL ") + ")"
		}
		// Not GLOBAL: each shard finds the cohort among its own persons
		// (distributed_product_mode = 'local').
		in := s.x + "person_id IN (" + q + ")"
		if p.Negate {
			return "(NOT " + in + ")", nil
		}
		return "(" + in + ")", nil
	}
	return "", fmt.Errorf("warehouse: unsupported predicate %T", p)
}

// keyIndex translates a group key to its label index (NULL: outside the
// public domain), as translate.go's keyIndex.
func (tr *chTranslator) keyIndex(k plan.Key, s chScope) (string, error) {
	n := len(k.Labels)
	switch k.Kind {
	case plan.KeyString:
		var b strings.Builder
		b.WriteString("(CASE")
		for i, l := range k.Labels {
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
		a := "p_age"
		s.need[a] = true
		bands := n
		unknown := "NULL"
		if k.Unknown {
			bands--
			unknown = strconv.Itoa(n - 1)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "(CASE WHEN %s IS NULL THEN %s", a, unknown)
		if k.OpenTop {
			bands--
			fmt.Fprintf(&b, " WHEN %s >= %d THEN %d", a, k.Top, bands)
		}
		i := tr.d.IntDiv(fmt.Sprintf("(%s - %d)", a, k.Start), strconv.Itoa(k.Width))
		fmt.Fprintf(&b, " WHEN %s < %d THEN NULL WHEN %s < %d THEN %s END)", a, k.Start, i, bands, i)
		return b.String(), nil
	}
	return "", fmt.Errorf("%w: group key kind %d", ErrClickHouseUnsupported, k.Kind)
}

// translateClickHouse is Translate for ClickHouse: one statement, no bind
// arguments. The contribution bounds without window functions:
//
//  1. per source, on the shards: GROUP BY (patient, cell) the rows as
//     (source, row id, values...) tuples, sorted, the first R kept
//     (arraySlice(arraySort(groupArray(...)), 1, R));
//  2. sources merged per (patient, cell) the same way;
//  3. for row-level keys, GROUP BY patient the cells as (first row, cell,
//     rows) sorted by first row, the first G kept;
//  4. GROUP BY cell: rows (the kept rows' number), distinct patients
//     (one row per patient and cell by now), and sums added in row order
//     (arraySum over the cell's values sorted by (source, row id)), as
//     eval's loop.
func translateClickHouse(d ClickHouse, schema string, info Info, p *plan.Plan) (string, error) {
	tr := &chTranslator{d: d, schema: schema, info: info, p: p}
	scopes, err := tr.sources(p.Table())
	if err != nil {
		return "", err
	}
	ms := p.Measures()
	r := strconv.Itoa(p.MaxRowsPerPatient())
	parts := make([]string, len(scopes))
	for si, s := range scopes {
		cell := "0"
		if keys := p.Keys(); len(keys) > 0 {
			ps := make([]string, len(keys))
			stride := 1
			for i := len(keys) - 1; i >= 0; i-- {
				ki, err := tr.keyIndex(keys[i], s)
				if err != nil {
					return "", err
				}
				ps[i] = fmt.Sprintf("%s * %d", ki, stride)
				stride *= len(keys[i].Labels)
			}
			cell = "(" + strings.Join(ps, " + ") + ")"
		}
		ord := s.x + s.src.id
		tuple := []string{"toUInt8(" + strconv.Itoa(si) + ")", "toInt64(" + ord + ")"}
		for _, m := range ms {
			switch m.Kind {
			case plan.CountRows, plan.CountDistinct:
			case plan.CountValues, plan.Sum, plan.SumSquares:
				x, err := tr.value(m.Value, s)
				if err != nil {
					return "", err
				}
				if m.Kind != plan.CountValues {
					x = fmt.Sprintf("(least(greatest(%s, %s), %s) - %s)", x, chFloat(m.Lo), chFloat(m.Hi), chFloat(m.Center))
					if m.Kind == plan.SumSquares {
						x = "(" + x + " * " + x + ")"
					}
				}
				tuple = append(tuple, "CAST("+x+" AS Nullable(Float64))")
			default:
				return "", fmt.Errorf("%w: measure kind %d", ErrClickHouseUnsupported, m.Kind)
			}
		}
		w, err := tr.where(s)
		if err != nil {
			return "", err
		}
		if pw := p.Where(); pw != nil {
			ws, err := tr.pred(pw, s)
			if err != nil {
				return "", err
			}
			w += " AND " + ws
		}
		with, f, c := tr.from(s)
		parts[si] = with + fmt.Sprintf("SELECT %sperson_id AS pid, materialize(toInt64(assumeNotNull(cell_n))) AS cell, arraySlice(arraySort(groupArray((%s))), 1, %s) AS rs FROM %s WHERE %s AND %s AND isNotNull(%s AS cell_n) GROUP BY pid, cell",
			s.x, strings.Join(tuple, ", "), r, f, c, w, cell)
	}
	rows := parts[0]
	if len(parts) > 1 {
		rows = fmt.Sprintf("SELECT pid, cell, arraySlice(arraySort(groupArrayArray(rs)), 1, %s) AS rs FROM (%s) GROUP BY pid, cell", r, strings.Join(parts, " UNION ALL "))
	}
	rowLevel := false
	for _, k := range p.Keys() {
		rowLevel = rowLevel || k.RowLevel
	}
	if rowLevel {
		rows = fmt.Sprintf("SELECT pid, tupleElement(c, 1) AS cell, tupleElement(c, 2) AS rs FROM (SELECT pid, arraySlice(arraySort(t -> (tupleElement(t, 1), tupleElement(t, 2)), groupArray((tupleElement(rs[1], 1), tupleElement(rs[1], 2), cell, rs))), 1, %d) AS cs FROM (%s) GROUP BY pid) ARRAY JOIN arrayMap(t -> (tupleElement(t, 3), tupleElement(t, 4)), cs) AS c",
			p.MaxGroupsPerPatient(), rows)
	}
	// Rows are now one per (patient, cell), rs the patient's kept rows in
	// the cell.
	aggs := []string{"cell"}
	k := 3
	for _, m := range ms {
		switch m.Kind {
		case plan.CountRows:
			aggs = append(aggs, "toFloat64(sum(length(rs)))")
		case plan.CountDistinct:
			aggs = append(aggs, "toFloat64(count())")
		case plan.CountValues:
			aggs = append(aggs, fmt.Sprintf("toFloat64(sum(arrayCount(t -> isNotNull(tupleElement(t, %d)), rs)))", k))
			k++
		default:
			aggs = append(aggs, fmt.Sprintf("arraySum(arrayMap(t -> ifNull(tupleElement(t, 3), 0), arraySort(t -> (tupleElement(t, 1), tupleElement(t, 2)), groupArrayArray(arrayMap(t -> (tupleElement(t, 1), tupleElement(t, 2), tupleElement(t, %d)), rs)))))", k))
			k++
		}
	}
	// Every GROUP BY over a Distributed table here groups by person (the
	// rows of a (patient, cell), a person's death): its groups are
	// complete on one shard, so the shards finalise them and the initiator
	// only concatenates (distributed_group_by_no_merge), rather than
	// merging every group's state.
	return fmt.Sprintf("SELECT %s FROM (%s) GROUP BY cell SETTINGS distributed_group_by_no_merge = 1", strings.Join(aggs, ", "), rows), nil
}

// chSummary counts the persons and the rows of every fedstat table as
// queries see them.
func (b *Backend) chSummary(ctx context.Context, info Info) (int64, map[string]int64, error) {
	d := b.d.(ClickHouse)
	rows := map[string]int64{}
	for i := range cdm.Schema {
		name := cdm.Schema[i].Name
		if _, ok := mapping[name]; !ok {
			continue
		}
		tr := &chTranslator{d: d, schema: b.Schema, info: info}
		scopes, err := tr.sources(name)
		if err != nil {
			return 0, nil, err
		}
		var total int64
		for _, s := range scopes {
			w, err := tr.where(s)
			if err != nil {
				return 0, nil, err
			}
			with, f, c := tr.from(s)
			q := fmt.Sprintf("%sSELECT count() FROM %s WHERE %s AND %s", with, f, c, w)
			var n int64
			if err := b.c.queryRow(ctx, q).Scan(&n); err != nil {
				return 0, nil, fmt.Errorf("warehouse: counting %s: %w", name, err)
			}
			total += n
		}
		rows[name] = total
	}
	return rows[cdm.TablePatients], rows, nil
}

// chTable is one table of the ClickHouse OMOP subset the loader creates:
// its columns (ClickHouse types) and, for the tables sharded by
// person_id, the MergeTree sort key.
type chTable struct {
	name, cols, order string
}

// chDDL is the v5.4 subset of ddl with ClickHouse types: Nullable where
// OMOP allows NULL, dates as Int32 day numbers (days since 1970-01-01:
// 18.16's Date cannot hold earlier dates, and events and deaths before
// 1970 are common), birth_datetime as DateTime (NULL before 1970, the
// date then in year/month/day_of_birth). The translator reads a date
// column through toInt32, which gives the same day number from a Date
// column, so a CDM with Date (or Date32) columns is read as well.
var chDDL = []chTable{
	{"cdm_source", "cdm_source_name String, cdm_source_abbreviation String, cdm_holder String, cdm_version Nullable(String)", "cdm_source_name"},
	{"concept", "concept_id Int32, concept_name String DEFAULT '', domain_id String DEFAULT '', vocabulary_id String, concept_class_id String DEFAULT '', standard_concept Nullable(String), concept_code String, invalid_reason Nullable(String)", "concept_id"},
	{"concept_relationship", "concept_id_1 Int32, concept_id_2 Int32, relationship_id String, invalid_reason Nullable(String)", "concept_id_1"},
	{"concept_ancestor", "ancestor_concept_id Int32, descendant_concept_id Int32, min_levels_of_separation Int32 DEFAULT 0, max_levels_of_separation Int32 DEFAULT 0", "ancestor_concept_id"},
	{"location", "location_id Int64, location_source_value Nullable(String)", "location_id"},
	{"person", "person_id Int64, gender_concept_id Int32, year_of_birth Nullable(Int32), month_of_birth Nullable(Int32), day_of_birth Nullable(Int32), birth_datetime Nullable(DateTime), race_concept_id Int32 DEFAULT 0, ethnicity_concept_id Int32 DEFAULT 0, location_id Nullable(Int64), person_source_value Nullable(String), gender_source_value Nullable(String), race_source_value Nullable(String), ethnicity_source_value Nullable(String)", "person_id"},
	{"observation_period", "observation_period_id Int64, person_id Int64, observation_period_start_date Int32, observation_period_end_date Int32, period_type_concept_id Int32 DEFAULT 32817", "person_id, observation_period_id"},
	{"death", "person_id Int64, death_date Int32, death_type_concept_id Nullable(Int32)", "person_id"},
	{"condition_occurrence", "condition_occurrence_id Int64, person_id Int64, condition_concept_id Int32 DEFAULT 0, condition_start_date Nullable(Int32), condition_end_date Nullable(Int32), condition_type_concept_id Int32 DEFAULT 0, condition_source_value Nullable(String), condition_source_concept_id Nullable(Int32)", "person_id, condition_occurrence_id"},
	{"measurement", "measurement_id Int64, person_id Int64, measurement_concept_id Int32 DEFAULT 0, measurement_date Nullable(Int32), measurement_type_concept_id Int32 DEFAULT 0, value_as_number Nullable(Float64), measurement_source_value Nullable(String), measurement_source_concept_id Nullable(Int32), unit_source_value Nullable(String)", "person_id, measurement_id"},
	{"observation", "observation_id Int64, person_id Int64, observation_concept_id Int32 DEFAULT 0, observation_date Nullable(Int32), observation_type_concept_id Int32 DEFAULT 0, value_as_number Nullable(Float64), value_as_string Nullable(String), observation_source_value Nullable(String), observation_source_concept_id Nullable(Int32), unit_source_value Nullable(String)", "person_id, observation_id"},
	{"visit_occurrence", "visit_occurrence_id Int64, person_id Int64, visit_concept_id Int32 DEFAULT 0, visit_start_date Nullable(Int32), visit_end_date Nullable(Int32), visit_type_concept_id Int32 DEFAULT 0, visit_source_value Nullable(String), visit_source_concept_id Nullable(Int32), admitted_from_concept_id Nullable(Int32), discharged_to_concept_id Nullable(Int32)", "person_id, visit_occurrence_id"},
	{"drug_exposure", "drug_exposure_id Int64, person_id Int64, drug_concept_id Int32 DEFAULT 0, drug_exposure_start_date Nullable(Int32), drug_type_concept_id Int32 DEFAULT 0, drug_source_value Nullable(String), drug_source_concept_id Nullable(Int32)", "person_id, drug_exposure_id"},
	{"procedure_occurrence", "procedure_occurrence_id Int64, person_id Int64, procedure_concept_id Int32 DEFAULT 0, procedure_date Nullable(Int32), procedure_end_date Nullable(Int32), procedure_type_concept_id Int32 DEFAULT 0, procedure_source_value Nullable(String), procedure_source_concept_id Nullable(Int32)", "person_id, procedure_occurrence_id"},
}

// chCreateSchema (re)creates database b.Schema and the shard databases:
// tables with a person_id local (MergeTree) on every shard and
// Distributed in b.Schema (sharding key person_id, as the loader splits
// rows), the others MergeTree in b.Schema.
func (b *Backend) chCreateSchema(ctx context.Context) error {
	d := b.d.(ClickHouse)
	cluster := d.Cluster
	if cluster == "" {
		cluster = "fedstat"
	}
	dbs := append([]string{b.Schema}, d.Shards...)
	slices.Sort(dbs)
	for _, db := range slices.Compact(dbs) {
		if err := b.c.exec(ctx, "DROP DATABASE IF EXISTS "+b.d.Quote(db)); err != nil {
			return fmt.Errorf("warehouse: %w", err)
		}
		if err := b.c.exec(ctx, "CREATE DATABASE "+b.d.Quote(db)); err != nil {
			return fmt.Errorf("warehouse: %w", err)
		}
	}
	for _, t := range chDDL {
		engine := " ENGINE = MergeTree ORDER BY (" + t.order + ")"
		if !strings.Contains(t.cols, "person_id Int64") {
			if err := b.c.exec(ctx, "CREATE TABLE "+b.tbl(t.name)+" ("+t.cols+")"+engine); err != nil {
				return fmt.Errorf("warehouse: %s: %w", t.name, err)
			}
			continue
		}
		if len(d.Shards) == 0 {
			if err := b.c.exec(ctx, "CREATE TABLE "+b.tbl(t.name)+" ("+t.cols+")"+engine); err != nil {
				return fmt.Errorf("warehouse: %s: %w", t.name, err)
			}
			continue
		}
		for _, sh := range d.Shards {
			if sh == b.Schema {
				return fmt.Errorf("warehouse: shard database %q is the schema itself", sh)
			}
			if err := b.c.exec(ctx, "CREATE TABLE "+b.d.Quote(sh)+"."+b.d.Quote(t.name)+" ("+t.cols+")"+engine); err != nil {
				return fmt.Errorf("warehouse: %s: %w", t.name, err)
			}
		}
		dist := fmt.Sprintf("CREATE TABLE %s (%s) ENGINE = Distributed(%s, '', %s, person_id)", b.tbl(t.name), t.cols, b.d.Quote(cluster), b.d.Quote(t.name))
		if err := b.c.exec(ctx, dist); err != nil {
			return fmt.Errorf("warehouse: %s: %w", t.name, err)
		}
	}
	if err := b.c.exec(ctx, "INSERT INTO "+b.tbl("cdm_source")+" (cdm_source_name, cdm_source_abbreviation, cdm_holder, cdm_version) VALUES ('fedstat test load', 'fedstat', 'fedstat', 'v5.4')"); err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	b.forget()
	return nil
}

// personTables are the OMOP tables with a person_id the back end reads:
// on a cluster they must be sharded alike by person_id.
func personTables() []string {
	out := []string{"person", "death", "observation_period"}
	for _, m := range mapping {
		for _, s := range m.sources {
			out = append(out, s.table)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// chShardKey matches a sharding key that is person_id or one function of
// it (cityHash64(person_id), intHash32(person_id)).
var chShardKey = regexp.MustCompile(`^\s*(person_id|[A-Za-z_][A-Za-z0-9_]*\(\s*person_id\s*\))\s*$`)

// chCheckSharding checks what the translator assumes of a cluster: the
// person-keyed tables are all local (one server) or all Distributed over
// one cluster by one sharding key that is a function of person_id alone,
// so that a person's rows are on one shard. Cohorts are then found on each
// shard (distributed_product_mode = 'local') and a (patient, cell)'s rows
// grouped there (distributed_group_by_no_merge): with another sharding,
// rows of one patient on two shards would be counted as two patients'
// and could exceed the contribution bounds, so such a schema is refused.
func (b *Backend) chCheckSharding(ctx context.Context) error {
	rows, err := b.c.query(ctx, "SELECT name, engine, engine_full FROM system.tables WHERE database = "+chLiteral(b.Schema))
	if err != nil {
		return fmt.Errorf("warehouse: reading the engines of database %q: %w", b.Schema, err)
	}
	defer rows.Close()
	person := map[string]bool{}
	for _, t := range personTables() {
		person[t] = true
	}
	var local []string
	dist := map[string]string{} // table -> "cluster / key"
	for rows.Next() {
		var name, engine, full string
		if err := rows.Scan(&name, &engine, &full); err != nil {
			return fmt.Errorf("warehouse: %w", err)
		}
		if !person[strings.ToLower(name)] {
			continue
		}
		if engine != "Distributed" {
			local = append(local, name)
			continue
		}
		args := chEngineArgs(full)
		if len(args) < 4 || !chShardKey.MatchString(args[3]) {
			key := "none"
			if len(args) >= 4 {
				key = args[3]
			}
			return fmt.Errorf("%w: table %s.%s is Distributed with sharding key %s: every person-keyed table must be sharded by the same expression of person_id alone (a person's rows on one shard)", ErrClickHouseUnsupported, b.Schema, name, key)
		}
		dist[name] = strings.TrimSpace(args[0]) + " / " + strings.Join(strings.Fields(args[3]), "")
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	if len(dist) == 0 {
		return nil
	}
	if len(local) > 0 {
		slices.Sort(local)
		return fmt.Errorf("%w: tables %s of database %s are local while others are Distributed: every person-keyed table must be sharded alike by person_id", ErrClickHouseUnsupported, strings.Join(local, ", "), b.Schema)
	}
	var first, firstTable string
	for t, k := range dist {
		if first == "" {
			first, firstTable = k, t
		} else if k != first {
			return fmt.Errorf("%w: tables %s (%s) and %s (%s) are Distributed differently: every person-keyed table must be sharded alike by person_id (cluster / sharding key)", ErrClickHouseUnsupported, firstTable, first, t, k)
		}
	}
	return nil
}

// chEngineArgs splits the arguments of "Engine(a, b(c, d), ...)" at its
// top-level commas.
func chEngineArgs(full string) []string {
	open := strings.IndexByte(full, '(')
	if open < 0 {
		return nil
	}
	var args []string
	depth, start := 0, open+1
	var quote byte
	for i := open + 1; i < len(full); i++ {
		c := full[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '`' || c == '"':
			quote = c
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ')':
			return append(args, strings.TrimSpace(full[start:i]))
		case c == ',' && depth == 0:
			args = append(args, strings.TrimSpace(full[start:i]))
			start = i + 1
		}
	}
	return args
}
