package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/internal/store"
	"github.com/fedstat/fedstat/queries/dp"
	"github.com/fedstat/fedstat/queries/plan"
	"github.com/fedstat/fedstat/queries/result"
)

// Query is the node admin's exact local query (`fedstat node query`).
type Query struct {
	// SQL is the query. Required.
	SQL string `json:"sql"`
	// ReferenceDate is the date at which ages are computed, YYYY-MM-DD.
	// Defaults to today.
	ReferenceDate string `json:"reference_date,omitempty"`
	// Regions is the domain of GROUP BY region. Defaults to the regions in
	// the data when its tables are given, else the catalogue's.
	Regions []string `json:"regions,omitempty"`
}

// ErrQuery: the query could not be planned (bad SQL, an unknown table or
// column, a bad reference date). Its text says why.
var ErrQuery = errors.New("admin: bad query")

// ExactAnswer plans q on cat (a copy: q's regions replace its own),
// evaluates it on data and returns the exact, un-noised answer. No privacy
// budget is spent and nothing is noised: the answer is for the node's own
// admin on the node's own machine and must never leave it. tables, when
// not nil, are the data's columnar tables (the regions in them are the
// default domain of GROUP BY region, as for a stopped node); a data source
// without tables (an OMOP warehouse) passes nil.
func ExactAnswer(ctx context.Context, q Query, cat plan.Catalogue, data node.DataSource, tables *cdm.Tables) (*result.Result, error) {
	ref := cdm.DateOf(time.Now())
	if q.ReferenceDate != "" {
		d, err := cdm.ParseDate(q.ReferenceDate)
		if err != nil {
			return nil, fmt.Errorf("%w: reference date: %w", ErrQuery, err)
		}
		ref = d
	}
	switch {
	case len(q.Regions) > 0:
		cat.Regions = q.Regions
	case tables != nil:
		cat.Regions = RegionsIn(tables)
	}
	// The privacy parameters only shape the plan; nothing is noised.
	p, err := plan.Build(plan.Request{SQL: q.SQL, Epsilon: 1, Delta: 1e-6, MinNodes: 1, Threshold: 1, ReferenceDate: ref}, &cat)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrQuery, err)
	}
	e, err := data.Evaluate(ctx, p)
	if err != nil {
		return nil, err
	}
	return dp.Exact(p, e)
}

// RegionsIn lists the patients' regions present in t (none: nil).
func RegionsIn(t *cdm.Tables) []string {
	pt, ok := t.Table(cdm.TablePatients)
	if !ok {
		return nil
	}
	col := pt.Strings["region"]
	if col == nil {
		return nil
	}
	var out []string
	for _, v := range col.Dict.Values() {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// WriteResult writes r as `fedstat node query` prints it: "table", "json"
// or "csv".
func WriteResult(w io.Writer, r *result.Result, format string) error {
	switch format {
	case "json":
		return r.WriteJSON(w)
	case "csv":
		return r.WriteCSV(w)
	case "table", "":
		return r.WriteTable(w)
	}
	return fmt.Errorf("%w: format %q: want table, json or csv", ErrQuery, format)
}

// Local answers the node admin's requests about the data of a running
// daemon, on its admin socket (node.Config.Local): `fedstat node status`
// and `fedstat node query` while the daemon holds the store. The answers
// are exact; the admin socket is their only door (mode 0600, the node's
// own user, nothing on the network).
type Local struct {
	// DataDir is the daemon's data directory (shown in the status).
	DataDir string
	// Store is the daemon's store, for the status. Required.
	Store *store.Store
	// Data is what the daemon answers queries from: Store, or an OMOP
	// warehouse. Defaults to Store.
	Data node.DataSource
	// Catalogue is the network catalogue the daemon plans with (its
	// identifier system, when linked, is counted in the status). Required.
	Catalogue *plan.Catalogue
	// BuildTime is how long the daemon took to build the columnar copy.
	BuildTime time.Duration
}

// LocalQuery is the body of POST /query: the query and the output format
// ("table", "json" or "csv").
type LocalQuery struct {
	Query
	Format string `json:"format,omitempty"`
}

// Handler serves, on the admin socket:
//
//	GET  /status  the Status of the store, as JSON
//	POST /query   a LocalQuery as JSON; the exact answer in its format
//
// A query that cannot be planned is 400 with the reason as text; other
// failures are 500.
func (l *Local) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		system := ""
		if l.Catalogue != nil && l.Catalogue.Linkage != nil {
			system = l.Catalogue.Linkage.IdentifierSystem
		}
		st, err := StatusFor(l.Store, system)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		st.DataDir, st.BuildTime = l.DataDir, l.BuildTime
		st.NameCodes(l.Catalogue)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /query", func(w http.ResponseWriter, r *http.Request) {
		var q LocalQuery
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&q); err != nil {
			http.Error(w, "admin: bad query request: "+err.Error(), http.StatusBadRequest)
			return
		}
		switch q.Format {
		case "", "table", "json", "csv":
		default:
			http.Error(w, fmt.Sprintf("admin: format %q: want table, json or csv", q.Format), http.StatusBadRequest)
			return
		}
		data, tables := l.Data, (*cdm.Tables)(nil)
		if data == nil || data == node.DataSource(l.Store) {
			data, tables = l.Store, l.Store.Tables()
		}
		res, err := ExactAnswer(r.Context(), q.Query, *l.Catalogue, data, tables)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, ErrQuery) {
				code = http.StatusBadRequest
			}
			http.Error(w, err.Error(), code)
			return
		}
		if err := WriteResult(w, res, q.Format); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	return mux
}
