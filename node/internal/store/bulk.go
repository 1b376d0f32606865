package store

// # Bulk imports: the column store on disk
//
// A node whose records do not fit in memory imports them in bulk
// (ImportBulk): the records stream, chunk by chunk, into column files
// (columns.go) of a new segment, and queries read those files mapped into
// memory, so the columnar copy of a bulk table lives in the page cache,
// not on the Go heap. Patients stay keyed records (ImportRecords): a bulk
// import takes records of stored patients only.
//
// The column directory (Options.ColumnDir, recorded under d/m/coldir by
// the first bulk import) holds:
//
//	seg-<generation, 16 hex digits>/   one committed bulk import, immutable:
//	                                   column files (patient column = patient
//	                                   serials) and meta.json
//	tmp-<generation>-<random>/         a bulk import being written
//	view-<n>/                          derived: a table merged from keyed
//	                                   rows and several segments, rebuilt at
//	                                   open; never the only copy of anything
//
// The durable source of truth of a bulk import is its segment directory
// together with its manifest d/m/seg/<generation> (segMeta) in the kv
// database. An import writes and fsyncs every file in tmp-..., fsyncs the
// directory, renames it to seg-<generation> and fsyncs the column
// directory; then one kv Update sets d/m/gen to the new generation, writes
// the manifest and logs the import. That Update is the commit point, as
// for keyed imports: killed before it, Open finds a segment no manifest
// names and removes it (and every tmp- and view- directory) before
// anything else; after it, the segment is complete on disk. Generations
// are shared with keyed imports, so they only grow and are never reused
// while a stale directory of one exists.
//
// Importing the same input again (same records in the same order) makes
// a segment with the same digest (the SHA-256 of its files) and changes
// nothing. Bulk records are append-only: their ids are checked (non-empty,
// no NUL) but not kept, so they are neither compared with stored records
// nor replaceable one by one, and a keyed record with the id of a bulk one
// is a second record. A correction removes the whole bulk import
// (DropBulk) and imports the corrected input again.
//
// Column files are not encrypted: a store whose kv database is encrypted
// at rest must not use bulk imports (node/admin refuses them).
//
// # Memory
//
// A bulk import holds one chunk of input records (the source's choice),
// one write buffer per column file (colBuf, 128 KiB; 44 files for all
// CDM tables) and the dictionaries of the string columns (one entry per
// distinct value): its memory does not grow with the number of rows.
// Serving a bulk table costs, on the heap, its dictionaries only; patient
// ids, their index and the keyed tables stay on the heap as before.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
)

// Bulk import errors.
var (
	// ErrNoColumnDir: the store has no column directory (Options.ColumnDir
	// and none recorded), so it cannot take bulk imports.
	ErrNoColumnDir = errors.New("store: no column directory for bulk imports")
	// ErrBulkPatients: a bulk import was given patients; import them with
	// ImportRecords first.
	ErrBulkPatients = errors.New("store: a bulk import takes no patients (import the patients first)")
	// ErrNoSegment: DropBulk was given a generation that is not a
	// committed bulk import.
	ErrNoSegment = errors.New("store: no such bulk import")
)

var (
	prefixSegments = []byte("d/m/seg/")
	keyColumnDir   = []byte("d/m/coldir")
)

// segMeta is a committed bulk import (d/m/seg/<generation>, and meta.json
// in its directory).
type segMeta struct {
	Generation uint64         `json:"generation"`
	Source     string         `json:"source"`
	Rows       map[string]int `json:"rows"`
	// Files maps each file of the segment to its SHA-256 (hex); Digest
	// is the SHA-256 of that map as JSON (sorted keys).
	Files  map[string]string `json:"files"`
	Digest string            `json:"digest"`
	Time   time.Time         `json:"time"`
}

func segDirName(gen uint64) string { return fmt.Sprintf("seg-%016x", gen) }

func segKey(gen uint64) []byte {
	return binary.BigEndian.AppendUint64(bytes.Clone(prefixSegments), gen)
}

