package store

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/kv"
)

// Study tables are kept whole, one key per study: d/s/<name> holds the
// encoded cdm.Study (schema and rows). An import writes that key in one kv
// transaction, so it is atomic: readers see the old study or the new one,
// never a mix, and a killed import leaves the old one. Importing the same
// study again changes nothing. A study must fit in one transaction (about
// 10 MB encoded, some hundred thousand rows); a larger one is refused with
// ErrStudyTooBig.

var prefixStudies = []byte("d/s/")

// Study errors.
var (
	ErrStudyTooBig = errors.New("store: study too large for one atomic write")
	ErrBadStudy    = errors.New("store: bad study")
)

// studyRecord is the stored form of a study.
type studyRecord struct {
	Study  *cdm.Study
	Source string
	Time   time.Time
}

// StudySummary describes a study import.
type StudySummary struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Rows    int    `json:"rows"`
	Changed bool   `json:"changed"`
	// Replaced is true when a study of the same name was stored before.
	Replaced bool `json:"replaced"`
}

// publish makes tables (the CDM tables) and the study tables visible.
func (s *Store) publish(tables *cdm.Tables) {
	s.snap.Store(tables)
	s.view.Store(tables.WithStudies(s.studies))
}

func studyKey(name string) []byte { return append(bytes.Clone(prefixStudies), name...) }

func encodeStudy(r *studyRecord) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (s *Store) loadStudies() ([]*cdm.Study, error) {
	var out []*cdm.Study
	err := s.db.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefixStudies, func(k, v []byte) error {
			var r studyRecord
			if err := gob.NewDecoder(bytes.NewReader(v)).Decode(&r); err != nil || r.Study == nil {
				return fmt.Errorf("%w: study %q", errCorrupt, k[len(prefixStudies):])
			}
			out = append(out, r.Study)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: load studies: %w", err)
	}
	slices.SortFunc(out, func(a, b *cdm.Study) int { return strings.Compare(a.Schema.Name, b.Schema.Name) })
	return out, nil
}

// canonical encodes st deterministically (gob encodes maps in random
// order), for comparing a study with the stored one.
func canonical(st *cdm.Study) []byte {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	_ = enc.Encode(st.Schema)
	_ = enc.Encode(st.PatientIDs)
	for _, c := range st.Schema.Columns {
		switch c.ColumnType() {
		case cdm.TypeNumber:
			_ = enc.Encode(append([]float64{0}, st.Numbers[c.Name]...))
		case cdm.TypeString:
			_ = enc.Encode(append([]string{""}, st.Strings[c.Name]...))
		case cdm.TypeDate:
			_ = enc.Encode(append([]cdm.Date{0}, st.Dates[c.Name]...))
		}
	}
	return buf.Bytes()
}

// checkStudy verifies that st is consistent with its schema.
func checkStudy(st *cdm.Study) error {
	if err := st.Schema.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadStudy, err)
	}
	n := st.Rows()
	perPatient := map[string]int{}
	for i, id := range st.PatientIDs {
		if id == "" || strings.IndexByte(id, 0) >= 0 {
			return fmt.Errorf("%w: row %d: patient id must be non-empty and free of NUL bytes", ErrBadStudy, i+1)
		}
		if perPatient[id]++; perPatient[id] > st.Schema.RowsPerPatient {
			return fmt.Errorf("%w: patient %q has more than %d rows (rows_per_patient)", ErrBadStudy, id, st.Schema.RowsPerPatient)
		}
	}
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

// ImportStudy stores st, replacing a stored study of the same name,
// atomically: all of it becomes visible at once or (on error or a crash)
// nothing changes. A study identical to the stored one changes nothing.
// Every row's patient id must be non-empty, and no patient may have more
// rows than the schema's rows_per_patient (ErrBadStudy).
func (s *Store) ImportStudy(st *cdm.Study, source string) (*StudySummary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return nil, fmt.Errorf("%w: %v", ErrBroken, s.broken)
	}
	if err := checkStudy(st); err != nil {
		return nil, err
	}
	sum := &StudySummary{Name: st.Schema.Name, Source: source, Rows: st.Rows()}
	key := studyKey(st.Schema.Name)
	body := canonical(st)
	old, err := s.db.Get(key)
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("store: read study: %w", err)
	default:
		sum.Replaced = true
		var r studyRecord
		if gob.NewDecoder(bytes.NewReader(old)).Decode(&r) == nil && r.Study != nil {
			if bytes.Equal(canonical(r.Study), body) {
				return sum, nil
			}
		}
	}
	val, err := encodeStudy(&studyRecord{Study: st, Source: source, Time: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("store: encode study: %w", err)
	}
	err = s.db.Update(func(tx *kv.Txn) error { return tx.Set(key, val) })
	if errors.Is(err, kv.ErrTxnTooBig) {
		return nil, fmt.Errorf("%w: %d rows (%d bytes); split it into several studies", ErrStudyTooBig, st.Rows(), len(val))
	}
	if err != nil {
		return nil, fmt.Errorf("store: write study: %w", err)
	}
	sum.Changed = true
	studies := slices.DeleteFunc(slices.Clone(s.studies), func(o *cdm.Study) bool { return o.Schema.Name == st.Schema.Name })
	studies = append(studies, st)
	slices.SortFunc(studies, func(a, b *cdm.Study) int { return strings.Compare(a.Schema.Name, b.Schema.Name) })
	s.studies = studies
	s.publish(s.snap.Load())
	s.log.Info("store: study imported", "study", st.Schema.Name, "rows", st.Rows())
	return sum, nil
}

// Studies returns the schemas of the stored studies, sorted by name.
func (s *Store) Studies() []cdm.StudySchema {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]cdm.StudySchema, len(s.studies))
	for i, st := range s.studies {
		out[i] = st.Schema
	}
	return out
}
