package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
)

// Study tables (research and agency data sets imported by a schema) are
// stored in versions, streamed so that a table of any size imports with
// bounded working memory:
//
//	d/t/m/<name>                                   the committed version: JSON studyMeta
//	d/t/c/<name>\x00<version 8 B><chunk 8 B>       the rows of a version, in chunks
//
// An import of study NAME takes a fresh version V, writes its rows under
// d/t/c/NAME\x00V with kv.Batch as it reads them (invisible: the meta still
// names the old version), then commits with one small kv.Update that points
// d/t/m/NAME at V. That Update is the commit point: before it readers (and
// a restart) see the old version, after it the new one. The old version's
// chunks are deleted afterwards. A bad row anywhere, an error or a
// cancellation deletes V's chunks at once; a crash leaves them, and Open
// deletes every chunk whose version is not the committed one of its table
// before anything else. Version numbers only grow (the next is above every
// version seen at Open), so one is never reused while stale keys of it
// exist.
//
// Stores written before streaming keep a study whole under d/s/<name> (a
// gob studyRecord); Open reads them, and the next import of that study
// replaces the record in its commit.
//
// A study's rows are also held in memory (the columnar copy serves
// queries), so a node needs that memory anyway; the import itself adds one
// chunk of the input, the kv batch in flight (8 MiB) and, per person, one
// map entry for the rows_per_patient check.

var (
	prefixStudies     = []byte("d/s/") // legacy: a whole study per key
	prefixStudyMeta   = []byte("d/t/m/")
	prefixStudyChunks = []byte("d/t/c/")
)

// Study errors.
var (
	// ErrStudyTooBig is no longer returned: study imports are streamed.
	//
	// Deprecated: kept for callers that match it.
	ErrStudyTooBig = errors.New("store: study too large for one atomic write")
	ErrBadStudy    = errors.New("store: bad study")
)

// studyChunkBytes is the size from which a chunk of encoded rows is
// written under its own key.
const studyChunkBytes = 256 << 10

// studyRecord is the legacy stored form of a study (d/s/<name>).
type studyRecord struct {
	Study  *cdm.Study
	Source string
	Time   time.Time
}

// studyMeta is the committed version of a study table (d/t/m/<name>).
type studyMeta struct {
	Schema  cdm.StudySchema `json:"schema"`
	Source  string          `json:"source"`
	Time    time.Time       `json:"time"`
	Version uint64          `json:"version"`
	Rows    int             `json:"rows"`
	Persons int             `json:"persons"`
	Chunks  uint64          `json:"chunks"`
}

// StudySummary describes a study import.
type StudySummary struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Rows    int    `json:"rows"`
	Persons int    `json:"persons"`
	Changed bool   `json:"changed"`
	// Replaced is true when a study of the same name was stored before.
	Replaced bool `json:"replaced"`
}

// StudyRowsError lists the bad rows of a refused study import
// (errors.Is ErrBadStudy): the first ones (up to the import's MaxErrors)
// and how many there were. Nothing was stored.
type StudyRowsError struct {
	Study  string
	Total  int
	Errors []*cdm.RecordError
}

func (e *StudyRowsError) Error() string {
	if len(e.Errors) == 0 {
		return fmt.Sprintf("store: study %s: %d bad row(s)", e.Study, e.Total)
	}
	return fmt.Sprintf("store: study %s: %d bad cell(s) or row(s), the first: %v", e.Study, e.Total, e.Errors[0])
}

func (e *StudyRowsError) Is(target error) bool { return target == ErrBadStudy }

// StudyChunk is a run of a study's rows, in input order.
type StudyChunk struct {
	// Rows holds the good rows, of the import's schema.
	Rows *cdm.Study
	// Origins gives each row of Rows its place in the input (for
	// messages). Optional: without it rows are named by number.
	Origins []cdm.Origin
	// Bad lists bad rows the source found (they are not in Rows). Any
	// bad row fails the import.
	Bad []*cdm.RecordError
	// RowsHint, when > 0, estimates the rows of the whole input (from the
	// file size): the in-memory copy is sized once instead of growing by
	// doubling. Read from the first chunk only.
	RowsHint int
}

// StudySource yields a study's rows chunk by chunk (studycsv.Reader via
// node/admin). Next returns io.EOF after the last chunk; any other error
// aborts the import. The chunk may be reused by the next call.
type StudySource interface {
	Next() (*StudyChunk, error)
}

