// Package terminology is the network's one terminology: code systems and
// their URIs, the forms of an ICD-10 code (dotted and undotted, national
// modifications), code families (a code and everything below it), and named
// value sets read from FHIR ValueSet resources or OMOP (ATLAS) concept-set
// JSON, expanded to the codes a query matches.
//
// A code family is a prefix of the canonical code: in ICD-10 the hierarchy
// is the code itself (E11 > E11.6 > E11.65), so `code LIKE 'E11%'` is the
// family of E11. Systems without such codes (SNOMED CT, RxNorm) have their
// hierarchy in relationships a node may not hold; a value set that asks for
// their descendants must come expanded (expansion.contains, or ATLAS's
// included concepts), and reading it otherwise is an error naming the item.
package terminology

import (
	"strings"
)

// Code system URIs, as FHIR names them.
const (
	SNOMED   = "http://snomed.info/sct"
	LOINC    = "http://loinc.org"
	RxNorm   = "http://www.nlm.nih.gov/research/umls/rxnorm"
	ICD10    = "http://hl7.org/fhir/sid/icd-10"
	ICD10CM  = "http://hl7.org/fhir/sid/icd-10-cm"
	ICD10GM  = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
	ATC      = "http://www.whocc.no/atc"
	CVX      = "http://hl7.org/fhir/sid/cvx"
	NDC      = "http://hl7.org/fhir/sid/ndc"
	CPT      = "http://www.ama-assn.org/go/cpt"
	ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
)

// icd10OIDs are the HL7 OIDs of ICD-10 and its clinical modifications, as
// CDA-derived exports write them (urn:oid:...).
var icd10OIDs = map[string]bool{
	"2.16.840.1.113883.6.3":  true, // ICD-10 (WHO)
	"2.16.840.1.113883.6.90": true, // ICD-10-CM
	"1.2.276.0.76.5.409":     true, // ICD-10-GM (one of its yearly OIDs)
	"2.16.840.1.113883.6.94": true, // ICD-10-CA
}

// IsICD10 reports whether system names ICD-10 or a national clinical
// modification of it (ICD-10-CM, -GM, -CA, -AM, ...): WHO's and HL7's URIs,
// national URIs that contain "icd-10" or "icd10", and their OIDs. ICD-10-PCS
// (procedures, no dotted hierarchy) is not.
func IsICD10(system string) bool {
	s := strings.ToLower(strings.TrimSpace(system))
	if oid, ok := strings.CutPrefix(s, "urn:oid:"); ok {
		return icd10OIDs[oid]
	}
	if strings.Contains(s, "pcs") || s == strings.ToLower(ICD10PCS) {
		return false
	}
	s = strings.ReplaceAll(s, "_", "-")
	return strings.Contains(s, "icd-10") || strings.Contains(s, "icd10") || strings.HasPrefix(s, "http://id.who.int/icd/release/10")
}

// CanonicalICD10 returns code in ICD-10's canonical form (upper case, a dot
// after the category's three characters, national markers such as the
// dagger and asterisk of dual coding dropped) and whether code has the shape
// of an ICD-10 code at all: a letter, two characters of which the first is a
// digit, then up to four more.
func CanonicalICD10(code string) (string, bool) {
	c := strings.ToUpper(strings.TrimSpace(code))
	c = strings.TrimRight(c, "+*!†‡ ")
	c = strings.TrimSuffix(c, ".-") // ICD-10-GM's "E11.-": the category
	c = strings.TrimSuffix(c, "-")
	cat, sub, dotted := strings.Cut(c, ".")
	if !dotted && len(c) > 3 {
		cat, sub = c[:3], c[3:]
	}
	if len(cat) != 3 || !isUpper(cat[0]) || !isDigit(cat[1]) || !isAlnum(cat[2]) {
		return code, false
	}
	if len(sub) > 4 || (dotted && sub == "") {
		return code, false
	}
	for i := 0; i < len(sub); i++ {
		if !isAlnum(sub[i]) {
			return code, false
		}
	}
	if sub == "" {
		return cat, true
	}
	return cat + "." + sub, true
}

// Canonical returns the canonical form of code in system: ICD-10's dotted
// upper-case form for an ICD-10 system, else code with surrounding space
// removed. Importers store codes in this form.
func Canonical(system, code string) string {
	if IsICD10(system) {
		if c, ok := CanonicalICD10(code); ok {
			return c
		}
	}
	return strings.TrimSpace(code)
}

