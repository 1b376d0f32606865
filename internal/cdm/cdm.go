// Package cdm defines fedstat's common data model: the patient-centred record
// types that importers produce and the node stores, and the one table
// registry (Schema, declared in tables.go) that the query language, the
// columnar copy, the store's codec, the importers, the warehouse mapping,
// node status and the docs all loop over. Calendar arithmetic lives with
// the date type (date.go).
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
