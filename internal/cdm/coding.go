package cdm

import (
	"errors"
	"slices"
	"strings"
)

// Coding is one code of a code system (a FHIR Coding).
type Coding struct{ System, Code string }

// SystemCVX is the vaccine code system (FHIR Immunization.vaccineCode).
const SystemCVX = "http://hl7.org/fhir/sid/cvx"

// systemRank orders the code systems when a record has several codings:
// the record's code and system columns hold the coding of the best-ranked
// system (the standard vocabularies first, then the classifications), its
// other codings go to the table's codings column. Systems not listed rank
// after these, by URI; codings without a system last.
var systemRank = map[string]int{
	SystemSNOMED:  1,
	SystemLOINC:   2,
	SystemRxNorm:  3,
	SystemCVX:     4,
	SystemICD10CM: 5,
	SystemICD10:   6,
}

// compareCodings is the order of PrimaryCoding and FormatCodings: system
// rank, then system URI, then code.
func compareCodings(a, b Coding) int {
	ra, rb := rankOf(a.System), rankOf(b.System)
	if ra != rb {
		return ra - rb
	}
	if c := strings.Compare(a.System, b.System); c != 0 {
		return c
	}
	return strings.Compare(a.Code, b.Code)
}

func rankOf(system string) int {
	if r, ok := systemRank[system]; ok {
		return r
	}
	if system == "" {
		return 100
	}
	return 50
}

// SortCodings puts cs in the registry's order (the first is the primary
// coding) and removes duplicates and codings without a code, in place; it
// returns the shortened slice. The result does not depend on the order of
// cs: a record coded [local, ICD-10-CM, SNOMED CT] in any order gets the
// same primary coding and the same codings column.
func SortCodings(cs []Coding) []Coding {
	cs = slices.DeleteFunc(cs, func(c Coding) bool { return c.Code == "" })
	slices.SortFunc(cs, compareCodings)
	return slices.Compact(cs)
}

// FormatCodings writes codings in the text form of a codings column: each
// as system|code (FHIR token search form; "|code" for a coding without a
// system), joined by commas, with backslash escaping '\', '|' and ','.
// Callers pass them in SortCodings order.
func FormatCodings(cs []Coding) string {
	if len(cs) == 0 {
		return ""
	}
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteByte(',')
		}
		escapeToken(&b, c.System)
		b.WriteByte('|')
		escapeToken(&b, c.Code)
	}
	return b.String()
}

func escapeToken(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '|', ',':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}

// ErrCodings marks a codings value that is not in the form FormatCodings
// writes.
var ErrCodings = errors.New("cdm: bad codings")

// ParseCodings reads the text form of a codings column (FormatCodings).
// The empty string is no codings.
func ParseCodings(s string) ([]Coding, error) {
	if s == "" {
		return nil, nil
	}
	var out []Coding
	var cur Coding
	var tok []byte
	haveBar := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 >= len(s) {
				return nil, errors.New("codings end in a lone backslash")
			}
			i++
			tok = append(tok, s[i])
		case '|':
			if haveBar {
				return nil, errors.New("a coding has two '|' (escape '|' in a code as '\\|')")
			}
			cur.System, tok, haveBar = string(tok), tok[:0], true
		case ',':
			if !haveBar {
				return nil, errors.New("want system|code items separated by commas")
			}
			cur.Code, tok, haveBar = string(tok), tok[:0], false
			out = append(out, cur)
		default:
			tok = append(tok, c)
		}
	}
	if !haveBar {
		return nil, errors.New("want system|code items separated by commas")
	}
	cur.Code = string(tok)
	return append(out, cur), nil
}

// parseCodings is the text form of a codings column (CSV): it checks it and
// writes it in its canonical order.
func parseCodings(s string) (string, error) {
	cs, err := ParseCodings(s)
	if err != nil {
		return "", err
	}
	return FormatCodings(SortCodings(cs)), nil
}

// CodedRecord splits the codings of one record (in any order) into its
// primary coding and the text of its codings column (the others, "" when
// there are none). It sorts cs in place. ok is false when no coding has a
// code.
func CodedRecord(cs []Coding) (primary Coding, others string, ok bool) {
	cs = SortCodings(cs)
	if len(cs) == 0 {
		return Coding{}, "", false
	}
	return cs[0], FormatCodings(cs[1:]), true
}