// StudyImportOptions configure ImportStudyFrom.
type StudyImportOptions struct {
	// Source describes the input in the summary and the meta (a file
	// name). Defaults to "".
	Source string
	// MaxErrors caps the errors a StudyRowsError lists (the total is
	// always counted). Defaults to 20.
	MaxErrors int
	// Progress, when set, is called after each chunk with the rows read
	// so far. Defaults to none.
	Progress func(rows int)
}

// publish makes tables (the CDM tables) and the study tables visible.
func (s *Store) publish(tables *cdm.Tables) {
	if s.instance == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		s.instance = hex.EncodeToString(b[:])
	}
	s.snap.Store(tables)
	s.view.Store(tables.WithStudies(s.studies))
	// After the new view: a reader that took the version before it
	// evaluates can only have seen this data or newer, never older
	// data under a newer version.
	defer s.published.Add(1)
	schemas := make([]cdm.StudySchema, len(s.studies))
	for i, st := range s.studies {
		schemas[i] = st.Schema
	}
	s.schemas.Store(&schemas)
}

func legacyStudyKey(name string) []byte { return append(bytes.Clone(prefixStudies), name...) }
func studyMetaKey(name string) []byte   { return append(bytes.Clone(prefixStudyMeta), name...) }

// studyChunkPrefix is the key prefix of version v of study name's chunks.
func studyChunkPrefix(name string, v uint64) []byte {
	k := append(bytes.Clone(prefixStudyChunks), name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, v)
}

// parseChunkKey splits a chunk key into study name and version.
func parseChunkKey(k []byte) (name string, v uint64, ok bool) {
	rest := k[len(prefixStudyChunks):]
	i := bytes.IndexByte(rest, 0)
	if i < 0 || len(rest) != i+1+16 {
		return "", 0, false
	}
	return string(rest[:i]), binary.BigEndian.Uint64(rest[i+1:]), true
}

