// Package store is a node's raw-data store: the CDM records on top of the
// node's kv database (under the key prefix "d/"), and an in-memory columnar
// copy of them for queries.
//
// # Atomic, idempotent imports
//
// Every record is stored under a key that ends in the generation of the
// import that wrote it: d/r/<table><record id>\x00<generation>. The key
// d/m/gen holds the last committed generation G. Readers see, for each
// (table, record id), the version with the highest generation <= G.
//
// An import with generation G+1 first writes its new and changed records
// with a kv.Batch (fast, not atomic, invisible because G+1 > G), then
// commits with one small Update that sets d/m/gen to G+1 and logs the
// import under d/m/imp/<G+1>. That Update is the commit point: killed
// before it, the import has no visible effect; after it, all of it is
// visible. Versions superseded by the import are deleted afterwards. At
// Open, keys of generations > G (left by a killed import) and superseded
// versions (left by a kill after the commit) are deleted before anything
// else happens, so a generation number is never reused while stale keys
// of it exist.
//
// A record identical to its stored version is not written, so importing the
// same data again changes nothing (no new generation). A record with the
// id of a stored one but different content replaces it.
//
// # Concurrency
//
// A Store is safe for concurrent use. Imports are serialised. Tables
// returns an immutable snapshot that readers may hold as long as they like;
// an import swaps in a new snapshot when it commits (a copy of the old one
// extended with the new records when the import only adds, else a rebuild
// from the store).
//
// Raw values never appear in this package's logs: only counts, record
// kinds and generations.
package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/eval"
	"github.com/fedstat/fedstat/queries/plan"
)

// Errors.
var (
	ErrUnknownPatient = fmt.Errorf("store: %w", cdm.ErrUnknownPatient)
	ErrBadRecord      = errors.New("store: bad record")
	ErrBroken         = errors.New("store: an earlier import failed to clean up; reopen the store")
)

// Key layout under the store's prefix.
var (
	prefixRecords = []byte("d/r/")
	keyGen        = []byte("d/m/gen")
	keyRows       = []byte("d/m/rows") // row counts per table (a sizing hint)
	prefixImports = []byte("d/m/imp/")
)

// Prefix is the key prefix of everything this package stores; other node
// state in the same kv.DB must use other prefixes.
const Prefix = "d/"

// Store is a node's data store.
type Store struct {
	db  *kv.DB
	log *slog.Logger

	mu     sync.Mutex // serialises imports
	gen    uint64     // last committed generation (under mu)
	broken error      // set when a failed import could not clean up
	// serials[i] is the serial of the snapshot's patient i; nextSerial the
	// first unused serial (both under mu).
	serials    []uint32
	nextSerial uint32

	snap atomic.Pointer[cdm.Tables] // the CDM tables only
	// view is snap with the study tables (study.go); what Tables returns.
	view atomic.Pointer[cdm.Tables]
	// instance (random at Open) and published (every new view) make the
	// data version (DataVersion): it changes with every change of the data
	// and at every restart, and never comes back.
	instance  string
	published atomic.Uint64
	studies   []*cdm.Study // under mu, sorted by name
	// schemas holds the studies' schemas (Studies, lock-free).
	schemas atomic.Pointer[[]cdm.StudySchema]
	// nextStudyVersion is the version the next study import stages (under
	// mu; study.go).
	nextStudyVersion uint64
	// ProgressEvery, when > 0, logs a debug line every so many staged
	// records (tests watch for it). Set before the first import.
	ProgressEvery int

	// keyed is the columnar copy of the keyed records alone (snap without
	// the bulk segments' tables; the same when there are none). Under mu.
	keyed *cdm.Tables
	// colDir is the column directory of bulk imports ("" none), segs the
	// committed bulk imports by generation, maps every mapped column file
	// (kept for the life of the process), viewSeq the last view directory
	// number. Under mu (bulk.go).
	colDir  string
	segs    []*segMeta
	maps    *mapping
	viewSeq uint64
}

