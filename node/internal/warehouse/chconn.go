package warehouse

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
)

// chConn speaks ClickHouse's HTTP interface: a statement is the body of a
// POST, results come back as TabSeparated text. It is used instead of
// clickhouse-go because the ClickHouse that Debian packages (18.16) is
// older than any server that client supports (docs/warehouse.md). The
// translator renders its values as escaped literals (chLiteral); the
// $n arguments of other statements are rendered the same way (chBind).
type chConn struct {
	base       *url.URL // http://host:port/ with the settings as query parameters
	user, pass string   // HTTP basic auth when user is set
	client     *http.Client
	d          ClickHouse
}

// chSettings are sent with every statement: a LEFT JOIN's missing right
// row gives NULLs (as SQL), not the type's default value; an IN subquery
// over Distributed tables inside a distributed query reads each shard's
// own tables (the OMOP tables are all sharded by person_id, so a person's
// rows are on one shard).
// An INSERT into a Distributed table returns once the shards have the rows.
var chSettings = map[string]string{"join_use_nulls": "1", "distributed_product_mode": "local", "insert_distributed_sync": "1"}

// openClickHouse connects to dsn, an http(s):// URL of the server's HTTP
// interface (user and password in the URL's user info, sent as HTTP basic
// auth, not in the URL), and checks that it answers.
func openClickHouse(ctx context.Context, dsn string, d ClickHouse) (conn, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("warehouse: ClickHouse DSN %q is not an http(s):// URL of the server's HTTP interface", redactURL(dsn))
	}
	q := u.Query()
	if q.Has("password") {
		return nil, fmt.Errorf("warehouse: ClickHouse DSN %q: put the password in the URL's user info (sent as basic auth), not in a query parameter", redactURL(dsn))
	}
	c := chConn{client: &http.Client{}, d: d}
	if u.User != nil {
		c.user = u.User.Username()
		c.pass, _ = u.User.Password()
		u.User = nil
	}
	for k, v := range chSettings {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	c.base = u
	var one int64
	if err := c.queryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return nil, fmt.Errorf("warehouse: ClickHouse at %s: %w", u.Host, err)
	}
	return c, nil
}

// redactURL drops a password from a URL for an error message.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// post sends one statement (and, for an INSERT, its data after it) and
// returns the response body. Each statement has its own query_id: when
// ctx ends first, the query is killed on the server (18.16 keeps running
// a query whose HTTP client has gone).
func (c chConn) post(ctx context.Context, body io.Reader) ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	qid := "fedstat-" + hex.EncodeToString(id)
	u := *c.base
	q := u.Query()
	q.Set("query_id", qid)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		return nil, err
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			c.kill(qid)
		}
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			c.kill(qid)
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("clickhouse: %s", strings.TrimSpace(string(out)))
	}
	return out, nil
}

// kill stops the query qid on the server, best effort, within 5 s.
func (c chConn) kill(qid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = c.post(ctx, strings.NewReader("KILL QUERY WHERE query_id = "+chLiteral(qid)+" ASYNC"))
}

// chBind renders the arguments of the numbered placeholders $1, $2, ...
// of q as literals (ClickHouse 18.16 has no query parameters): strings
// through chLiteral, numbers in Go's exact text, nil as NULL. A $ inside a
// quoted string or identifier is left alone.
func chBind(q string, args []any) (string, error) {
	if len(args) == 0 {
		return q, nil
	}
	var b strings.Builder
	var quote byte // the open quote, or 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(q) {
				i++
				b.WriteByte(q[i])
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '`' || c == '"':
			quote = c
			b.WriteByte(c)
		case c == '$' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			n, err := strconv.Atoi(q[i+1 : j])
			if err != nil || n < 1 || n > len(args) {
				return "", fmt.Errorf("warehouse: placeholder %s with %d arguments", q[i:j], len(args))
			}
			lit, err := chValue(args[n-1])
			if err != nil {
				return "", fmt.Errorf("warehouse: argument %d: %w", n, err)
			}
			b.WriteString(lit)
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// chValue is a Go value as a ClickHouse literal.
func chValue(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return chLiteral(v), nil
	case bool:
		if v {
			return "1", nil
		}
		return "0", nil
	case int, int32, int64, uint32, uint64:
		return fmt.Sprint(v), nil
	case float64:
		if lit, ok := chNonFinite(v); ok {
			return lit, nil
		}
		return "toFloat64(" + chLiteral(strconv.FormatFloat(v, 'g', -1, 64)) + ")", nil
	}
	return "", fmt.Errorf("no ClickHouse literal for %T", v)
}

func (c chConn) query(ctx context.Context, q string, args ...any) (rows, error) {
	q, err := chBind(q, args)
	if err != nil {
		return nil, err
	}
	out, err := c.post(ctx, strings.NewReader(q+"\nFORMAT TabSeparated"))
	if err != nil {
		return nil, err
	}
	// Every row ends with a newline (a row of one empty string is an
	// empty line).
	var r chRows
	for line := range strings.SplitSeq(strings.TrimSuffix(string(out), "\n"), "\n") {
		if len(out) > 0 {
			r.lines = append(r.lines, strings.Split(line, "\t"))
		}
	}
	r.at = -1
	return &r, nil
}

func (c chConn) queryRow(ctx context.Context, q string, args ...any) row {
	r, err := c.query(ctx, q, args...)
	if err != nil {
		return errRow{err}
	}
	return firstRow{r.(*chRows)}
}

func (c chConn) exec(ctx context.Context, q string, args ...any) error {
	q, err := chBind(q, args)
	if err != nil {
		return err
	}
	_, err = c.post(ctx, strings.NewReader(q))
	return err
}