// loadStudies reads the committed studies (legacy whole records and
// versioned ones), deletes chunks of versions that are not committed (an
// import killed or failed before its commit, or an old version whose
// deletion a crash interrupted) and sets the next version number.
func (s *Store) loadStudies(ctx context.Context) ([]*cdm.Study, error) {
	byName := map[string]*cdm.Study{}
	metas := map[string]*studyMeta{}
	err := s.db.View(func(tx *kv.Txn) error {
		if err := tx.Iterate(prefixStudies, func(k, v []byte) error {
			var r studyRecord
			if err := gob.NewDecoder(bytes.NewReader(v)).Decode(&r); err != nil || r.Study == nil {
				return fmt.Errorf("%w: study %q", errCorrupt, k[len(prefixStudies):])
			}
			repairLegacySchema(&r.Study.Schema)
			byName[r.Study.Schema.Name] = r.Study
			return nil
		}); err != nil {
			return err
		}
		return tx.Iterate(prefixStudyMeta, func(k, v []byte) error {
			var m studyMeta
			if err := json.Unmarshal(v, &m); err != nil || m.Schema.Name != string(k[len(prefixStudyMeta):]) {
				return fmt.Errorf("%w: study meta %q", errCorrupt, k[len(prefixStudyMeta):])
			}
			metas[m.Schema.Name] = &m
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: load studies: %w", err)
	}
	// Stale chunks, and the highest version ever used.
	var stale [][]byte
	var top uint64
	for _, m := range metas {
		top = max(top, m.Version)
	}
	err = s.db.View(func(tx *kv.Txn) error {
		return tx.IterateKeys(prefixStudyChunks, func(k []byte) error {
			name, v, ok := parseChunkKey(k)
			if !ok {
				return fmt.Errorf("%w: study chunk key %q", errCorrupt, k)
			}
			top = max(top, v)
			if m := metas[name]; m == nil || m.Version != v {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: load studies: %w", err)
	}
	if len(stale) > 0 {
		if err := s.deleteKeys(stale); err != nil {
			return nil, fmt.Errorf("store: remove chunks of uncommitted study versions: %w", err)
		}
		s.log.Info("store: removed study rows left by an interrupted or superseded study import", "chunks", len(stale))
	}
	s.nextStudyVersion = top + 1
	for name, m := range metas {
		st, err := s.readStudyVersion(ctx, m)
		if err != nil {
			return nil, err
		}
		byName[name] = st
	}
	out := make([]*cdm.Study, 0, len(byName))
	for _, st := range byName {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *cdm.Study) int { return strings.Compare(a.Schema.Name, b.Schema.Name) })
	return out, nil
}

// repairLegacySchema restores what gob dropped from a legacy record's
// schema: gob leaves out a pointer to a zero value, so a number column's
// min (or max) of 0 came back nil.
func repairLegacySchema(sc *cdm.StudySchema) {
	for i := range sc.Columns {
		c := &sc.Columns[i]
		if c.Type != cdm.StudyInt && c.Type != cdm.StudyFloat {
			continue
		}
		if c.Min == nil {
			c.Min = new(float64)
		}
		if c.Max == nil {
			c.Max = new(float64)
		}
	}
}

// readStudyVersion reads the rows of the committed version m.
func (s *Store) readStudyVersion(ctx context.Context, m *studyMeta) (*cdm.Study, error) {
	acc := newStudyBuilder(&m.Schema)
	acc.grow(m.Rows)
	prefix := studyChunkPrefix(m.Schema.Name, m.Version)
	var seq uint64
	err := s.db.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefix, func(k, v []byte) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if len(k) != len(prefix)+8 || binary.BigEndian.Uint64(k[len(prefix):]) != seq {
				return fmt.Errorf("%w: study %s: chunk %d missing", errCorrupt, m.Schema.Name, seq)
			}
			seq++
			return acc.decodeChunk(v)
		})
	})
	if err == nil && (seq != m.Chunks || acc.st.Rows() != m.Rows) {
		err = fmt.Errorf("%w: study %s: %d chunks and %d rows stored, %d and %d committed", errCorrupt, m.Schema.Name, seq, acc.st.Rows(), m.Chunks, m.Rows)
	}
	if err != nil {
		return nil, fmt.Errorf("store: load study %s: %w", m.Schema.Name, err)
	}
	return acc.st, nil
}

// studyBuilder accumulates a study's rows in memory (the new version the
// columnar copy will hold), interning person ids and string values so that
// no row keeps its input line alive, and counts each person's rows.
type studyBuilder struct {
	schema *cdm.StudySchema
	st     *cdm.Study
	// index numbers the persons (nil for unit = "row": every row is its
	// own person); names and rows are by person number.
	index map[string]int32
	names []string
	rows  []uint16
	strs  []map[string]string // per string column, bounded interning
}

func newStudyBuilder(schema *cdm.StudySchema) *studyBuilder {
	b := &studyBuilder{schema: schema,
		st:   &cdm.Study{Schema: *schema, Numbers: map[string][]float64{}, Strings: map[string][]string{}, Dates: map[string][]cdm.Date{}},
		strs: make([]map[string]string, len(schema.Columns))}
	if schema.Unit != cdm.UnitRow {
		b.index = map[string]int32{}
	}
	for i, c := range schema.Columns {
		switch c.ColumnType() {
		case cdm.TypeNumber:
			b.st.Numbers[c.Name] = []float64{}
		case cdm.TypeString:
			b.st.Strings[c.Name] = []string{}
			b.strs[i] = map[string]string{}
		case cdm.TypeDate:
			b.st.Dates[c.Name] = []cdm.Date{}
		}
	}
	return b
}

func (b *studyBuilder) grow(n int) {
	b.st.PatientIDs = slices.Grow(b.st.PatientIDs, n)
	for _, c := range b.schema.Columns {
		switch c.ColumnType() {
		case cdm.TypeNumber:
			b.st.Numbers[c.Name] = slices.Grow(b.st.Numbers[c.Name], n)
		case cdm.TypeString:
			b.st.Strings[c.Name] = slices.Grow(b.st.Strings[c.Name], n)
		case cdm.TypeDate:
			b.st.Dates[c.Name] = slices.Grow(b.st.Dates[c.Name], n)
		}
	}
}

// person returns id's interned copy (a clone on first sight) and the
// person's rows so far, this one included.
func (b *studyBuilder) person(id string) (string, int) {
	if b.index == nil {
		return strings.Clone(id), 1
	}
	if j, ok := b.index[id]; ok {
		if b.rows[j] < math.MaxUint16 {
			b.rows[j]++
		}
		return b.names[j], int(b.rows[j])
	}
	k := strings.Clone(id)
	b.index[k] = int32(len(b.names))
	b.names = append(b.names, k)
	b.rows = append(b.rows, 1)
	return k, 1
}

// persons returns the number of distinct persons.
func (b *studyBuilder) persons() int {
	if b.index == nil {
		return b.st.Rows()
	}
	return len(b.names)
}

func (b *studyBuilder) intern(col int, v string) string {
	m := b.strs[col]
	if x, ok := m[v]; ok {
		return x
	}
	x := strings.Clone(v)
	if len(m) < 1<<16 {
		m[x] = x
	}
	return x
}

// appendRow appends row i of st (of the builder's schema) to the builder's
// study, with id as its person id.
func (b *studyBuilder) appendRow(st *cdm.Study, i int, id string) {
	b.st.PatientIDs = append(b.st.PatientIDs, id)
	for k, c := range b.schema.Columns {
		switch c.ColumnType() {
		case cdm.TypeNumber:
			b.st.Numbers[c.Name] = append(b.st.Numbers[c.Name], st.Numbers[c.Name][i])
		case cdm.TypeString:
			b.st.Strings[c.Name] = append(b.st.Strings[c.Name], b.intern(k, st.Strings[c.Name][i]))
		case cdm.TypeDate:
			b.st.Dates[c.Name] = append(b.st.Dates[c.Name], st.Dates[c.Name][i])
		}
	}
}

// encodeRow appends row i of st in the chunk form: the person id, then the
// columns in schema order (numbers 8 bytes, strings length-prefixed, dates
// zigzag varints).
func encodeRow(b []byte, schema *cdm.StudySchema, st *cdm.Study, i int) []byte {
	e := enc{b: b}
	e.str(st.PatientIDs[i])
	for _, c := range schema.Columns {
		switch c.ColumnType() {
		case cdm.TypeNumber:
			e.num(st.Numbers[c.Name][i])
		case cdm.TypeString:
			e.str(st.Strings[c.Name][i])
		case cdm.TypeDate:
			e.date(st.Dates[c.Name][i])
		}
	}
	return e.b
}

// decodeChunk appends the rows of a stored chunk.
func (b *studyBuilder) decodeChunk(v []byte) error {
	d := dec{b: v}
	if d.byte1() != formatV1 {
		return fmt.Errorf("%w: unknown study chunk format", errCorrupt)
	}
	n := d.uvarint()
	for range n {
		if d.err != nil {
			break
		}
		id, _ := b.person(string(d.str()))
		b.st.PatientIDs = append(b.st.PatientIDs, id)
		for k, c := range b.schema.Columns {
			switch c.ColumnType() {
			case cdm.TypeNumber:
				b.st.Numbers[c.Name] = append(b.st.Numbers[c.Name], d.num())
			case cdm.TypeString:
				b.st.Strings[c.Name] = append(b.st.Strings[c.Name], b.intern(k, string(d.str())))
			case cdm.TypeDate:
				b.st.Dates[c.Name] = append(b.st.Dates[c.Name], d.date())
			}
		}
	}
	if d.err != nil || len(d.b) != 0 {
		return fmt.Errorf("%w: study chunk", errCorrupt)
	}
	return nil
}

// checkStudy verifies that st is consistent with its schema (ImportStudy's
// in-memory study).
func checkStudy(st *cdm.Study) error {
	if err := st.Schema.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadStudy, err)
	}
	n := st.Rows()
	for _, c := range st.Schema.Columns {
		var l int
		switch c.ColumnType() {
		case cdm.TypeNumber:
			l = len(st.Numbers[c.Name])
		case cdm.TypeString:
			l = len(st.Strings[c.Name])
		case cdm.TypeDate:
			l = len(st.Dates[c.Name])
		}
		if l != n {
			return fmt.Errorf("%w: column %s has %d values for %d rows", ErrBadStudy, c.Name, l, n)
		}
	}
	return nil
}