// Options configure OpenWith.
type Options struct {
	// Logger defaults to discarding.
	Logger *slog.Logger
	// ColumnDir is the directory of the column files of bulk imports
	// (ImportBulk), which must be a directory of its own. Defaults to the
	// one the first bulk import recorded; with neither, bulk imports are
	// refused (ErrNoColumnDir).
	ColumnDir string
}

// Open opens the store kept in db, removes what a killed import left behind
// and builds the columnar copy. The caller keeps ownership of db (and closes
// it after the store is no longer used). A nil logger discards messages.
func Open(ctx context.Context, db *kv.DB, logger *slog.Logger) (*Store, error) {
	return OpenWith(ctx, db, Options{Logger: logger})
}

// OpenWith is Open with options: it also maps the column files of bulk
// imports (bulk.go), after removing those of imports that did not commit.
func OpenWith(ctx context.Context, db *kv.DB, o Options) (*Store, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{db: db, log: logger, maps: &mapping{}}
	v, err := db.Get(keyGen)
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("store: read generation: %w", err)
	case len(v) != 8:
		return nil, fmt.Errorf("%w: generation key", errCorrupt)
	default:
		s.gen = binary.BigEndian.Uint64(v)
	}
	t0 := time.Now()
	tables, ld, err := s.load(ctx, true)
	if err != nil {
		return nil, err
	}
	stale := ld.stale
	s.serials, s.nextSerial = ld.serials, ld.nextSerial
	if len(stale) > 0 {
		if err := s.deleteKeys(stale); err != nil {
			return nil, fmt.Errorf("store: remove stale versions: %w", err)
		}
		logger.Info("store: removed versions left by an interrupted or superseded import", "keys", len(stale))
	}
	if s.studies, err = s.loadStudies(ctx); err != nil {
		return nil, err
	}
	if err := s.loadSegments(o); err != nil {
		return nil, err
	}
	s.keyed = tables
	if tables, err = s.assemble(tables); err != nil {
		return nil, err
	}
	s.publish(tables)
	logger.Info("store: opened", "generation", s.gen, "patients", tables.NumPatients(), "build", time.Since(t0).Round(time.Millisecond))
	return s, nil
}

// Tables returns the current columnar snapshot. It is immutable and safe
// for concurrent readers; it does not change when a later import commits
// (call Tables again for the new one).
func (s *Store) Tables() *cdm.Tables { return s.view.Load() }

// Evaluate computes p's exact aggregates on the current snapshot
// (queries/eval): the store as the node's data source (node.DataSource).
// The result must never leave the node.
func (s *Store) Evaluate(ctx context.Context, p *plan.Plan) (*eval.Exact, error) {
	return eval.Evaluate(ctx, p, s.Tables())
}

// Link lists the node's residents for a query across linked agencies on
// the current snapshot (eval.LinkElements; node.LinkSource). The lists
// must never leave the node in the clear.
func (s *Store) Link(ctx context.Context, p *plan.Plan) (*eval.LinkLocal, error) {
	return eval.LinkElements(ctx, p, s.Tables())
}

// Periods counts the periods of a standing series on the current snapshot
// with its contribution bound (eval.PeriodCounts; node.SeriesSource). The
// result must never leave the node.
func (s *Store) Periods(ctx context.Context, p *plan.Plan, w eval.Periods) (*eval.Exact, error) {
	return eval.PeriodCounts(ctx, p, s.Tables(), w)
}

// Summary returns the exact patient and row counts of the current
// snapshot, study tables included (node.DataSource).
func (s *Store) Summary() *typesv1.DataSummary {
	t := s.Tables()
	return &typesv1.DataSummary{Patients: int64(t.NumPatients()), Rows: t.RowCounts()}
}

// DataVersion identifies the data queries see now (node.DataVersioner):
// it changes at every import, study import or deletion, and at every
// restart of the store, so two equal versions mean the same data.
func (s *Store) DataVersion() string {
	return s.instance + "-" + strconv.FormatUint(s.published.Load(), 10)
}

// Generation returns the last committed import generation (0: empty).
func (s *Store) Generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

func genBytes(g uint64) []byte { return binary.BigEndian.AppendUint64(nil, g) }

// loaded is what a load learns besides the tables.
type loaded struct {
	stale      [][]byte
	serials    []uint32 // patient index -> serial
	nextSerial uint32
}

