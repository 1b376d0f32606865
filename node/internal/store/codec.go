package store

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Table codes in keys. Patients sort first so that a scan in key order
// meets every patient before the records that name it.
const (
	codePatients     = 'a'
	codeConditions   = 'b'
	codeObservations = 'c'
	codeEncounters   = 'd'
	codeMedications  = 'e'
)

var tableOfCode = map[byte]string{
	codePatients:     cdm.TablePatients,
	codeConditions:   cdm.TableConditions,
	codeObservations: cdm.TableObservations,
	codeEncounters:   cdm.TableEncounters,
	codeMedications:  cdm.TableMedications,
}

// Value encoding: a format byte (1), then the fields in schema order, with
// the patient's serial number (uvarint) after the patient id of every
// non-patient record and first in a patient record. Serials are dense
// numbers given to patients when first stored and never changed; loading
// maps them to patient indices through a slice instead of hashing ids.
// Strings are uvarint length + bytes, dates zigzag varints (NoDate
// included), numbers 8 bytes IEEE-754 little-endian (NaN when absent).
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

func encodePatient(b []byte, p *cdm.Patient, serial uint32) []byte {
	e := enc{b}
	e.b = append(e.b, formatV1)
	e.uvarint(serial)
	e.date(p.BirthDate)
	e.b = append(e.b, byte(p.Sex))
	e.str(p.Region)
	e.date(p.DeathDate)
	return e.b
}

func encodeCondition(b []byte, c *cdm.Condition, serial uint32) []byte {
	e := enc{b}
	e.b = append(e.b, formatV1)
	e.str(c.PatientID)
	e.uvarint(serial)
	e.str(c.Code)
	e.str(c.System)
	e.date(c.Onset)
	e.date(c.Abatement)
	return e.b
}

func encodeObservation(b []byte, o *cdm.Observation, serial uint32) []byte {
	e := enc{b}
	e.b = append(e.b, formatV1)
	e.str(o.PatientID)
	e.uvarint(serial)
	e.str(o.Code)
	e.str(o.System)
	e.date(o.Date)
	v := math.NaN()
	if o.HasValue {
		v = o.Value
	}
	e.num(v)
	e.str(o.Unit)
	return e.b
}

func encodeEncounter(b []byte, x *cdm.Encounter, serial uint32) []byte {
	e := enc{b}
	e.b = append(e.b, formatV1)
	e.str(x.PatientID)
	e.uvarint(serial)
	e.str(x.Class)
	e.str(x.TypeCode)
	e.str(x.TypeSystem)
	e.date(x.Start)
	e.date(x.End)
	return e.b
}

func encodeMedication(b []byte, m *cdm.Medication, serial uint32) []byte {
	e := enc{b}
	e.b = append(e.b, formatV1)
	e.str(m.PatientID)
	e.uvarint(serial)
	e.str(m.Code)
	e.str(m.System)
	e.date(m.Authored)
	return e.b
}