// oneChunk is a StudySource of an in-memory study.
type oneChunk struct {
	st   *cdm.Study
	done bool
}

func (o *oneChunk) Next() (*StudyChunk, error) {
	if o.done {
		return nil, io.EOF
	}
	o.done = true
	return &StudyChunk{Rows: o.st}, nil
}

// ImportStudy stores st, an in-memory study, as ImportStudyFrom does (for
// the demo and tests; files go through ImportStudyFrom). A study whose
// columns do not match its rows, or with bad rows, is refused with
// ErrBadStudy.
func (s *Store) ImportStudy(st *cdm.Study, source string) (*StudySummary, error) {
	if err := checkStudy(st); err != nil {
		return nil, err
	}
	return s.ImportStudyFrom(context.Background(), &st.Schema, &oneChunk{st: st}, StudyImportOptions{Source: source})
}

// ImportStudyFrom stores the rows of src as the study table schema.Name,
// replacing a stored study of that name, all or nothing: the new version
// becomes visible at once when the last row is staged, or (on a bad row,
// an error, a cancellation of ctx or a crash) nothing changes and the old
// version stays in service. Rows are staged in the kv store as they come,
// so memory does not grow with the input beyond the in-memory copy of the
// new table (see the key layout above).
//
// Every row's person id must be non-empty and free of NUL bytes, and no
// person may have more rows than rows_per_patient, wherever in the input
// its rows are; such rows and the source's bad rows make a
// *StudyRowsError (ErrBadStudy) that lists the first o.MaxErrors. The
// source is read to its end even after a bad row, so that the error counts
// them all. Person ids are stored as given. A study identical to the
// stored one (schema and rows in order) changes nothing.
//
// Imports are serialised with each other and with ImportRecords; readers
// (Tables) are not blocked.
func (s *Store) ImportStudyFrom(ctx context.Context, schema *cdm.StudySchema, src StudySource, o StudyImportOptions) (*StudySummary, error) {
	sc := *schema
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadStudy, err)
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 20
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return nil, fmt.Errorf("%w: %v", ErrBroken, s.broken)
	}
	name := sc.Name
	version := s.nextStudyVersion
	s.nextStudyVersion++
	prefix := studyChunkPrefix(name, version)
	acc := newStudyBuilder(&sc)
	rowsErr := &StudyRowsError{Study: name}
	badRow := func(e *cdm.RecordError) {
		if rowsErr.Total++; len(rowsErr.Errors) < o.MaxErrors {
			rowsErr.Errors = append(rowsErr.Errors, e)
		}
	}
	digest := sha256.New()
	wb := s.db.NewBatch()
	var (
		chunk  []byte
		inBuf  int // rows in chunk
		seq    uint64
		rowNum int // rows seen, good or bad
	)
	undo := func(cause error) error {
		wb.Cancel()
		if err := s.deleteStudyVersion(name, version); err != nil {
			s.broken = err
			s.log.Error("store: could not remove the rows of a failed study import; they are removed at the next open", "study", name)
		}
		return cause
	}
	flushChunk := func() error {
		if inBuf == 0 {
			return nil
		}
		v := binary.AppendUvarint([]byte{formatV1}, uint64(inBuf))
		v = append(v, chunk...)
		key := binary.BigEndian.AppendUint64(bytes.Clone(prefix), seq)
		seq++
		chunk, inBuf = chunk[:0], 0
		return wb.Set(key, v)
	}
	var row []byte
	for {
		if err := ctx.Err(); err != nil {
			return nil, undo(fmt.Errorf("store: study import cancelled: %w", err))
		}
		c, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, undo(fmt.Errorf("store: study %s: %w", name, err))
		}
		if rowNum == 0 && c.RowsHint > 0 {
			acc.grow(min(c.RowsHint, 1<<28))
		}
		for _, e := range c.Bad {
			badRow(e)
		}
		rowNum += len(c.Bad)
		st := c.Rows
		if st == nil {
			continue
		}
		for i, id := range st.PatientIDs {
			rowNum++
			origin := cdm.Origin{Line: rowNum, Entry: -1}
			if i < len(c.Origins) {
				origin = c.Origins[i]
			}
			if id == "" || strings.IndexByte(id, 0) >= 0 {
				badRow(&cdm.RecordError{Origin: origin, Path: sc.ID, Err: fmt.Errorf("%w: person id must be non-empty and free of NUL bytes", ErrBadStudy)})
				continue
			}
			key, n := acc.person(id)
			if n > sc.RowsPerPatient {
				if n == sc.RowsPerPatient+1 {
					badRow(&cdm.RecordError{Origin: origin, Path: sc.ID,
						Err: fmt.Errorf("%w: person %q has more than %d row(s) (schema rows_per_patient)", ErrBadStudy, key, sc.RowsPerPatient)})
				}
				continue
			}
			if rowsErr.Total > 0 {
				continue // refused: only counting from here on
			}
			row = encodeRow(row[:0], &sc, st, i)
			digest.Write(row)
			chunk = append(chunk, row...)
			inBuf++
			acc.appendRow(st, i, key)
			if len(chunk) >= studyChunkBytes {
				if err := flushChunk(); err != nil {
					return nil, undo(fmt.Errorf("store: stage study %s: %w", name, err))
				}
			}
		}
		if rowsErr.Total > 0 && acc.st.Rows() > 0 {
			// Refused: drop what was staged and the rows kept so far,
			// and keep reading only to count the bad rows.
			wb.Cancel()
			wb = s.db.NewBatch()
			acc.st = &cdm.Study{Schema: sc}
			chunk = nil
			inBuf = 0
		}
		if o.Progress != nil {
			o.Progress(rowNum)
		}
	}
	if rowsErr.Total > 0 {
		return nil, undo(rowsErr)
	}
	if err := flushChunk(); err != nil {
		return nil, undo(fmt.Errorf("store: stage study %s: %w", name, err))
	}
	if err := wb.Flush(); err != nil {
		return nil, undo(fmt.Errorf("store: stage study %s: %w", name, err))
	}
	newStudy := acc.st
	sum := &StudySummary{Name: name, Source: o.Source, Rows: newStudy.Rows(), Persons: acc.persons()}
	var old *cdm.Study
	for _, st := range s.studies {
		if st.Schema.Name == name {
			old = st
		}
	}
	if old != nil {
		sum.Replaced = true
		if old.Rows() == newStudy.Rows() && bytes.Equal(studyDigest(old), studyDigestOf(&sc, digest.Sum(nil))) {
			if err := undo(nil); err != nil {
				return nil, err
			}
			s.log.Info("store: study import changed nothing", "study", name, "rows", sum.Rows)
			return sum, nil
		}
	}
	oldMeta, err := s.studyMeta(name)
	if err != nil {
		return nil, undo(err)
	}
	meta, _ := json.Marshal(&studyMeta{Schema: sc, Source: o.Source, Time: time.Now().UTC(), Version: version,
		Rows: sum.Rows, Persons: sum.Persons, Chunks: seq})
	// The commit point.
	err = s.db.Update(func(tx *kv.Txn) error {
		if err := tx.Set(studyMetaKey(name), meta); err != nil {
			return err
		}
		return tx.Delete(legacyStudyKey(name))
	})
	if err != nil {
		return nil, undo(fmt.Errorf("store: commit study %s: %w", name, err))
	}
	sum.Changed = true
	if oldMeta != nil {
		if err := s.deleteStudyVersion(name, oldMeta.Version); err != nil {
			s.log.Warn("store: could not remove the replaced study version now; it is removed at the next open", "study", name)
		}
	}
	studies := slices.DeleteFunc(slices.Clone(s.studies), func(o *cdm.Study) bool { return o.Schema.Name == name })
	studies = append(studies, newStudy)
	slices.SortFunc(studies, func(a, b *cdm.Study) int { return strings.Compare(a.Schema.Name, b.Schema.Name) })
	s.studies = studies
	s.publish(s.snap.Load())
	s.log.Info("store: study imported", "study", name, "rows", sum.Rows, "persons", sum.Persons, "chunks", seq)
	return sum, nil
}

