package admin

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/store"
	"github.com/fedstat/fedstat/queries/plan"
)

// Status summarises a node's stored data, for its admin only (exact counts).
type Status struct {
	DataDir string `json:"data_dir"`
	// Generation is the last committed import generation.
	Generation uint64 `json:"generation"`
	// Imports lists the committed imports, oldest first (at most the last
	// 20).
	Imports []ImportLogEntry `json:"imports"`
	// Tables counts rows per table.
	Tables map[string]int `json:"tables"`
	// Dates gives each date column's range, by table and column.
	Dates map[string]map[string]DateRange `json:"dates"`
	// Regions counts patients by region, most first.
	Regions []Count `json:"regions"`
	// TopCodes lists the 10 most frequent codes of each coded table
	// (cdm.TableSchema.Coded: encounters by type_code), by rows.
	TopCodes map[string][]Count `json:"top_codes"`
	// Studies lists the study (agency) tables with their rows and
	// persons, by name.
	Studies []StudyCount `json:"studies,omitempty"`
	// Identifiers counts the patients that carry an identifier of the
	// network's identifier system ([linkage] identifier_system); absent
	// when the node's config names none (GetStatusFor, StatusFor).
	Identifiers *IdentifierCount `json:"identifiers,omitempty"`
	// BuildTime is how long building the columnar copy took at open.
	BuildTime time.Duration `json:"build_ns"`
}

// StudyCount is a study table's size.
type StudyCount struct {
	Name    string `json:"name"`
	Rows    int    `json:"rows"`
	Persons int    `json:"persons"`
}

// IdentifierCount counts the patients (rows of the patients table) with
// and without an identifier of System (exact; the node admin's own view).
type IdentifierCount struct {
	System   string `json:"system"`
	With     int    `json:"with"`
	Patients int    `json:"patients"`
}

// ImportLogEntry is one committed import.
type ImportLogEntry struct {
	Generation uint64         `json:"generation"`
	Time       time.Time      `json:"time"`
	Source     string         `json:"source"`
	Added      map[string]int `json:"added"`
	Replaced   map[string]int `json:"replaced"`
}

// DateRange is the range of one date column. Min and Max are YYYY-MM-DD,
// empty when the column has no dates; Missing counts rows without one.
type DateRange struct {
	Min     string `json:"min"`
	Max     string `json:"max"`
	Missing int    `json:"missing"`
}

// Count is a value with its number of rows. System is the code system for
// codes.
type Count struct {
	Value  string `json:"value"`
	System string `json:"system,omitempty"`
	Rows   int    `json:"rows"`
	// Name is the code's display name when the network catalogue's value
	// sets give one (only a running daemon knows the catalogue).
	Name string `json:"name,omitempty"`
}

// NameCodes fills the names of st's top codes from the value sets of cat.
func (st *Status) NameCodes(cat *plan.Catalogue) {
	if cat == nil || len(cat.ValueSets) == 0 {
		return
	}
	names := cat.CodeNames()
	for _, cs := range st.TopCodes {
		for i := range cs {
			cs[i].Name = names[cs[i].Value]
		}
	}
}

// GetStatus opens the data directory read for a status and closes it. A
// directory that does not exist or holds no store is refused
// (CheckDataDir, NeedStore): nothing is created.
func GetStatus(ctx context.Context, dataDir, keyFile string) (*Status, error) {
	return GetStatusFor(ctx, dataDir, keyFile, "")
}

// GetStatusFor is GetStatus that also counts the patients carrying an
// identifier of identifierSystem (the node config's [linkage]
// identifier_system; "" counts nothing).
func GetStatusFor(ctx context.Context, dataDir, keyFile, identifierSystem string) (*Status, error) {
	if err := CheckDataDir(dataDir, NeedStore); err != nil {
		return nil, err
	}
	t0 := time.Now()
	s, db, err := OpenStore(ctx, OpenOptions{DataDir: dataDir, KeyFile: keyFile})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	build := time.Since(t0)
	st, err := StatusFor(s, identifierSystem)
	if err != nil {
		return nil, err
	}
	st.DataDir, st.BuildTime = dataDir, build
	return st, nil
}

// StatusOf summarises an open store (the daemon's admin view).
func StatusOf(s *store.Store) (*Status, error) { return StatusFor(s, "") }

