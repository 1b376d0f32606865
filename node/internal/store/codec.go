package store

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Table codes in keys are cdm.TableSchema.Code: patients sort first, so
// that a scan in key order meets every patient before the records that
// name it.

// Value encoding, the same for every table of cdm.Schema: a format byte
// (1); for a non-patient record the patient id; the patient's serial
// number (uvarint); then the columns in schema order. Serials are dense
// numbers given to patients when first stored and never changed; loading
// maps them to patient indices through a slice instead of hashing ids.
// Strings are uvarint length + bytes, a column with a fixed domain
// (Column.Values: sex) one byte (the value's index), dates zigzag varints
// (NoDate included), numbers 8 bytes IEEE-754 little-endian (NaN when
// absent).
const formatV1 = 1

var errCorrupt = errors.New("store: corrupt record")

type enc struct{ b []byte }

func (e *enc) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *enc) uvarint(v uint32) { e.b = binary.AppendUvarint(e.b, uint64(v)) }
func (e *enc) date(d cdm.Date)  { e.b = binary.AppendVarint(e.b, int64(d)) }
func (e *enc) num(v float64)    { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }

type dec struct {
	b   []byte
	err error
}

func (d *dec) str() []byte {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.err = errCorrupt
		d.b = nil
		return nil
	}
	s := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return s
}

func (d *dec) uvarint() uint32 {
	v, k := binary.Uvarint(d.b)
	if k <= 0 || v > 1<<32-1 {
		d.err = errCorrupt
		d.b = nil
		return 0
	}
	d.b = d.b[k:]
	return uint32(v)
}

func (d *dec) date() cdm.Date {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = errCorrupt
		d.b = nil
		return cdm.NoDate
	}
	d.b = d.b[k:]
	return cdm.Date(v)
}

func (d *dec) num() float64 {
	if len(d.b) < 8 {
		d.err = errCorrupt
		d.b = nil
		return math.NaN()
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *dec) byte1() byte {
	if len(d.b) < 1 {
		d.err = errCorrupt
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// encode appends the stored form of row, a record of table t.
func encode(b []byte, t *cdm.TableSchema, row *cdm.Row, serial uint32) []byte {
	e := enc{b}
	e.b = append(e.b, formatV1)
	if !t.Patients {
		e.str(row.PatientID)
	}
	e.uvarint(serial)
	n := len(t.Columns)
	for n > 0 && t.Columns[n-1].Added && missingValue(t.Columns[n-1], &row.Values[n-1]) {
		n--
	}
	for k, c := range t.Columns[:n] {
		v := &row.Values[k]
		switch {
		case c.Values != nil:
			e.b = append(e.b, byte(max(slices.Index(c.Values, v.Str), 0)))
		case c.Type == cdm.TypeString:
			e.str(v.Str)
		case c.Type == cdm.TypeDate:
			e.date(v.Date)
		default:
			e.num(v.Num)
		}
	}
	return e.b
}

// missingValue reports whether v is the missing value of column c.
func missingValue(c cdm.Column, v *cdm.Value) bool {
	switch {
	case c.Values != nil:
		return v.Str == c.Values[0] || v.Str == ""
	case c.Type == cdm.TypeString:
		return v.Str == ""
	case c.Type == cdm.TypeDate:
		return !v.Date.Valid()
	}
	return math.IsNaN(v.Num)
}

// values decodes the columns of a record of table t into vals (schema
// order), interning strings.
//
// A record stored before its table gained columns (Column.Added, only ever
// appended), or whose trailing added columns are missing (encode omits
// them), ends early: the columns it lacks read as missing values.
func (d *dec) values(t *cdm.TableSchema, vals []cdm.Value, intern func([]byte) string) {
	for k, c := range t.Columns {
		v := &vals[k]
		if len(d.b) == 0 && d.err == nil {
			*v = cdm.Value{Date: cdm.NoDate, Num: math.NaN()}
			if c.Values != nil {
				v.Str = c.Values[0]
			}
			continue
		}
		switch {
		case c.Values != nil:
			i := int(d.byte1())
			if i >= len(c.Values) {
				i = 0
			}
			v.Str = c.Values[i]
		case c.Type == cdm.TypeString:
			v.Str = intern(d.str())
		case c.Type == cdm.TypeDate:
			v.Date = d.date()
		default:
			v.Num = d.num()
		}
	}
}
