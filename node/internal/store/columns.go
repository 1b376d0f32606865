package store

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Column files are the on-disk form of a table's columns: one file per
// column, fixed-width little-endian values and nothing else, so that a
// file mapped into memory is the column's slice as cdm.Table holds it
// (mapFile):
//
//	<table>.patient.u32   patient serial (segments) or index (views), uint32
//	<table>.<col>.u32     string column: dictionary id, uint32
//	<table>.<col>.i32     date column: cdm.Date, int32
//	<table>.<col>.f64     number column: IEEE-754 float64 (NaN: missing)
//	<table>.<col>.dict    string column's dictionary: JSON array, by id
//
// A file's length is rows times its width; a mismatch is corruption.

// errColumns marks a damaged or missing column file.
var errColumns = errors.New("store: bad column file")

// colBuf is the write buffer of each column file.
const colBuf = 128 << 10

func init() {
	// The files are little-endian and mapped as they are.
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		panic("store: column files need a little-endian machine")
	}
}

// colFile writes one fixed-width column file and hashes what it writes.
type colFile struct {
	f   *os.File
	w   *bufio.Writer
	h   hash.Hash
	buf [8]byte
}

func createCol(path string) (*colFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	c := &colFile{f: f, h: sha256.New()}
	c.w = bufio.NewWriterSize(io.MultiWriter(f, c.h), colBuf)
	return c, nil
}

func (c *colFile) u32(v uint32) {
	binary.LittleEndian.PutUint32(c.buf[:4], v)
	c.w.Write(c.buf[:4])
}

func (c *colFile) f64(v float64) {
	binary.LittleEndian.PutUint64(c.buf[:8], math.Float64bits(v))
	c.w.Write(c.buf[:8])
}

// finish flushes, syncs (when sync) and closes the file.
func (c *colFile) finish(sync bool) error {
	err := c.w.Flush()
	if err == nil && sync {
		err = c.f.Sync()
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// abort closes the file; the caller removes the directory.
func (c *colFile) abort() { c.f.Close() }

// dictWriter builds a string column's dictionary while its ids are
// written; the dictionary stays in memory (one entry per distinct value).
type dictWriter struct {
	ids  *colFile
	dict *cdm.Dict
}

// tableWriter writes the column files of one table.
type tableWriter struct {
	s       *cdm.TableSchema
	rows    int
	patient *colFile
	cols    []any // by column: *dictWriter, or *colFile (dates, numbers)
}

func colPath(dir, table, col, ext string) string {
	return filepath.Join(dir, table+"."+col+"."+ext)
}

func newTableWriter(dir string, s *cdm.TableSchema) (*tableWriter, error) {
	tw := &tableWriter{s: s}
	var err error
	if tw.patient, err = createCol(colPath(dir, s.Name, "patient", "u32")); err != nil {
		return nil, err
	}
	for _, c := range s.Columns {
		var col *colFile
		col, err = createCol(colPath(dir, s.Name, c.Name, extOf(c.Type)))
		if err != nil {
			tw.abort()
			return nil, err
		}
		if c.Type == cdm.TypeString {
			tw.cols = append(tw.cols, &dictWriter{ids: col, dict: cdm.NewDict()})
		} else {
			tw.cols = append(tw.cols, col)
		}
	}
	return tw, nil
}

func extOf(t cdm.ColumnType) string {
	switch t {
	case cdm.TypeString:
		return "u32"
	case cdm.TypeDate:
		return "i32"
	}
	return "f64"
}

// add writes one row: its patient (serial or index) and its values in
// schema order.
func (tw *tableWriter) add(patient uint32, vals []cdm.Value) {
	tw.rows++
	tw.patient.u32(patient)
	for k, c := range tw.s.Columns {
		switch c.Type {
		case cdm.TypeString:
			d := tw.cols[k].(*dictWriter)
			d.ids.u32(d.dict.Put(vals[k].Str))
		case cdm.TypeDate:
			tw.cols[k].(*colFile).u32(uint32(vals[k].Date))
		case cdm.TypeNumber:
			tw.cols[k].(*colFile).f64(vals[k].Num)
		}
	}
}

// addColumns appends n rows given as columns (a merge): patient ids, and
// per schema column its ids (with their dictionary), dates or numbers.
func (tw *tableWriter) addFrom(t *cdm.Table, patient func(uint32) uint32) {
	for r := range t.Rows {
		tw.patient.u32(patient(t.Patient[r]))
	}
	for k, c := range tw.s.Columns {
		switch c.Type {
		case cdm.TypeString:
			d := tw.cols[k].(*dictWriter)
			sc := t.Strings[c.Name]
			remap := make([]uint32, sc.Dict.Len())
			for id, v := range sc.Dict.Values() {
				remap[id] = d.dict.Put(v)
			}
			for _, id := range sc.IDs {
				d.ids.u32(remap[id])
			}
		case cdm.TypeDate:
			f := tw.cols[k].(*colFile)
			for _, v := range t.Dates[c.Name] {
				f.u32(uint32(v))
			}
		case cdm.TypeNumber:
			f := tw.cols[k].(*colFile)
			for _, v := range t.Numbers[c.Name] {
				f.f64(v)
			}
		}
	}
	tw.rows += t.Rows
}

// finish completes the table's files and writes its dictionaries, adding
// each file's name and SHA-256 to sums.
func (tw *tableWriter) finish(dir string, sync bool, sums map[string]string) error {
	files := []*colFile{tw.patient}
	names := []string{tw.s.Name + ".patient.u32"}
	for k, c := range tw.s.Columns {
		name := tw.s.Name + "." + c.Name + "." + extOf(c.Type)
		if d, ok := tw.cols[k].(*dictWriter); ok {
			files = append(files, d.ids)
			b, err := json.Marshal(d.dict.Values())
			if err != nil {
				return err
			}
			dp := colPath(dir, tw.s.Name, c.Name, "dict")
			if err := writeFileSync(dp, b, sync); err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			sums[filepath.Base(dp)] = fmt.Sprintf("%x", sum)
		} else {
			files = append(files, tw.cols[k].(*colFile))
		}
		names = append(names, name)
	}
	for i, f := range files {
		if err := f.finish(sync); err != nil {
			for _, g := range files[i+1:] {
				g.abort()
			}
			return err
		}
		sums[names[i]] = fmt.Sprintf("%x", f.h.Sum(nil))
	}
	return nil
}

func (tw *tableWriter) abort() {
	if tw.patient != nil {
		tw.patient.abort()
	}
	for _, c := range tw.cols {
		switch c := c.(type) {
		case *dictWriter:
			c.ids.abort()
		case *colFile:
			c.abort()
		}
	}
}

// writeFileSync writes a small file and, when sync, syncs it.
func writeFileSync(path string, b []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a directory's entries (created, renamed, removed files)
// durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// mapping is a set of mapped column files; they stay mapped for the life
// of the process (readers may hold slices of them at any time).
type mapping struct {
	regions [][]byte
}

// release unmaps the regions; nothing may read them afterwards.
func (m *mapping) release() {
	for _, b := range m.regions {
		unmapFile(b)
	}
	m.regions = nil
}

// mapped returns the column file as a slice of T with rows elements,
// backed by the page cache (mapFile), not the Go heap.
func mapped[T uint32 | int32 | float64 | cdm.Date](m *mapping, path string, rows int) ([]T, error) {
	var zero T
	width := int(unsafe.Sizeof(zero))
	b, err := mapFile(path, rows*width)
	if err != nil {
		return nil, err
	}
	if rows == 0 {
		return nil, nil
	}
	m.regions = append(m.regions, b)
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), rows), nil
}

// readDict reads a string column's dictionary.
func readDict(path string) (*cdm.Dict, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errColumns, err)
	}
	var vals []string
	if err := json.Unmarshal(b, &vals); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errColumns, filepath.Base(path), err)
	}
	d := cdm.NewDict()
	for i, v := range vals {
		if d.Put(v) != uint32(i) {
			return nil, fmt.Errorf("%w: %s: duplicate value", errColumns, filepath.Base(path))
		}
	}
	return d, nil
}

