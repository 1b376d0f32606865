// Package cdm defines fedstat's common data model: the patient-centred record
// types that importers produce and the node stores, and the schema that the
// query language sees.
//
// Raw records are node-local. Nothing in this package leaves a node; what
// leaves is built by the DP and encryption path only.
package cdm

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Date is a calendar day counted from 1970-01-01 (UTC). NoDate marks a
// missing date.
type Date int32

// NoDate is the missing date.
const NoDate Date = math.MinInt32

var epoch = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)

// DateOf returns the calendar day of t in UTC.
func DateOf(t time.Time) Date {
	y, m, d := t.UTC().Date()
	return Date(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Sub(epoch).Hours() / 24)
}

// DateFromYMD returns the day y-m-d. It does not validate; use ParseDate for
// untrusted input.
func DateFromYMD(y int, m time.Month, d int) Date {
	return DateOf(time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
}

// ErrBadDate is returned by ParseDate for text that is not a real date.
var ErrBadDate = errors.New("cdm: bad date")

// ParseDate parses YYYY-MM-DD, a FHIR dateTime/instant (YYYY-MM-DDThh:mm:ss...,
// whose day is taken as written), and the partial FHIR forms YYYY-MM and YYYY
// (taken as the first day). The empty string is NoDate with no error.
// Impossible dates such as 2021-02-30 are errors.
func ParseDate(s string) (Date, error) {
	if s == "" {
		return NoDate, nil
	}
	day := s
	if i := strings.IndexByte(s, 'T'); i >= 0 {
		day = s[:i]
	}
	var y, m, d int
	var ok bool
	switch len(day) {
	case 10:
		y, ok = atoi(day[0:4])
		mm, ok2 := atoi(day[5:7])
		dd, ok3 := atoi(day[8:10])
		ok = ok && ok2 && ok3 && day[4] == '-' && day[7] == '-'
		m, d = mm, dd
	case 7:
		y, ok = atoi(day[0:4])
		mm, ok2 := atoi(day[5:7])
		ok = ok && ok2 && day[4] == '-'
		m, d = mm, 1
	case 4:
		y, ok = atoi(day)
		m, d = 1, 1
	}
	if !ok || m < 1 || m > 12 || d < 1 || d > 31 || y < 1800 || y > 2200 {
		return NoDate, fmt.Errorf("%w %q: want YYYY-MM-DD", ErrBadDate, s)
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d {
		return NoDate, fmt.Errorf("%w %q: no such day", ErrBadDate, s)
	}
	return DateOf(t), nil
}

func atoi(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// Valid reports whether d is a date (not NoDate).
func (d Date) Valid() bool { return d != NoDate }

// Time returns midnight UTC of d.
func (d Date) Time() time.Time { return epoch.AddDate(0, 0, int(d)) }

// String formats d as YYYY-MM-DD, or "" for NoDate.
func (d Date) String() string {
	if d == NoDate {
		return ""
	}
	return d.Time().Format("2006-01-02")
}

// AgeAt returns the age in whole years of someone born on birth at day at.
// It returns -1 when either date is missing or at precedes birth.
func AgeAt(birth, at Date) int {
	if birth == NoDate || at == NoDate || at < birth {
		return -1
	}
	b, a := birth.Time(), at.Time()
	age := a.Year() - b.Year()
	if a.Month() < b.Month() || (a.Month() == b.Month() && a.Day() < b.Day()) {
		age--
	}
	return age
}

// Sex is administrative gender as FHIR codes it.
type Sex uint8

// Sex values.
const (
	SexUnknown Sex = iota
	SexFemale
	SexMale
	SexOther
)

var sexNames = [...]string{"unknown", "female", "male", "other"}

// String returns the FHIR code of s.
func (s Sex) String() string {
	if int(s) < len(sexNames) {
		return sexNames[s]
	}
	return "unknown"
}

// ErrBadSex is returned by ParseSex.
var ErrBadSex = errors.New("cdm: bad sex")

// ParseSex accepts the FHIR codes (female, male, other, unknown), F/M/O/U and
// the empty string (unknown), case-insensitively.
func ParseSex(s string) (Sex, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "female", "f":
		return SexFemale, nil
	case "male", "m":
		return SexMale, nil
	case "other", "o":
		return SexOther, nil
	case "unknown", "u", "":
		return SexUnknown, nil
	}
	return SexUnknown, fmt.Errorf("%w %q: want female, male, other or unknown", ErrBadSex, s)
}

// Code systems, as FHIR names them.
const (
	SystemSNOMED  = "http://snomed.info/sct"
	SystemLOINC   = "http://loinc.org"
	SystemRxNorm  = "http://www.nlm.nih.gov/research/umls/rxnorm"
	SystemICD10   = "http://hl7.org/fhir/sid/icd-10"
	SystemICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
)

// Patient is one person. ID is unique within a node.
type Patient struct {
	ID        string
	BirthDate Date
	Sex       Sex
	Region    string
	DeathDate Date
}

// Condition is a diagnosis. ID identifies the source record (FHIR resource id,
// or a key derived from the CSV row) so that a changed record replaces the old.
type Condition struct {
	ID        string
	PatientID string
	Code      string
	System    string
	Onset     Date
	Abatement Date
}

// Observation is a measurement. HasValue is false for observations without a
// numeric value (Value is then 0).
type Observation struct {
	ID        string
	PatientID string
	Code      string
	System    string
	Date      Date
	Value     float64
	HasValue  bool
	Unit      string
}

// Encounter is a visit.
type Encounter struct {
	ID         string
	PatientID  string
	Class      string
	TypeCode   string
	TypeSystem string
	Start      Date
	End        Date
}

// Medication is a prescription (FHIR MedicationRequest).
type Medication struct {
	ID        string
	PatientID string
	Code      string
	System    string
	Authored  Date
}

// Records is a set of records of all tables, as an import or a generator
// produces them.
type Records struct {
	Patients     []Patient
	Conditions   []Condition
	Observations []Observation
	Encounters   []Encounter
	Medications  []Medication
}

// Len returns the number of records of all tables.
func (r *Records) Len() int {
	return len(r.Patients) + len(r.Conditions) + len(r.Observations) + len(r.Encounters) + len(r.Medications)
}

// Append adds all records of o to r.
func (r *Records) Append(o *Records) {
	r.Patients = append(r.Patients, o.Patients...)
	r.Conditions = append(r.Conditions, o.Conditions...)
	r.Observations = append(r.Observations, o.Observations...)
	r.Encounters = append(r.Encounters, o.Encounters...)
	r.Medications = append(r.Medications, o.Medications...)
}
