package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/ingest"
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

// ImportStudy streams the study CSV at path (gzip when it ends in .gz) by
// schema into the store of o.DataDir as the study table schema.Name
// (replacing a study of that name), all or nothing, with bounded memory:
// rows are staged in the store chunk by chunk and made visible in one
// final commit (store.ImportStudyFrom). Any bad cell or row, anywhere in
// the file, fails the import with an *ImportError listing file, line,
// column and what was expected (the first o.MaxErrors, default 20, and
// the total), and the stored tables are left as they were; so does a
// cancellation of ctx (Ctrl-C) or a crash. Progress goes to o.Progress (a
// bar) or o.Logger. Of o only DataDir, KeyFile, MaxErrors, Progress and
// Logger apply; a study cannot be imported in part, so o.Quarantine is
// refused.
func ImportStudy(ctx context.Context, o ImportOptions, schema *cdm.StudySchema, path string) (*StudySummary, error) {
	if o.Quarantine != "" {
		return nil, errors.New("admin: a study is imported whole; quarantine is for CDM records")
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	sf, err := ingest.OpenStudy(ctx, ingest.Options{Progress: o.Progress, Logger: o.Logger}, path, schema)
	var pe *os.PathError
	if errors.As(err, &pe) {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err != nil {
		return nil, err
	}
	defer sf.Close()
	s, db, err := OpenStore(ctx, OpenOptions{DataDir: o.DataDir, KeyFile: o.KeyFile, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	src := &studySource{r: sf.Reader}
	if fi, err := os.Stat(path); err == nil && !strings.HasSuffix(path, ".gz") {
		src.size = fi.Size()
	}
	sum, err := s.ImportStudyFrom(ctx, schema, src, store.StudyImportOptions{Source: path, MaxErrors: o.MaxErrors})
	if cerr := db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("admin: close: %w", cerr)
	}
	var re *store.StudyRowsError
	if errors.As(err, &re) {
		return nil, &ImportError{Total: re.Total, Errors: re.Errors, NoQuarantine: true}
	}
	if err != nil {
		return nil, err
	}
	return &StudySummary{StudySummary: *sum, OutOfRange: sf.OutOfRange}, nil
}

// studyRowsPerRead is how many CSV rows a study import reads at a time.
const studyRowsPerRead = 8192

// studySource feeds a study CSV reader to the store.
type studySource struct {
	r     *studycsv.Reader
	size  int64 // of the file, when not compressed (for the rows hint)
	first bool
}

func (s *studySource) Next() (*store.StudyChunk, error) {
	c, err := s.r.Next(studyRowsPerRead)
	if err != nil {
		return nil, err
	}
	out := &store.StudyChunk{Rows: c.Rows, Origins: c.Origins, Bad: c.Bad}
	if !s.first {
		s.first = true
		if n, off := c.Rows.Rows()+len(c.Bad), s.r.Offset(); s.size > 0 && off > 0 && n > 0 {
			out.RowsHint = int(float64(s.size)/float64(off)*float64(n)*1.02) + 1
		}
	}
	return out, nil
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

// ImportRecordsIn adds already read records to ds, a store opened by
// OpenStore (as the demo's node data sources are), for the demo and tests:
// a new data version, as an admin's import makes.
func ImportRecordsIn(ctx context.Context, ds any, r *cdm.Records, source string) error {
	s, ok := ds.(*store.Store)
	if !ok {
		return fmt.Errorf("%w: %T", ErrNotStore, ds)
	}
	_, err := s.ImportRecords(ctx, r, source)
	return err
}