// load scans all records, returning the columnar copy of the committed
// versions, the patients' serials and, when collect is set, the keys of
// stale versions (generation > committed, or superseded by a newer
// committed version).
func (s *Store) load(ctx context.Context, collect bool) (*cdm.Tables, *loaded, error) {
	b := cdm.NewBuilder()
	if v, err := s.db.Get(keyRows); err == nil {
		var rows map[string]int
		if json.Unmarshal(v, &rows) == nil {
			for name, n := range rows {
				b.Grow(name, n)
			}
		}
	}
	var stale [][]byte
	ld := &loaded{}
	var indexOf []uint32 // serial -> patient index + 1 (0: none)
	intern := newInterner()
	var rows rowBufs
	var (
		group    []byte // key without generation, of the pending version
		groupKey []byte // full key of the pending version
		val      []byte // value of the pending version
		have     bool
		orphans  int
		n        int
	)
	// Patients (first in key order) are held until the first other record
	// and then added in serial order (patientsBySerial).
	var pending pendingPatients
	add := func(code byte, id, v []byte) error {
		ok, err := addEncoded(b, code, id, v, intern, ld, &indexOf, &rows)
		if err != nil {
			return fmt.Errorf("%w (table code %q)", err, code)
		}
		if !ok {
			orphans++
		}
		return nil
	}
	flushPatients := func() error {
		if pending.done {
			return nil
		}
		pending.done = true
		return pending.each(add)
	}
	flush := func() error {
		if !have {
			return nil
		}
		have = false
		code := group[len(prefixRecords)]
		id := group[len(prefixRecords)+1 : len(group)-1]
		if t, ok := cdm.TableOfCode(code); ok && t.Patients && !pending.done {
			pending.add(code, id, val)
			return nil
		}
		if err := flushPatients(); err != nil {
			return err
		}
		return add(code, id, val)
	}
	// Badger is read on one goroutine and decoded on this one, so a start
	// uses two cores; chunks of copied pairs go between them.
	chunks, free := make(chan *kvChunk, 4), make(chan *kvChunk, 6)
	for range cap(free) {
		free <- &kvChunk{}
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(chunks)
		readErr <- s.db.View(func(tx *kv.Txn) error {
			it := tx.NewIterator(prefixRecords, false)
			defer it.Close()
			c := <-free
			c.reset()
			for ; it.Valid(); it.Next() {
				if n++; n&0xffff == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				if err := it.Value(func(v []byte) error { c.add(it.Key(), v); return nil }); err != nil {
					return err
				}
				if len(c.offs) >= 2*4096 {
					chunks <- c
					c = <-free
					c.reset()
				}
			}
			chunks <- c
			return nil
		})
	}()
	var err error
	for c := range chunks {
		for i := 0; err == nil && i < len(c.offs); i += 2 {
			k, v := c.pair(i)
			err = func() error {
				if len(k) < len(prefixRecords)+1+1+8 || k[len(k)-9] != 0 {
					return fmt.Errorf("%w: key layout", errCorrupt)
				}
				g := binary.BigEndian.Uint64(k[len(k)-8:])
				gk := k[:len(k)-8]
				if g > s.gen {
					if collect {
						stale = append(stale, bytes.Clone(k))
					}
					return nil
				}
				if have && bytes.Equal(gk, group) {
					// A newer committed version of the same record.
					if collect {
						stale = append(stale, bytes.Clone(groupKey))
					}
				} else if err := flush(); err != nil {
					return err
				}
				group = append(group[:0], gk...)
				groupKey = append(groupKey[:0], k...)
				val = append(val[:0], v...)
				have = true
				return nil
			}()
		}
		free <- c
	}
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = flushPatients()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store: load: %w", err)
	}
	if orphans > 0 {
		s.log.Warn("store: stored records whose patient is missing are not queryable", "records", orphans)
	}
	ld.stale = stale
	return b.Build(), ld, nil
}