// RecordSource yields the records of a bulk import in chunks. Next returns
// io.EOF after the last chunk. A chunk may be reused by the source after
// the next call to Next.
type RecordSource interface {
	Next(ctx context.Context) (*cdm.Records, error)
}

// Segment describes a committed bulk import.
type Segment struct {
	Generation uint64
	Source     string
	Rows       map[string]int
	Time       time.Time
}

// Segments lists the committed bulk imports, oldest first.
func (s *Store) Segments() []Segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Segment, len(s.segs))
	for i, m := range s.segs {
		out[i] = Segment{Generation: m.Generation, Source: m.Source, Rows: m.Rows, Time: m.Time}
	}
	return out
}

// loadSegments reads the committed segments' manifests and the recorded
// column directory (o overrides it), and removes what a killed or failed
// bulk import, a drop or an earlier run left in the column directory.
func (s *Store) loadSegments(o Options) error {
	err := s.db.View(func(tx *kv.Txn) error {
		if v, err := tx.Get(keyColumnDir); err == nil {
			s.colDir = string(v)
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		return tx.Iterate(prefixSegments, func(_, v []byte) error {
			m := &segMeta{}
			if err := json.Unmarshal(v, m); err != nil {
				return fmt.Errorf("%w: segment manifest: %w", errCorrupt, err)
			}
			s.segs = append(s.segs, m)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("store: read segments: %w", err)
	}
	if o.ColumnDir != "" {
		if s.colDir, err = filepath.Abs(o.ColumnDir); err != nil {
			return fmt.Errorf("store: column directory: %w", err)
		}
	}
	if len(s.segs) > 0 && s.colDir == "" {
		return fmt.Errorf("store: %d bulk imports stored but no column directory given", len(s.segs))
	}
	if s.colDir == "" {
		return nil
	}
	ents, err := os.ReadDir(s.colDir)
	if errors.Is(err, os.ErrNotExist) {
		if len(s.segs) > 0 {
			return fmt.Errorf("store: column directory %s is missing (%d bulk imports stored there)", s.colDir, len(s.segs))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: column directory: %w", err)
	}
	keep := map[string]bool{}
	for _, m := range s.segs {
		keep[segDirName(m.Generation)] = true
	}
	removed := 0
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		n := e.Name()
		if strings.HasPrefix(n, "seg-") || strings.HasPrefix(n, "tmp-") || strings.HasPrefix(n, "view-") {
			if err := os.RemoveAll(filepath.Join(s.colDir, n)); err != nil {
				return fmt.Errorf("store: remove %s: %w", n, err)
			}
			if !strings.HasPrefix(n, "view-") {
				removed++
			}
		}
	}
	if removed > 0 {
		s.log.Info("store: removed column files left by an interrupted or dropped bulk import", "directories", removed)
	}
	for _, m := range s.segs {
		if _, err := os.Stat(filepath.Join(s.colDir, segDirName(m.Generation), "meta.json")); err != nil {
			return fmt.Errorf("store: bulk import %d: %w", m.Generation, err)
		}
	}
	return nil
}

// ImportBulk stores the records of src (no patients; every record's
// patient stored already) as one new segment of column files, atomically:
// all of them become visible at once, or (on error, cancellation or a
// crash) none. The same input imported again changes nothing. See the
// top of bulk.go for what is on disk and the memory bound. A record naming
// an unknown patient fails the import (ErrUnknownPatient), as does a
// patient record (ErrBulkPatients) or a bad id (ErrBadRecord).
func (s *Store) ImportBulk(ctx context.Context, src RecordSource, source string) (*Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return nil, fmt.Errorf("%w: %v", ErrBroken, s.broken)
	}
	if s.colDir == "" {
		return nil, ErrNoColumnDir
	}
	t0 := time.Now()
	sum := &Summary{Source: source, Added: map[string]int{}, Replaced: map[string]int{}, Unchanged: map[string]int{}, Time: t0.UTC()}
	if err := os.MkdirAll(s.colDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: column directory: %w", err)
	}
	ng := s.gen + 1
	var rb [6]byte
	rand.Read(rb[:])
	tmp := filepath.Join(s.colDir, "tmp-"+strconv.FormatUint(ng, 10)+"-"+hex.EncodeToString(rb[:]))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("store: bulk import: %w", err)
	}
	writers := make([]*tableWriter, len(cdm.Schema))
	fail := func(err error) (*Summary, error) {
		for _, tw := range writers {
			if tw != nil {
				tw.abort()
			}
		}
		if rerr := os.RemoveAll(tmp); rerr != nil {
			s.log.Warn("store: could not remove the files of a failed bulk import; they are removed at the next open", "error", rerr)
		}
		return nil, err
	}
	keyed := s.keyed
	rows := make([]*cdm.Row, len(cdm.Schema))
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return fail(fmt.Errorf("store: bulk import cancelled: %w", err))
		}
		r, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("store: bulk import: %w", err))
		}
		if len(r.Patients) > 0 {
			return fail(ErrBulkPatients)
		}
		var unknown []string
		nUnknown := 0
		for ti := range cdm.Schema {
			t := &cdm.Schema[ti]
			n := t.Len(r)
			if t.Patients || n == 0 {
				continue
			}
			if writers[ti] == nil {
				if writers[ti], err = newTableWriter(tmp, t); err != nil {
					return fail(fmt.Errorf("store: bulk import: %w", err))
				}
			}
			if rows[ti] == nil {
				rows[ti] = t.NewRow()
			}
			tw, row := writers[ti], rows[ti]
			for i := range n {
				t.Row(r, i, row)
				if err := checkID(t.Name, total+i, row.ID); err != nil {
					return fail(err)
				}
				idx, ok := keyed.PatientIndex(row.PatientID)
				if !ok {
					if nUnknown++; len(unknown) < 5 {
						unknown = append(unknown, t.Name+" record naming patient "+strconv.Quote(row.PatientID))
					}
					continue
				}
				tw.add(s.serials[idx], row.Values)
			}
			total += n
		}
		if nUnknown > 0 {
			return fail(fmt.Errorf("%w: %d records, e.g. %s", ErrUnknownPatient, nUnknown, strings.Join(unknown, ", ")))
		}
		if s.ProgressEvery > 0 {
			s.log.Debug("store: bulk staging", "records", total)
		}
	}
	meta := &segMeta{Generation: ng, Source: source, Rows: map[string]int{}, Files: map[string]string{}, Time: sum.Time}
	for ti, tw := range writers {
		if tw == nil {
			continue
		}
		writers[ti] = nil
		if err := tw.finish(tmp, true, meta.Files); err != nil {
			tw.abort()
			return fail(fmt.Errorf("store: bulk import: %w", err))
		}
		meta.Rows[tw.s.Name] = tw.rows
	}
	if total == 0 {
		os.RemoveAll(tmp)
		s.log.Info("store: bulk import had no records")
		return sum, nil
	}
	fj, _ := json.Marshal(meta.Files) // map keys sorted
	d := sha256.Sum256(fj)
	meta.Digest = hex.EncodeToString(d[:])
	for _, m := range s.segs {
		if m.Digest == meta.Digest {
			os.RemoveAll(tmp)
			for name, n := range meta.Rows {
				sum.Unchanged[name] = n
			}
			s.log.Info("store: bulk import changed nothing (the same input is stored)", "generation", m.Generation)
			return sum, nil
		}
	}
	mj, _ := json.Marshal(meta)
	if err := writeFileSync(filepath.Join(tmp, "meta.json"), mj, true); err != nil {
		return fail(fmt.Errorf("store: bulk import: %w", err))
	}
	if err := syncDir(tmp); err != nil {
		return fail(fmt.Errorf("store: bulk import: %w", err))
	}
	final := filepath.Join(s.colDir, segDirName(ng))
	if err := os.Rename(tmp, final); err != nil {
		return fail(fmt.Errorf("store: bulk import: %w", err))
	}
	tmp = final // fail removes it from now on
	if err := syncDir(s.colDir); err != nil {
		return fail(fmt.Errorf("store: bulk import: %w", err))
	}
	for name, n := range meta.Rows {
		sum.Added[name] = n
	}
	sum.Generation = ng
	logEntry, _ := json.Marshal(sum)
	gb := genBytes(ng)
	// The commit point.
	err := s.db.Update(func(tx *kv.Txn) error {
		if err := tx.Set(keyGen, gb); err != nil {
			return err
		}
		if err := tx.Set(segKey(ng), mj); err != nil {
			return err
		}
		if err := tx.Set(keyColumnDir, []byte(s.colDir)); err != nil {
			return err
		}
		return tx.Set(append(bytes.Clone(prefixImports), gb...), logEntry)
	})
	if err != nil {
		return fail(fmt.Errorf("store: commit: %w", err))
	}
	s.gen = ng
	s.segs = append(s.segs, meta)
	sum.Write = time.Since(t0)
	t1 := time.Now()
	tables, err := s.assemble(keyed)
	if err != nil {
		s.broken = err
		return sum, fmt.Errorf("store: bulk import committed but mapping its columns failed: %w", err)
	}
	s.publish(tables)
	sum.Build = time.Since(t1)
	s.log.Info("store: bulk import committed", "generation", ng, "records", total,
		"write", sum.Write.Round(time.Millisecond), "build", sum.Build.Round(time.Millisecond))
	return sum, nil
}