// studyDigest is the content digest of an in-memory study: its schema and
// its rows in order, in the chunk encoding.
func studyDigest(st *cdm.Study) []byte {
	h := sha256.New()
	var row []byte
	for i := range st.Rows() {
		row = encodeRow(row[:0], &st.Schema, st, i)
		h.Write(row)
	}
	return studyDigestOf(&st.Schema, h.Sum(nil))
}

// studyDigestOf combines a schema with the digest of the rows.
func studyDigestOf(schema *cdm.StudySchema, rows []byte) []byte {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(schema)
	h.Write(rows)
	return h.Sum(nil)
}

// studyMeta returns the committed meta of study name, or nil.
func (s *Store) studyMeta(name string) (*studyMeta, error) {
	v, err := s.db.Get(studyMetaKey(name))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read study meta: %w", err)
	}
	var m studyMeta
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("%w: study meta %q", errCorrupt, name)
	}
	return &m, nil
}

// deleteStudyVersion deletes the chunks of version v of study name.
func (s *Store) deleteStudyVersion(name string, v uint64) error {
	var keys [][]byte
	err := s.db.View(func(tx *kv.Txn) error {
		return tx.IterateKeys(studyChunkPrefix(name, v), func(k []byte) error {
			keys = append(keys, bytes.Clone(k))
			return nil
		})
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	return s.deleteKeys(keys)
}

// Studies returns the schemas of the stored studies, sorted by name. It
// does not wait for an import in progress.
func (s *Store) Studies() []cdm.StudySchema {
	if p := s.schemas.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}