// addEncoded decodes one stored record into the builder. id aliases the
// key; it is copied only where the builder keeps it (patient ids). Patients
// come first (key order) and fill indexOf, by which the other records find
// their patient's index. rows holds one reusable row per table.
func addEncoded(b *cdm.Builder, code byte, id, v []byte, intern func([]byte) string, ld *loaded, indexOf *[]uint32, rows *rowBufs) (bool, error) {
	t, ok := cdm.TableOfCode(code)
	if !ok {
		return false, fmt.Errorf("%w: unknown table code %q", errCorrupt, code)
	}
	d := dec{b: v}
	if d.byte1() != formatV1 {
		return false, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	row := rows.of(t)
	if t.Patients {
		sr := d.uvarint()
		d.values(t, row.Values, intern)
		if d.err != nil {
			return false, d.err
		}
		row.ID = string(id)
		b.AddRow(t, row)
		idx := uint32(len(ld.serials))
		ld.serials = append(ld.serials, sr)
		for int(sr) >= len(*indexOf) {
			*indexOf = append(*indexOf, 0)
		}
		(*indexOf)[sr] = idx + 1
		ld.nextSerial = max(ld.nextSerial, sr+1)
		return true, nil
	}
	// The patient, by serial.
	d.str()
	sr := d.uvarint()
	ok = d.err == nil && int(sr) < len(*indexOf) && (*indexOf)[sr] != 0
	d.values(t, row.Values, intern)
	if d.err != nil {
		return false, d.err
	}
	if ok {
		b.AddRowAt(t, (*indexOf)[sr]-1, row.Values)
	}
	return ok, nil
}

// rowBufs holds one reusable row per CDM table for decoding, by store code.
type rowBufs [256]*cdm.Row

func (r *rowBufs) of(t *cdm.TableSchema) *cdm.Row {
	if r[t.Code] == nil {
		r[t.Code] = t.NewRow()
	}
	return r[t.Code]
}

func (s *Store) deleteKeys(keys [][]byte) error {
	wb := s.db.NewBatch()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			return err
		}
	}
	return wb.Flush()
}

// Summary describes one import.
type Summary struct {
	// Source is the caller's description of the input (file names).
	Source string `json:"source"`
	// Generation is the generation the import committed, or 0 when it
	// changed nothing.
	Generation uint64 `json:"generation"`
	// Added, Replaced and Unchanged count records by table name.
	Added     map[string]int `json:"added"`
	Replaced  map[string]int `json:"replaced"`
	Unchanged map[string]int `json:"unchanged"`
	// Removed counts the records a DropBulk removed, by table name.
	Removed map[string]int `json:"removed,omitempty"`
	// Duplicates counts records that appeared more than once in the input
	// with the same table and id; the last one was kept.
	Duplicates int       `json:"duplicates"`
	Time       time.Time `json:"time"`
	// Write is the time spent writing and committing; Build the time spent
	// rebuilding the columnar copy.
	Write time.Duration `json:"write_ns"`
	Build time.Duration `json:"build_ns"`
}

// Changed reports whether the import added or replaced anything.
func (s *Summary) Changed() bool { return s.Generation != 0 }

type staged struct {
	key   []byte // record key without generation: d/r/<code><id>\x00
	table string
	val   []byte
}

