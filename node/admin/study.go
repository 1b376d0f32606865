package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/store"
	"github.com/fedstat/fedstat/node/internal/studycsv"
)

// StudySummary describes a study import.
type StudySummary struct {
	store.StudySummary
	// OutOfRange counts number cells outside their column's public range,
	// by column (they are stored; queries clamp them).
	OutOfRange map[string]int `json:"out_of_range,omitempty"`
}

// ReadStudy reads a study CSV file by its schema. Bad cells make an
// *ImportError (nothing is read); a bad header is returned as it is.
func ReadStudy(path string, schema *cdm.StudySchema) (*cdm.Study, map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("admin: %w", err)
	}
	defer f.Close()
	res, err := studycsv.Read(f, path, schema)
	if err != nil {
		return nil, nil, err
	}
	if len(res.Errors) > 0 {
		ie := &ImportError{Total: len(res.Errors)}
		ie.Errors = res.Errors[:min(len(res.Errors), 20)]
		return nil, nil, ie
	}
	return res.Study, res.OutOfRange, nil
}

// ImportStudy reads the study CSV at path by schema and stores it as the
// study table schema.Name in the store of dataDir (replacing a study of
// that name), all or nothing: any bad cell fails the import with an
// *ImportError listing file, line, column and what was expected, and
// nothing is written.
func ImportStudy(ctx context.Context, o OpenOptions, schema *cdm.StudySchema, path string) (*StudySummary, error) {
	st, oor, err := ReadStudy(path, schema)
	if err != nil {
		return nil, err
	}
	s, db, err := OpenStore(ctx, o)
	if err != nil {
		return nil, err
	}
	sum, err := s.ImportStudy(st, path)
	if cerr := db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("admin: close: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	return &StudySummary{StudySummary: *sum, OutOfRange: oor}, nil
}

// ErrNotStore is returned by ImportStudyIn for a data source that is not a
// store opened by OpenStore.
var ErrNotStore = errors.New("admin: not a node data store")

// ImportStudyIn stores an already read study in ds, a store opened by
// OpenStore (as the demo's node data sources are), for the demo and tests.
func ImportStudyIn(ds any, st *cdm.Study, source string) (*store.StudySummary, error) {
	s, ok := ds.(*store.Store)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrNotStore, ds)
	}
	return s.ImportStudy(st, source)
}

// StudyNames lists the studies of a store.
func StudyNames(s *store.Store) []string {
	var out []string
	for _, sc := range s.Studies() {
		out = append(out, sc.Name)
	}
	sort.Strings(out)
	return out
}
