package warehouse

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Dialect is what differs between SQL engines that hold OMOP. The translator
// (translate.go) writes standard SQL (CASE, COALESCE, window functions with
// ROW_NUMBER/DENSE_RANK/MIN OVER, IN subqueries) and asks the dialect for the
// rest. Citus, Trino or Spark SQL would be a new implementation of this
// interface.
type Dialect interface {
	// Name identifies the dialect ("postgres").
	Name() string
	// Quote quotes an identifier.
	Quote(ident string) string
	// Placeholder is the n-th (1-based) bind parameter; the translator
	// names one placeholder more than once where a value is used twice, so
	// placeholders must be numbered ($n, @pN), not positional (?).
	Placeholder(n int) string
	// DayNumber is an integer expression: days since 1970-01-01 of the DATE
	// expression d (NULL stays NULL).
	DayNumber(d string) string
	// DateLiteral is a DATE constant.
	DateLiteral(d cdm.Date) string
	// Week, Month and Year are integer bucket numbers of a DATE expression,
	// as cdm.Date.Week (weeks since Monday 1969-12-29), cdm.Date.Month
	// (y*12+m-1) and cdm.Date.Year.
	Week(d string) string
	Month(d string) string
	Year(d string) string
	// Age is whole years between the DATE expressions birth and ref (the
	// caller guards birth <= ref and NULL).
	Age(birth, ref string) string
	// MakeDate is the DATE of the integer expressions y, m (1-12) and d
	// (1-31); a day past the month's end runs into the next month rather
	// than failing the query.
	MakeDate(y, m, d string) string
	// IntDiv is the integer quotient of the non-negative integer
	// expressions a and b.
	IntDiv(a, b string) string
	// Float casts an expression to double precision.
	Float(x string) string
	// Limit appends a row limit to a query.
	Limit(query string, n int) string
}

// Postgres is the PostgreSQL (9.6+) dialect; it also fits Citus.
type Postgres struct{}

// Name implements Dialect.
func (Postgres) Name() string { return "postgres" }

// Quote implements Dialect.
func (Postgres) Quote(id string) string { return `"` + strings.ReplaceAll(id, `"`, `""`) + `"` }

// Placeholder implements Dialect.
func (Postgres) Placeholder(n int) string { return "$" + strconv.Itoa(n) }

// DayNumber implements Dialect.
func (Postgres) DayNumber(d string) string { return "(" + d + " - DATE '1970-01-01')" }

// DateLiteral implements Dialect.
func (Postgres) DateLiteral(d cdm.Date) string { return "DATE '" + d.String() + "'" }

// Week implements Dialect: floor((day+3)/7).
func (p Postgres) Week(d string) string {
	return fmt.Sprintf("floor((%s + 3)::float8 / 7)::int", p.DayNumber(d))
}

// Month implements Dialect.
func (Postgres) Month(d string) string {
	return fmt.Sprintf("(extract(year from %s)::int * 12 + extract(month from %s)::int - 1)", d, d)
}

// Year implements Dialect.
func (Postgres) Year(d string) string { return fmt.Sprintf("extract(year from %s)::int", d) }

// Age implements Dialect.
func (Postgres) Age(birth, ref string) string {
	return fmt.Sprintf("extract(year from age(%s, %s))::int", ref, birth)
}

// MakeDate implements Dialect.
func (Postgres) MakeDate(y, m, d string) string {
	return fmt.Sprintf("(make_date(%s, %s, 1) + (%s - 1))", y, m, d)
}

// IntDiv implements Dialect.
func (Postgres) IntDiv(a, b string) string { return "(" + a + " / " + b + ")" }

// Float implements Dialect.
func (Postgres) Float(x string) string { return "(" + x + ")::float8" }

// Limit implements Dialect.
func (Postgres) Limit(q string, n int) string { return q + " LIMIT " + strconv.Itoa(n) }

// DuckDB is the DuckDB dialect: an OMOP CDM in a DuckDB database file, as
// OHDSI's Eunomia ships its example data sets and as a hospital hands out
// an extract. The SQL is the translator's standard SQL; DuckDB differs
// from PostgreSQL in age (it has no age(ts, ts) in whole years) and
// integer division (// there).
// Opening one needs a binary built with the duckdb tag (cgo).
type DuckDB struct{ Postgres }

// Name implements Dialect.
func (DuckDB) Name() string { return "duckdb" }

// Age implements Dialect: the year difference, less one before the
// birthday in the reference year (as PostgreSQL's age and eval).
func (DuckDB) Age(birth, ref string) string {
	return fmt.Sprintf("(extract(year from %[2]s)::int - extract(year from %[1]s)::int - (CASE WHEN extract(month from %[2]s) < extract(month from %[1]s) OR (extract(month from %[2]s) = extract(month from %[1]s) AND extract(day from %[2]s) < extract(day from %[1]s)) THEN 1 ELSE 0 END))", birth, ref)
}

// IntDiv implements Dialect: DuckDB's / divides integers as reals.
func (DuckDB) IntDiv(a, b string) string { return "(" + a + " // " + b + ")" }

// DialectNamed returns the dialect called name ("postgres", or "" for
// Postgres; "duckdb"; "clickhouse").
func DialectNamed(name string) (Dialect, error) {
	switch strings.ToLower(name) {
	case "", "postgres", "postgresql", "citus":
		return Postgres{}, nil
	case "duckdb":
		return DuckDB{}, nil
	case "clickhouse":
		return ClickHouse{}, nil
	}
	return nil, fmt.Errorf("warehouse: unknown SQL dialect %q (known: postgres, duckdb, clickhouse)", name)
}