// ImportRecords stores r atomically: all of it becomes visible at once, or
// (on error, cancellation or a crash) none of it. Records identical to their
// stored version are skipped; records with a stored id but other content
// replace it. Every non-patient record must name a patient in r or already
// stored (else ErrUnknownPatient and nothing is written). Ids must be
// non-empty and free of NUL bytes (ErrBadRecord). source is kept in the
// import log.
func (s *Store) ImportRecords(ctx context.Context, r *cdm.Records, source string) (*Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return nil, fmt.Errorf("%w: %v", ErrBroken, s.broken)
	}
	snap := s.keyed
	if err := checkPatients(r, snap); err != nil {
		return nil, err
	}
	recs, _, err := stage(r, snap, s.serials, s.nextSerial)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Source: source, Added: map[string]int{}, Replaced: map[string]int{}, Unchanged: map[string]int{}, Time: time.Now().UTC()}
	// Sort by key; among equal keys keep the last given (stable sort).
	slices.SortStableFunc(recs, func(a, b staged) int { return bytes.Compare(a.key, b.key) })
	dedup := recs[:0]
	for i := range recs {
		if i+1 < len(recs) && bytes.Equal(recs[i].key, recs[i+1].key) {
			sum.Duplicates++
			continue
		}
		dedup = append(dedup, recs[i])
	}
	recs = dedup

	t0 := time.Now()
	// Compare with the stored versions.
	var superseded [][]byte
	write := recs[:0]
	err = s.db.View(func(tx *kv.Txn) error {
		it := tx.NewIterator(prefixRecords, false)
		defer it.Close()
		for i := range recs {
			rec := recs[i]
			if tb, ok := snap.Table(rec.table); ok && tb.Rows == 0 {
				sum.Added[rec.table]++
				write = append(write, rec)
				continue
			}
			if i&0xfff == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			var last []byte
			var same bool
			// recs are sorted: seek only when the iterator is behind.
			if it.Valid() && bytes.Compare(it.Key(), rec.key) < 0 {
				it.Seek(rec.key)
			}
			for ; it.Valid(); it.Next() {
				k := it.Key()
				if len(k) != len(rec.key)+8 || !bytes.HasPrefix(k, rec.key) {
					break
				}
				last = bytes.Clone(k)
				if err := it.Value(func(v []byte) error { same = bytes.Equal(v, rec.val); return nil }); err != nil {
					return err
				}
			}
			switch {
			case last == nil:
				sum.Added[rec.table]++
				write = append(write, rec)
			case same:
				sum.Unchanged[rec.table]++
			default:
				sum.Replaced[rec.table]++
				superseded = append(superseded, last)
				write = append(write, rec)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: compare: %w", err)
	}
	if len(write) == 0 {
		s.log.Info("store: import changed nothing", "unchanged", len(recs))
		return sum, nil
	}

	ng := s.gen + 1
	gb := genBytes(ng)
	wb := s.db.NewBatch()
	undo := func(cause error) error {
		wb.Cancel()
		keys := make([][]byte, len(write))
		for i := range write {
			keys[i] = append(bytes.Clone(write[i].key), gb...)
		}
		if err := s.deleteKeys(keys); err != nil {
			s.broken = err
			s.log.Error("store: could not remove the keys of a failed import; they are removed at the next open", "generation", ng)
		}
		return cause
	}
	for i := range write {
		if i&0xfff == 0 && ctx.Err() != nil {
			return nil, undo(fmt.Errorf("store: import cancelled: %w", ctx.Err()))
		}
		if s.ProgressEvery > 0 && i > 0 && i%s.ProgressEvery == 0 {
			s.log.Debug("store: staging", "records", i, "of", len(write))
		}
		if err := wb.Set(append(write[i].key, gb...), write[i].val); err != nil {
			return nil, undo(fmt.Errorf("store: stage: %w", err))
		}
	}
	if err := wb.Flush(); err != nil {
		return nil, undo(fmt.Errorf("store: stage: %w", err))
	}
	sum.Generation = ng
	logEntry, _ := json.Marshal(sum)
	rows := map[string]int{}
	for _, name := range snap.Names() {
		tb, _ := snap.Table(name)
		rows[name] = tb.Rows + sum.Added[name]
	}
	rowsJSON, _ := json.Marshal(rows)
	// The commit point.
	err = s.db.Update(func(tx *kv.Txn) error {
		if err := tx.Set(keyGen, gb); err != nil {
			return err
		}
		if err := tx.Set(keyRows, rowsJSON); err != nil {
			return err
		}
		return tx.Set(append(bytes.Clone(prefixImports), gb...), logEntry)
	})
	if err != nil {
		sum.Generation = 0
		return nil, undo(fmt.Errorf("store: commit: %w", err))
	}
	s.gen = ng
	if len(superseded) > 0 {
		if err := s.deleteKeys(superseded); err != nil {
			s.log.Warn("store: could not remove superseded versions now; they are removed at the next open", "keys", len(superseded))
		}
	}
	sum.Write = time.Since(t0)
	t1 := time.Now()
	var tables *cdm.Tables
	var ld *loaded
	if len(superseded) == 0 {
		// Only new records: extend a copy of the snapshot.
		tables, ld, err = extend(snap, s.serials, write)
	} else {
		tables, ld, err = s.load(context.WithoutCancel(ctx), false)
	}
	if err != nil {
		s.broken = err
		return sum, fmt.Errorf("store: import committed but rebuilding the columnar copy failed: %w", err)
	}
	s.serials, s.nextSerial = ld.serials, ld.nextSerial
	s.keyed = tables
	if tables, err = s.assemble(tables); err != nil {
		s.broken = err
		return sum, fmt.Errorf("store: import committed but mapping the bulk columns failed: %w", err)
	}
	s.publish(tables)
	sum.Build = time.Since(t1)
	s.log.Info("store: import committed", "generation", ng, "written", len(write), "unchanged", len(recs)-len(write),
		"write", sum.Write.Round(time.Millisecond), "build", sum.Build.Round(time.Millisecond))
	return sum, nil
}

// extend returns snap plus the new records of write (sorted by key, so
// patients first), without reading the store.
func extend(snap *cdm.Tables, serials []uint32, write []staged) (*cdm.Tables, *loaded, error) {
	b := cdm.NewBuilderFrom(snap)
	ld := &loaded{serials: append(make([]uint32, 0, len(serials)+1024), serials...)}
	var indexOf []uint32
	for i, sr := range serials {
		for int(sr) >= len(indexOf) {
			indexOf = append(indexOf, 0)
		}
		indexOf[sr] = uint32(i) + 1
		ld.nextSerial = max(ld.nextSerial, sr+1)
	}
	intern := newInterner()
	var rows rowBufs
	orphans := 0
	// New patients (first in key order) in serial order, as load adds
	// them.
	np := 0
	for np < len(write) {
		if t, ok := cdm.TableOfCode(write[np].key[len(prefixRecords)]); !ok || !t.Patients {
			break
		}
		np++
	}
	if np > 1 {
		write = slices.Clone(write)
		slices.SortStableFunc(write[:np], func(a, b staged) int { return cmpSerial(a.val, b.val) })
	}
	for _, w := range write {
		ok, err := addEncoded(b, w.key[len(prefixRecords)], w.key[len(prefixRecords)+1:len(w.key)-1], w.val, intern, ld, &indexOf, &rows)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			orphans++
		}
	}
	if orphans > 0 {
		return nil, nil, fmt.Errorf("%w: %d new records without a patient", errCorrupt, orphans)
	}
	return b.Build(), ld, nil
}

func newInterner() func([]byte) string {
	in := map[string]string{}
	return func(v []byte) string {
		if x, ok := in[string(v)]; ok {
			return x
		}
		x := string(v)
		in[x] = x
		return x
	}
}

// checkPatients refuses records that name an unknown patient (the import's
// patient check, cdm.Records.UnknownPatients, run again under the store's
// lock: another import may have committed since the caller's check).
func checkPatients(r *cdm.Records, snap *cdm.Tables) error {
	bad := r.UnknownPatients(r.PatientKnown(snap))
	if len(bad) == 0 {
		return nil
	}
	var unknown []string
	for _, ref := range bad[:min(len(bad), 5)] {
		_, pid := ref.Table.Key(r, ref.Index)
		unknown = append(unknown, ref.Table.Name+" record naming patient "+fmt.Sprintf("%q", pid))
	}
	return fmt.Errorf("%w: %d records, e.g. %s", ErrUnknownPatient, len(bad), strings.Join(unknown, ", "))
}

func recKey(code byte, id string) []byte {
	k := make([]byte, 0, len(prefixRecords)+1+len(id)+1+8)
	k = append(k, prefixRecords...)
	k = append(k, code)
	k = append(k, id...)
	return append(k, 0)
}

func checkID(table string, i int, id string) error {
	if id == "" || strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("%w: %s record %d: id must be non-empty and free of NUL bytes", ErrBadRecord, table, i)
	}
	return nil
}