// DropBulk removes the bulk import of generation gen, atomically, as a new
// generation (logged with the removed row counts in Summary.Removed). It
// is how bulk records are corrected: drop, then import the corrected input
// again.
func (s *Store) DropBulk(ctx context.Context, gen uint64) (*Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return nil, fmt.Errorf("%w: %v", ErrBroken, s.broken)
	}
	i := slices.IndexFunc(s.segs, func(m *segMeta) bool { return m.Generation == gen })
	if i < 0 {
		return nil, fmt.Errorf("%w: generation %d", ErrNoSegment, gen)
	}
	t0 := time.Now()
	ng := s.gen + 1
	gb := genBytes(ng)
	sum := &Summary{Source: fmt.Sprintf("drop bulk import %d", gen), Generation: ng, Added: map[string]int{}, Replaced: map[string]int{}, Unchanged: map[string]int{}, Removed: s.segs[i].Rows, Time: t0.UTC()}
	logEntry, _ := json.Marshal(sum)
	// The commit point.
	err := s.db.Update(func(tx *kv.Txn) error {
		if err := tx.Set(keyGen, gb); err != nil {
			return err
		}
		if err := tx.Delete(segKey(gen)); err != nil {
			return err
		}
		return tx.Set(append(bytes.Clone(prefixImports), gb...), logEntry)
	})
	if err != nil {
		return nil, fmt.Errorf("store: commit: %w", err)
	}
	s.gen = ng
	s.segs = slices.Delete(s.segs, i, i+1)
	sum.Write = time.Since(t0)
	t1 := time.Now()
	tables, err := s.assemble(s.keyed)
	if err != nil {
		s.broken = err
		return sum, fmt.Errorf("store: drop committed but rebuilding the columnar copy failed: %w", err)
	}
	s.publish(tables)
	sum.Build = time.Since(t1)
	// Readers of the old snapshot may still read its mapped files:
	// removing them only unlinks them (the space is freed at exit).
	if err := os.RemoveAll(filepath.Join(s.colDir, segDirName(gen))); err != nil {
		s.log.Warn("store: could not remove a dropped bulk import's files now; they are removed at the next open", "generation", gen)
	}
	s.log.Info("store: bulk import dropped", "generation", gen, "as", ng)
	return sum, nil
}