// Forms returns the codes a query literal matches: the literal itself and,
// when it has the shape of an ICD-10 code, its canonical form (so 'E119',
// 'e11.9' and 'E11.9' all match the stored E11.9). The literal is kept as
// written too: a local code that only looks like ICD-10 still matches
// itself.
func Forms(lit string) []string {
	out := []string{lit}
	if c, ok := CanonicalICD10(lit); ok && c != lit {
		out = append(out, c)
	}
	return out
}

// FamilyPrefix returns the prefix a code family matches, for a family
// written as its head code (E11, E11.6, E116): the canonical form of an
// ICD-10 head, else the head as written.
func FamilyPrefix(head string) string {
	if c, ok := CanonicalICD10(head); ok {
		return c
	}
	return head
}

// InFamily reports whether code lies in the family of prefix (from
// FamilyPrefix): the head code and everything below it. That is SQL's LIKE
// 'prefix%' on canonical codes, except below a three-character ICD-10
// category, where the next character must be the dot: E11 covers E11, E11.6
// and E11.65, not a local code E119X that merely starts alike.
func InFamily(code, prefix string) bool {
	if prefix == "" || !strings.HasPrefix(code, prefix) {
		return false
	}
	if len(code) == len(prefix) {
		return true
	}
	if isCategory(prefix) {
		return code[len(prefix)] == '.'
	}
	return true
}

// FamilyLike returns the family of prefix as SQL: the head itself (exact,
// "" when none is needed) and the LIKE prefix of everything below it. For a
// three-character ICD-10 category E11 that is E11 and 'E11.%'; otherwise
// the prefix alone.
func FamilyLike(prefix string) (exact, like string) {
	if isCategory(prefix) {
		return prefix, prefix + "."
	}
	return "", prefix
}

func isCategory(prefix string) bool {
	c, ok := CanonicalICD10(prefix)
	return ok && c == prefix && len(prefix) == 3
}

func isUpper(b byte) bool { return b >= 'A' && b <= 'Z' }
func isDigit(b byte) bool { return b >= '0' && b <= '9' }
func isAlnum(b byte) bool { return isUpper(b) || isDigit(b) }

// systemAliases are the short names of common code systems that queries
// may write instead of the URI (case and punctuation insensitive), with the
// OIDs the same systems go by in CDA-derived exports.
var systemAliases = []struct {
	names []string
	uri   string
	oids  []string
}{
	{[]string{"snomed", "snomedct", "sct"}, SNOMED, []string{"2.16.840.1.113883.6.96"}},
	{[]string{"loinc"}, LOINC, []string{"2.16.840.1.113883.6.1"}},
	{[]string{"rxnorm"}, RxNorm, []string{"2.16.840.1.113883.6.88"}},
	{[]string{"icd10", "icd10who"}, ICD10, []string{"2.16.840.1.113883.6.3"}},
	{[]string{"icd10cm"}, ICD10CM, []string{"2.16.840.1.113883.6.90"}},
	{[]string{"icd10gm"}, ICD10GM, []string{"1.2.276.0.76.5.409"}},
	{[]string{"icd10pcs"}, ICD10PCS, []string{"2.16.840.1.113883.6.4"}},
	{[]string{"atc"}, ATC, []string{"2.16.840.1.113883.6.73"}},
	{[]string{"cvx"}, CVX, []string{"2.16.840.1.113883.12.292"}},
	{[]string{"ndc"}, NDC, []string{"2.16.840.1.113883.6.69"}},
	{[]string{"cpt", "cpt4"}, CPT, []string{"2.16.840.1.113883.6.12"}},
}

// SystemForms returns the system values a query literal for a system
// column matches: the literal, and for a known system named by its short
// name (SNOMED, LOINC, RxNorm, ICD-10, ICD-10-CM, ICD-10-GM, ICD-10-PCS, ATC,
// CVX, NDC, CPT), by its URI or by its OID (urn:oid:...), every one of
// those forms.
func SystemForms(lit string) []string {
	key := strings.ToLower(strings.TrimSpace(lit))
	short := strings.NewReplacer("-", "", "_", "", " ", "").Replace(key)
	for _, a := range systemAliases {
		match := key == strings.ToLower(a.uri)
		for _, n := range a.names {
			match = match || short == n
		}
		for _, o := range a.oids {
			match = match || key == "urn:oid:"+o
		}
		if !match {
			continue
		}
		out := []string{lit}
		add := func(v string) {
			for _, w := range out {
				if w == v {
					return
				}
			}
			out = append(out, v)
		}
		add(a.uri)
		for _, o := range a.oids {
			add("urn:oid:" + o)
		}
		return out
	}
	return []string{lit}
}