// stage encodes all records, table by table in Schema order (patients
// first). A patient keeps its stored serial; new patients get serials from
// next on. It returns the next unused serial. checkPatients ran: every
// patient named is stored or in r.Patients.
func stage(r *cdm.Records, snap *cdm.Tables, serials []uint32, next uint32) ([]staged, uint32, error) {
	out := make([]staged, 0, r.Len())
	newSerials := map[string]uint32{}
	serialOf := func(pid string) uint32 {
		if i, ok := snap.PatientIndex(pid); ok {
			return serials[i]
		}
		if sr, ok := newSerials[pid]; ok {
			return sr
		}
		sr := next
		next++
		newSerials[pid] = sr
		return sr
	}
	var buf []byte
	for ti := range cdm.Schema {
		t := &cdm.Schema[ti]
		row := t.NewRow()
		for i := range t.Len(r) {
			t.Row(r, i, row)
			if err := checkID(t.Name, i, row.ID); err != nil {
				return nil, 0, err
			}
			buf = encode(buf[:0], t, row, serialOf(row.PatientID))
			out = append(out, staged{key: recKey(t.Code, row.ID), table: t.Name, val: bytes.Clone(buf)})
		}
	}
	return out, next, nil
}

// ImportLog returns the logged summaries of all committed imports, oldest
// first.
func (s *Store) ImportLog() ([]Summary, error) {
	var out []Summary
	err := s.db.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefixImports, func(_, v []byte) error {
			var sum Summary
			if err := json.Unmarshal(v, &sum); err != nil {
				return err
			}
			out = append(out, sum)
			return nil
		})
	})
	return out, err
}

