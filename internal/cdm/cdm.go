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
	"strings"
)

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
