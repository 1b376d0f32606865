package admin

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/ingest"
	"github.com/fedstat/fedstat/node/internal/store"
)

// StudySummary describes a study import.
type StudySummary struct {
	store.StudySummary
	// OutOfRange counts number cells outside their column's public range,
	// by column (they are stored; queries clamp them).
	OutOfRange map[string]int `json:"out_of_range,omitempty"`
}

// ReadStudy reads a study CSV file by its schema. Bad cells make an
// *ImportError listing the first 20 (nothing is read); a bad header is
// returned as it is.
func ReadStudy(path string, schema *cdm.StudySchema) (*cdm.Study, map[string]int, error) {
	return readStudy(path, schema, 20)
}

func readStudy(path string, schema *cdm.StudySchema, maxErrors int) (*cdm.Study, map[string]int, error) {
	res, err := ingest.ReadStudy(path, schema)
	var pe *os.PathError
	if errors.As(err, &pe) {
		return nil, nil, fmt.Errorf("admin: %w", err)
	}
	if err != nil {
		return nil, nil, err
	}
	if len(res.Errors) > 0 {
		ie := &ImportError{Total: len(res.Errors), NoQuarantine: true}
		ie.Errors = res.Errors[:min(len(res.Errors), maxErrors)]
		return nil, nil, ie
	}
	return res.Study, res.OutOfRange, nil
}

// ImportStudy reads the study CSV at path by schema and stores it as the
// study table schema.Name in the store of o.DataDir (replacing a study of
// that name), all or nothing: any bad cell fails the import with an
// *ImportError listing file, line, column and what was expected (the first
// o.MaxErrors, default 20), and nothing is written. Of o only DataDir,
// KeyFile and MaxErrors apply; a study cannot be imported in part, so
// o.Quarantine is refused.
func ImportStudy(ctx context.Context, o ImportOptions, schema *cdm.StudySchema, path string) (*StudySummary, error) {
	if o.Quarantine != "" {
		return nil, errors.New("admin: a study is imported whole; quarantine is for CDM records")
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 20
	}
	st, oor, err := readStudy(path, schema, o.MaxErrors)
	if err != nil {
		return nil, err
	}
	s, db, err := OpenStore(ctx, OpenOptions{DataDir: o.DataDir, KeyFile: o.KeyFile})
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
