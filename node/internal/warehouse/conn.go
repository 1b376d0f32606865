package warehouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// conn is what the back end needs from a database driver: pgx for
// PostgreSQL, database/sql for DuckDB.
type conn interface {
	query(ctx context.Context, q string, args ...any) (rows, error)
	queryRow(ctx context.Context, q string, args ...any) row
	exec(ctx context.Context, q string, args ...any) error
	// insert writes rows into schema.table's columns cols (the test
	// loader).
	insert(ctx context.Context, schema, table string, cols []string, rows [][]any) error
	close()
}

type rows interface {
	Next() bool
	Scan(dst ...any) error
	Err() error
	Close()
}

type row interface{ Scan(dst ...any) error }

// pgConn is a pgx pool.
type pgConn struct{ pool *pgxpool.Pool }

func openPostgres(ctx context.Context, dsn string) (conn, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("warehouse: %w", err)
	}
	return pgConn{pool}, nil
}

func (c pgConn) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := c.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgRows{r}, nil
}

func (c pgConn) queryRow(ctx context.Context, q string, args ...any) row {
	return c.pool.QueryRow(ctx, q, args...)
}

func (c pgConn) exec(ctx context.Context, q string, args ...any) error {
	_, err := c.pool.Exec(ctx, q, args...)
	return err
}

func (c pgConn) insert(ctx context.Context, schema, table string, cols []string, rows [][]any) error {
	_, err := c.pool.CopyFrom(ctx, pgx.Identifier{schema, table}, cols, pgx.CopyFromRows(rows))
	return err
}

func (c pgConn) close() { c.pool.Close() }

type pgRows struct{ pgx.Rows }

func (r pgRows) Close() { r.Rows.Close() }

// sqlConn is a database/sql pool (DuckDB).
type sqlConn struct {
	db *sql.DB
	d  Dialect
}

func (c sqlConn) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (c sqlConn) queryRow(ctx context.Context, q string, args ...any) row {
	return c.db.QueryRowContext(ctx, q, args...)
}

func (c sqlConn) exec(ctx context.Context, q string, args ...any) error {
	_, err := c.db.ExecContext(ctx, q, args...)
	return err
}

// insert writes multi-row INSERT statements of up to 500 rows in one
// transaction.
func (c sqlConn) insert(ctx context.Context, schema, table string, cols []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	quoted := make([]string, len(cols))
	for i, col := range cols {
		quoted[i] = c.d.Quote(col)
	}
	head := "INSERT INTO " + c.d.Quote(schema) + "." + c.d.Quote(table) + " (" + strings.Join(quoted, ", ") + ") VALUES "
	const batch = 500
	for start := 0; start < len(rows); start += batch {
		part := rows[start:min(start+batch, len(rows))]
		var b strings.Builder
		b.WriteString(head)
		args := make([]any, 0, len(part)*len(cols))
		for i, r := range part {
			if len(r) != len(cols) {
				return fmt.Errorf("row %d has %d values for %d columns", start+i, len(r), len(cols))
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(")
			for j, v := range r {
				if j > 0 {
					b.WriteString(", ")
				}
				args = append(args, v)
				b.WriteString(c.d.Placeholder(len(args)))
			}
			b.WriteString(")")
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (c sqlConn) close() { c.db.Close() }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// duckdbOpen opens a DuckDB database file through the driver, when this
// binary has it (build tag duckdb, cgo); nil otherwise.
var duckdbOpen func(dsn string) (*sql.DB, error)

// errNoDuckDB is returned for the DuckDB dialect by a binary built
// without the driver.
var errNoDuckDB = errors.New("warehouse: this fedstat binary was built without DuckDB (build it with -tags duckdb, which needs cgo)")