// insert writes rows as TabSeparated data. A table with a person_id
// column is sharded: each row goes to the shard database
// Shards[person_id % len(Shards)] (the Distributed tables' sharding key);
// other tables (the vocabulary, location, cdm_source) go to schema.
func (c chConn) insert(ctx context.Context, schema, table string, cols []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	pcol := -1
	for i, col := range cols {
		if col == "person_id" {
			pcol = i
		}
	}
	targets := []string{schema}
	if pcol >= 0 && len(c.d.Shards) > 0 {
		targets = c.d.Shards
	}
	bodies := make([]*bytes.Buffer, len(targets))
	for i, db := range targets {
		bodies[i] = &bytes.Buffer{}
		quoted := make([]string, len(cols))
		for j, col := range cols {
			quoted[j] = c.d.Quote(col)
		}
		fmt.Fprintf(bodies[i], "INSERT INTO %s.%s (%s) FORMAT TabSeparated\n", c.d.Quote(db), c.d.Quote(table), strings.Join(quoted, ", "))
	}
	for n, r := range rows {
		if len(r) != len(cols) {
			return fmt.Errorf("row %d has %d values for %d columns", n, len(r), len(cols))
		}
		t := 0
		if len(targets) > 1 {
			pid, ok := r[pcol].(int64)
			if !ok || pid < 0 {
				return fmt.Errorf("row %d: person_id %v", n, r[pcol])
			}
			t = int(pid % int64(len(targets)))
		}
		b := bodies[t]
		for j, v := range r {
			if j > 0 {
				b.WriteByte('\t')
			}
			s, err := chTSV(v, cols[j])
			if err != nil {
				return fmt.Errorf("row %d, %s: %w", n, cols[j], err)
			}
			b.WriteString(s)
		}
		b.WriteByte('\n')
	}
	for _, b := range bodies {
		if _, err := c.post(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// chNonFinite is ClickHouse's spelling of a NaN or an infinity, in SQL and
// in TabSeparated alike (ok false for a finite v).
func chNonFinite(v float64) (string, bool) {
	switch {
	case math.IsNaN(v):
		return "nan", true
	case math.IsInf(v, 1):
		return "inf", true
	case math.IsInf(v, -1):
		return "-inf", true
	}
	return "", false
}

// chTSV is one value as a TabSeparated field. ClickHouse 18.16's Date and
// DateTime start at 1970-01-01, so the loader's schema (chDDL) keeps dates
// as Int32 day numbers; birth_datetime is a DateTime, NULL before 1970
// (year/month/day_of_birth carry the date).
func chTSV(v any, col string) (string, error) {
	switch v := v.(type) {
	case nil:
		return `\N`, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case int32:
		return strconv.FormatInt(int64(v), 10), nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		if lit, ok := chNonFinite(v); ok {
			return lit, nil
		}
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case string:
		return tsvEscape.Replace(v), nil
	case time.Time:
		if col == "birth_datetime" {
			if v.Year() < 1970 {
				return `\N`, nil
			}
			return v.UTC().Format(time.DateTime), nil
		}
		y, m, d := v.Date()
		return strconv.Itoa(int(cdm.DateFromYMD(y, m, d))), nil
	}
	return "", fmt.Errorf("no ClickHouse text form for %T", v)
}

var tsvEscape = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`, "\x00", `\0`)

var tsvUnescape = strings.NewReplacer(`\\`, `\`, `\t`, "\t", `\n`, "\n", `\r`, "\r", `\0`, "\x00", `\'`, "'", `\b`, "\b", `\f`, "\f")

func (c chConn) close() { c.client.CloseIdleConnections() }

// chRows is a TabSeparated result held in memory (the back end reads
// aggregates only: at most one row per cell).
type chRows struct {
	lines [][]string
	at    int
}

func (r *chRows) Next() bool {
	r.at++
	return r.at < len(r.lines)
}

func (r *chRows) Err() error { return nil }
func (r *chRows) Close()     {}

func (r *chRows) Scan(dst ...any) error {
	if r.at < 0 || r.at >= len(r.lines) {
		return errors.New("clickhouse: Scan without a row")
	}
	f := r.lines[r.at]
	if len(f) != len(dst) {
		return fmt.Errorf("clickhouse: %d columns for %d destinations", len(f), len(dst))
	}
	for i, s := range f {
		if err := chScan(s, dst[i]); err != nil {
			return fmt.Errorf("clickhouse: column %d: %w", i, err)
		}
	}
	return nil
}

func chScan(s string, dst any) error {
	null := s == `\N`
	switch d := dst.(type) {
	case *int64:
		if null {
			return errors.New("NULL into int64")
		}
		v, err := strconv.ParseInt(s, 10, 64)
		*d = v
		return err
	case *float64:
		if null {
			return errors.New("NULL into float64")
		}
		switch s {
		case "inf", "+inf":
			*d = math.Inf(1)
		case "-inf":
			*d = math.Inf(-1)
		case "nan", "-nan":
			*d = math.NaN()
		default:
			v, err := strconv.ParseFloat(s, 64)
			*d = v
			return err
		}
		return nil
	case *bool:
		if null {
			return errors.New("NULL into bool")
		}
		*d = s == "1" || s == "true"
		return nil
	case *string:
		if null {
			return errors.New("NULL into string")
		}
		*d = tsvUnescape.Replace(s)
		return nil
	case **string:
		if null {
			*d = nil
			return nil
		}
		v := tsvUnescape.Replace(s)
		*d = &v
		return nil
	}
	return fmt.Errorf("cannot scan into %T", dst)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type firstRow struct{ r *chRows }

func (r firstRow) Scan(dst ...any) error {
	if !r.r.Next() {
		return errors.New("clickhouse: no rows")
	}
	return r.r.Scan(dst...)
}
