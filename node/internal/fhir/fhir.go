// Package fhir reads FHIR R4 data into the common data model: Bundles
// (transaction, collection, searchset, or any other Bundle type), Bulk Data
// NDJSON (one resource type per file or mixed) and single resources. It is
// a format decoder: it reads the one input it is given and appends to a
// cdm.Batch; finding inputs, archives and compression, and telling the
// format are node/internal/ingest's.
//
// The resource types in its mapping (resource.go; Resources) become cdm
// records; every other resource type is skipped and counted. The reader
// is a strict single-pass JSON scanner that decodes only the fields it maps
// and validates everything it skips, so malformed JSON anywhere is found.
//
// Bad records are returned as *cdm.RecordError naming the file and line
// (NDJSON) or the file, entry index and field path (Bundles), never dropped
// silently. The package neither logs nor stores anything.
package fhir

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// Errors, matched with errors.Is on a RecordError.
var (
	ErrSyntax    = errors.New("fhir: malformed JSON")
	ErrType      = errors.New("fhir: wrong JSON type")
	ErrMissing   = errors.New("fhir: missing required field")
	ErrDate      = errors.New("fhir: impossible date")
	ErrValue     = errors.New("fhir: bad value")
	ErrReference = errors.New("fhir: bad reference")
	ErrRule      = errors.New("fhir: bad region rule")
)

// problem is an error with a fixed message that matches a sentinel.
type problem struct {
	kind error
	msg  string
}

func (p *problem) Error() string        { return p.msg }
func (p *problem) Is(target error) bool { return target == p.kind }

func missing(field string) error {
	return &problem{ErrMissing, "missing required field " + field}
}

// Address is the part of a patient's address the region rules use.
type Address struct {
	City, State, PostalCode, Country string
}

// RegionRule derives a patient's region from the address. The zero value
// gives every patient the empty region.
type RegionRule struct {
	kind string // "state", "city", "postal", "fixed"
	n    int
	code string
}

// ParseRegionRule parses a rule:
//
//	state      the address's state, as written ("Massachusetts", "MA")
//	city       the address's city
//	postal:N   the first N characters of the postal code (N >= 1)
//	fixed:CODE CODE for every patient (one region per node)
//
// The address used is the first with use "home", else the first one. A
// patient without the needed address part gets the empty region (counted in
// the import summary).
func ParseRegionRule(s string) (RegionRule, error) {
	kind, arg, hasArg := strings.Cut(s, ":")
	switch kind {
	case "state", "city":
		if hasArg {
			break
		}
		return RegionRule{kind: kind}, nil
	case "postal":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 {
			break
		}
		return RegionRule{kind: kind, n: n}, nil
	case "fixed":
		if arg == "" {
			break
		}
		return RegionRule{kind: kind, code: arg}, nil
	}
	return RegionRule{}, fmt.Errorf("%w %q: want state, city, postal:N or fixed:CODE", ErrRule, s)
}

// String returns the rule in the form ParseRegionRule reads.
func (r RegionRule) String() string {
	switch r.kind {
	case "postal":
		return "postal:" + strconv.Itoa(r.n)
	case "fixed":
		return "fixed:" + r.code
	}
	return r.kind
}

// Region applies the rule to a.
func (r RegionRule) Region(a Address) string {
	switch r.kind {
	case "state":
		return a.State
	case "city":
		return a.City
	case "postal":
		if len(a.PostalCode) <= r.n {
			return a.PostalCode
		}
		return a.PostalCode[:r.n]
	case "fixed":
		return r.code
	}
	return ""
}

// Options configure a Parser.
type Options struct {
	// Region derives patients' regions. Defaults to the zero rule (empty
	// regions); the admin facade defaults to "state".
	Region RegionRule
	// Into, when set, receives the records, origins and bad records (the
	// batch an import shares between its decoders). Defaults to a new
	// batch of the parser's own.
	Into *cdm.Batch
}

// Result is what a Parser has read so far.
type Result struct {
	// Batch holds the records with their origins and the bad records
	// (Errors), in input order; a parser made with Options.Into shares
	// the caller's.
	*cdm.Batch
	// Addresses holds each patient's address (the one the region rule
	// used), by patient id, so callers can split data by city or postcode.
	Addresses map[string]Address
	// Skipped counts resources of types outside the model, by type.
	Skipped map[string]int
	// JSONBytes is the number of uncompressed FHIR JSON bytes read.
	JSONBytes int64
	// Files is the number of FHIR inputs read.
	Files int
}