// kvChunk is a batch of key/value pairs copied out of a read transaction.
type kvChunk struct {
	arena []byte
	offs  []int // end offsets: key i ends at offs[2i], its value at offs[2i+1]
}

func (c *kvChunk) reset() { c.arena, c.offs = c.arena[:0], c.offs[:0] }

func (c *kvChunk) add(k, v []byte) {
	c.arena = append(c.arena, k...)
	c.offs = append(c.offs, len(c.arena))
	c.arena = append(c.arena, v...)
	c.offs = append(c.offs, len(c.arena))
}

// pair returns the pair whose key end is offs[i] (i even).
func (c *kvChunk) pair(i int) (k, v []byte) {
	start := 0
	if i > 0 {
		start = c.offs[i-1]
	}
	return c.arena[start:c.offs[i]], c.arena[c.offs[i]:c.offs[i+1]]
}

// pendingPatients holds stored patients (key, value) until they are added
// to a builder in serial order: a patient's index in the columnar copy is
// then the rank of its serial, and serials are dense and never change, so
// indices stay stable across imports (new patients get new, higher
// serials) and a bulk segment's patient column, which holds serials, is
// its index column (bulk.go).
type pendingPatients struct {
	arena []byte
	ents  []pendingPatient
	done  bool
}

type pendingPatient struct {
	serial uint32
	code   byte
	// The id is arena[start:idEnd], the value arena[idEnd:valEnd].
	start, idEnd, valEnd int
}

func (p *pendingPatients) add(code byte, id, v []byte) {
	e := pendingPatient{serial: serialOf(v), code: code, start: len(p.arena)}
	p.arena = append(p.arena, id...)
	e.idEnd = len(p.arena)
	p.arena = append(p.arena, v...)
	e.valEnd = len(p.arena)
	p.ents = append(p.ents, e)
}

// each calls fn with the patients in serial order and frees them.
func (p *pendingPatients) each(fn func(code byte, id, v []byte) error) error {
	slices.SortStableFunc(p.ents, func(a, b pendingPatient) int { return cmp.Compare(a.serial, b.serial) })
	for _, e := range p.ents {
		if err := fn(e.code, p.arena[e.start:e.idEnd], p.arena[e.idEnd:e.valEnd]); err != nil {
			return err
		}
	}
	p.arena, p.ents = nil, nil
	return nil
}

// serialOf returns the serial in a patient's stored value (0 if damaged:
// addEncoded reports the damage).
func serialOf(v []byte) uint32 {
	if len(v) < 2 {
		return 0
	}
	d := dec{b: v[1:]}
	return d.uvarint()
}

func cmpSerial(a, b []byte) int { return cmp.Compare(serialOf(a), serialOf(b)) }
