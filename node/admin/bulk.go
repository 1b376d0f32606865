package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/fhir"
	"github.com/fedstat/fedstat/node/internal/ingest"
	"github.com/fedstat/fedstat/node/internal/store"
)

// importBulk is ImportInto with o.Bulk: the patients' files are imported
// as usual (one keyed import, held in memory: one entry per patient), then
// every other file is streamed in chunks of o.ChunkRows records into one
// bulk import (store.ImportBulk), which commits atomically. The two are
// separate commits: killed between them, the patients are stored and the
// records are not; running the same import again then stores the records
// (the patients are unchanged). Any bad record fails the bulk import
// (nothing of it is stored), naming its file and line.
//
// Memory: two chunks of records (one being read, one being written; about
// 300 bytes a record as decoded) plus the store's bound (store.ImportBulk):
// about 50 MB at the default chunk size, whatever the number of rows.
func importBulk(ctx context.Context, s *store.Store, o ImportOptions, rule fhir.RegionRule, paths []string) (*ImportSummary, error) {
	if o.Quarantine != "" {
		return nil, ErrBulkOptions
	}
	in := ingest.Options{Region: rule, Table: o.Table, CodeMap: o.codeMap, Logger: o.Logger}
	patients, others, err := ingest.StreamFiles(in, paths)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	sum := &ImportSummary{Read: map[string]int{}, Added: map[string]int{}, Replaced: map[string]int{}, Unchanged: map[string]int{}}
	if len(patients) > 0 {
		po := o
		po.Bulk = false
		ps, err := importInto(ctx, s, po, rule, patients)
		if err != nil {
			return ps, err
		}
		*sum = *ps
		for _, m := range []*map[string]int{&sum.Read, &sum.Added, &sum.Replaced, &sum.Unchanged} {
			if *m == nil {
				*m = map[string]int{}
			}
		}
	}
	if len(others) == 0 {
		return sum, nil
	}
	t0 := time.Now()
	src := newStreamSource(ctx, in, others, o.ChunkRows, o.MaxErrors, sum)
	st, err := s.ImportBulk(ctx, src, sourceOf(others))
	src.stop()
	if ierr := src.importError(); ierr != nil {
		// The bad records are the cause; the store only saw the source
		// fail.
		err = ierr
	}
	sum.Files += len(others)
	if st != nil {
		for k, v := range st.Added {
			sum.Added[k] += v
		}
		for k, v := range st.Unchanged {
			sum.Unchanged[k] += v
		}
		sum.Generation = st.Generation
		sum.Write, sum.Build = sum.Write+st.Write, sum.Build+st.Build
	}
	sum.Parse += time.Since(t0) - sum.Write
	return sum, err
}

// streamSource is a store.RecordSource over ingest.Stream: the files are
// read on their own goroutine, one chunk ahead of the store.
type streamSource struct {
	ch     chan *cdm.Batch
	done   chan error
	cancel context.CancelFunc
	max    int
	sum    *ImportSummary
	bad    *ImportError
}

func newStreamSource(ctx context.Context, o ingest.Options, files []string, chunkRows, maxErrors int, sum *ImportSummary) *streamSource {
	ctx, cancel := context.WithCancel(ctx)
	src := &streamSource{ch: make(chan *cdm.Batch), done: make(chan error, 1), cancel: cancel, max: maxErrors, sum: sum}
	go func() {
		defer close(src.ch)
		src.done <- ingest.Stream(ctx, o, files, chunkRows, func(b *cdm.Batch) error {
			select {
			case src.ch <- b:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return src
}

// errBadRecords stops a bulk import at the first chunk with bad records.
var errBadRecords = errors.New("admin: bad input records")

// Next returns the next chunk's records, io.EOF after the last, or
// errBadRecords when a chunk holds bad ones (importError then has them).
func (src *streamSource) Next(ctx context.Context) (*cdm.Records, error) {
	select {
	case b, ok := <-src.ch:
		if !ok {
			if err := <-src.done; err != nil {
				src.done <- err
				return nil, err
			}
			src.done <- nil
			return nil, io.EOF
		}
		if len(b.Errors) > 0 {
			src.bad = &ImportError{Errors: b.Errors[:min(len(b.Errors), src.max)], Total: len(b.Errors), NoQuarantine: true}
			src.sum.Bad += len(b.Errors)
			return nil, errBadRecords
		}
		for k, v := range b.Records.TableCounts() {
			if v > 0 {
				src.sum.Read[k] += v
			}
		}
		return &b.Records, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// stop ends the reading goroutine and waits for it.
func (src *streamSource) stop() {
	src.cancel()
	for range src.ch {
	}
}

// importError returns the bad records that stopped the import, if any.
func (src *streamSource) importError() error {
	if src.bad == nil {
		return nil
	}
	return src.bad
}

// ImportBulkIn stores the records next yields (io.EOF after the last) as
// one bulk import (store.ImportBulk) in ds, a store opened by OpenStore,
// for benchmarks and tests that generate records: no patients, each
// record's patient stored already. It returns the import's generation (0:
// the same records were stored already).
func ImportBulkIn(ctx context.Context, ds any, next func(context.Context) (*cdm.Records, error), source string) (uint64, error) {
	s, ok := ds.(*store.Store)
	if !ok {
		return 0, fmt.Errorf("%w: %T", ErrNotStore, ds)
	}
	sum, err := s.ImportBulk(ctx, funcSource(next), source)
	if err != nil {
		return 0, err
	}
	return sum.Generation, nil
}

// funcSource is a store.RecordSource over a function.
type funcSource func(context.Context) (*cdm.Records, error)

func (f funcSource) Next(ctx context.Context) (*cdm.Records, error) { return f(ctx) }