// StatusFor is StatusOf that also counts the patients carrying an
// identifier of identifierSystem ("" counts nothing): what the daemon's
// admin status gives when its config has [linkage].
func StatusFor(s *store.Store, identifierSystem string) (*Status, error) {
	t := s.Tables()
	st := Summarize(t)
	if identifierSystem != "" {
		st.Identifiers = CountIdentifiers(t, identifierSystem)
	}
	st.Generation = s.Generation()
	log, err := s.ImportLog()
	if err != nil {
		return nil, fmt.Errorf("admin: import log: %w", err)
	}
	if len(log) > 20 {
		log = log[len(log)-20:]
	}
	for _, l := range log {
		st.Imports = append(st.Imports, ImportLogEntry{Generation: l.Generation, Time: l.Time, Source: l.Source, Added: l.Added, Replaced: l.Replaced})
	}
	return st, nil
}

// Summarize computes rows, date ranges, regions and top codes of t.
func Summarize(t *cdm.Tables) *Status {
	st := &Status{Tables: map[string]int{}, Dates: map[string]map[string]DateRange{}, TopCodes: map[string][]Count{}}
	for _, name := range t.Names() {
		tb, _ := t.Table(name)
		st.Tables[name] = tb.Rows
		sch, ok := cdm.LookupTable(name)
		if !ok {
			continue
		}
		for _, c := range sch.Columns {
			if c.Type != cdm.TypeDate {
				continue
			}
			r := DateRange{}
			lo, hi := cdm.Date(0), cdm.Date(0)
			seen := false
			for _, d := range tb.Dates[c.Name] {
				if d == cdm.NoDate {
					r.Missing++
					continue
				}
				if !seen || d < lo {
					lo = d
				}
				if !seen || d > hi {
					hi = d
				}
				seen = true
			}
			if seen {
				r.Min, r.Max = lo.String(), hi.String()
			}
			if st.Dates[name] == nil {
				st.Dates[name] = map[string]DateRange{}
			}
			st.Dates[name][c.Name] = r
		}
	}
	if tb, ok := t.Table(cdm.TablePatients); ok {
		if col := tb.Strings["region"]; col != nil {
			counts := make([]int, col.Dict.Len())
			for _, id := range col.IDs {
				counts[id]++
			}
			for id, n := range counts {
				if n > 0 {
					st.Regions = append(st.Regions, Count{Value: col.Dict.Value(uint32(id)), Rows: n})
				}
			}
			sortCounts(st.Regions)
		}
	}
	var seen []bool // persons of a study table, by patient index
	for _, name := range t.Names() {
		if _, ok := cdm.LookupTable(name); ok {
			continue
		}
		tb, _ := t.Table(name)
		seen = slices.Grow(seen[:0], t.NumPatients())[:t.NumPatients()]
		clear(seen)
		persons := 0
		for _, p := range tb.Patient {
			if !seen[p] {
				seen[p] = true
				persons++
			}
		}
		st.Studies = append(st.Studies, StudyCount{Name: name, Rows: tb.Rows, Persons: persons})
	}
	for i := range cdm.Schema {
		name, cols := cdm.Schema[i].Name, cdm.Schema[i].Coded
		tb, ok := t.Table(name)
		if cols[0] == "" || !ok || tb.Rows == 0 {
			continue
		}
		code, sys := tb.Strings[cols[0]], tb.Strings[cols[1]]
		counts := map[[2]uint32]int{}
		for i := range tb.Rows {
			counts[[2]uint32{code.IDs[i], sys.IDs[i]}]++
		}
		var cs []Count
		for k, n := range counts {
			cs = append(cs, Count{Value: code.Dict.Value(k[0]), System: sys.Dict.Value(k[1]), Rows: n})
		}
		sortCounts(cs)
		if len(cs) > 10 {
			cs = cs[:10]
		}
		st.TopCodes[name] = cs
	}
	return st
}

// CountIdentifiers counts the patients of t that carry an identifier of
// system (cdm.Tables.ResidentKey).
func CountIdentifiers(t *cdm.Tables, system string) *IdentifierCount {
	ic := &IdentifierCount{System: system}
	tb, ok := t.Table(cdm.TablePatients)
	if !ok {
		return ic
	}
	for _, p := range tb.Patient {
		ic.Patients++
		if _, shared := t.ResidentKey(p, system); shared {
			ic.With++
		}
	}
	return ic
}

func sortCounts(cs []Count) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Rows != cs[j].Rows {
			return cs[i].Rows > cs[j].Rows
		}
		if cs[i].Value != cs[j].Value {
			return cs[i].Value < cs[j].Value
		}
		return cs[i].System < cs[j].System
	})
}