// openTable maps the column files of table s (rows rows) in dir. The
// patient column is returned as stored (serials or indices).
func openTable(m *mapping, dir string, s *cdm.TableSchema, rows int) (*cdm.Table, error) {
	t := &cdm.Table{Name: s.Name, Rows: rows, Strings: map[string]*cdm.StringColumn{}, Dates: map[string][]cdm.Date{}, Numbers: map[string][]float64{}}
	var err error
	if t.Patient, err = mapped[uint32](m, colPath(dir, s.Name, "patient", "u32"), rows); err != nil {
		return nil, err
	}
	for _, c := range s.Columns {
		p := colPath(dir, s.Name, c.Name, extOf(c.Type))
		switch c.Type {
		case cdm.TypeString:
			col := &cdm.StringColumn{}
			if col.IDs, err = mapped[uint32](m, p, rows); err != nil {
				return nil, err
			}
			if col.Dict, err = readDict(colPath(dir, s.Name, c.Name, "dict")); err != nil {
				return nil, err
			}
			t.Strings[c.Name] = col
		case cdm.TypeDate:
			if t.Dates[c.Name], err = mapped[cdm.Date](m, p, rows); err != nil {
				return nil, err
			}
		case cdm.TypeNumber:
			if t.Numbers[c.Name], err = mapped[float64](m, p, rows); err != nil {
				return nil, err
			}
		}
	}
	if s.Codings != "" {
		vals := t.Strings[s.Codings].Dict.Values()
		t.Codings = make([][]cdm.Coding, len(vals))
		for id, v := range vals {
			t.Codings[id], _ = cdm.ParseCodings(v)
		}
	}
	return t, nil
}

// checkIDs verifies that every dictionary id of t's string columns is in
// its dictionary (a damaged file must not index out of range in a query).
func checkIDs(t *cdm.Table) error {
	for name, col := range t.Strings {
		n := uint32(col.Dict.Len())
		for _, id := range col.IDs {
			if id >= n {
				return fmt.Errorf("%w: %s.%s: id %d beyond its dictionary of %d", errColumns, t.Name, name, id, n)
			}
		}
	}
	return nil
}