// assemble returns keyed (the keyed records' tables) with the segments'
// rows added: a table held by one segment only is mapped as it is; a
// table held in several parts (keyed rows, several segments) is merged
// into a view directory first. Patient indices follow serial order
// (load), so a segment's patient column (serials) is the index column
// whenever serials are dense, which they are unless damaged.
func (s *Store) assemble(keyed *cdm.Tables) (*cdm.Tables, error) {
	if len(s.segs) == 0 {
		s.dropViews("")
		return keyed, nil
	}
	np := keyed.NumPatients()
	identity := len(s.serials) == np
	for i, sr := range s.serials {
		if sr != uint32(i) {
			identity = false
			break
		}
	}
	// index maps a serial to its patient index (ok false: no such patient).
	indexOf := make(map[uint32]uint32)
	if !identity {
		for i, sr := range s.serials {
			indexOf[sr] = uint32(i)
		}
	}
	index := func(sr uint32) (uint32, bool) {
		if identity {
			return sr, int(sr) < np
		}
		i, ok := indexOf[sr]
		return i, ok
	}
	s.viewSeq++
	viewDir := filepath.Join(s.colDir, "view-"+strconv.FormatUint(s.viewSeq, 10))
	var out []*cdm.Table
	for ti := range cdm.Schema {
		sch := &cdm.Schema[ti]
		var parts []*segMeta
		for _, m := range s.segs {
			if m.Rows[sch.Name] > 0 {
				parts = append(parts, m)
			}
		}
		if len(parts) == 0 {
			continue
		}
		kt, _ := keyed.Table(sch.Name)
		if identity && len(parts) == 1 && (kt == nil || kt.Rows == 0) {
			m := parts[0]
			t, err := openTable(s.maps, filepath.Join(s.colDir, segDirName(m.Generation)), sch, m.Rows[sch.Name])
			if err != nil {
				return nil, err
			}
			if err := checkTable(t, np); err != nil {
				return nil, err
			}
			out = append(out, t)
			continue
		}
		// Merge into the view.
		if err := os.MkdirAll(viewDir, 0o700); err != nil {
			return nil, fmt.Errorf("store: view: %w", err)
		}
		tw, err := newTableWriter(viewDir, sch)
		if err != nil {
			return nil, fmt.Errorf("store: view: %w", err)
		}
		if kt != nil {
			tw.addFrom(kt, func(p uint32) uint32 { return p })
		}
		rows := tw.rows
		for _, m := range parts {
			tmp := &mapping{}
			t, err := openTable(tmp, filepath.Join(s.colDir, segDirName(m.Generation)), sch, m.Rows[sch.Name])
			if err == nil {
				err = checkTable(t, -1)
			}
			bad := false
			if err == nil {
				tw.addFrom(t, func(sr uint32) uint32 {
					i, ok := index(sr)
					bad = bad || !ok
					return i
				})
			}
			tmp.release()
			if err == nil && bad {
				err = fmt.Errorf("%w: %s of bulk import %d names a patient serial that is not stored", errColumns, sch.Name, m.Generation)
			}
			if err != nil {
				tw.abort()
				return nil, err
			}
			rows += m.Rows[sch.Name]
		}
		if err := tw.finish(viewDir, false, map[string]string{}); err != nil {
			tw.abort()
			return nil, fmt.Errorf("store: view: %w", err)
		}
		t, err := openTable(s.maps, viewDir, sch, rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	s.dropViews(filepath.Base(viewDir))
	return keyed.WithTables(out...), nil
}

// dropViews removes the view directories other than keep. Mapped files of
// older snapshots stay readable (they are only unlinked).
func (s *Store) dropViews(keep string) {
	if s.colDir == "" {
		return
	}
	ents, _ := os.ReadDir(s.colDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "view-") && e.Name() != keep {
			os.RemoveAll(filepath.Join(s.colDir, e.Name()))
		}
	}
}

// checkTable verifies a mapped table before queries index with it: every
// patient below np (np < 0: not checked) and every dictionary id in its
// dictionary.
func checkTable(t *cdm.Table, np int) error {
	if np >= 0 {
		for _, p := range t.Patient {
			if int(p) >= np {
				return fmt.Errorf("%w: %s names patient %d of %d", errColumns, t.Name, p, np)
			}
		}
	}
	return checkIDs(t)
}
