package terminology

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// ErrValueSet marks a value set that cannot be read or expanded.
var ErrValueSet = errors.New("value set")

// Concept is one code of a code system.
type Concept struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// ValueSet is a named list of codes a query can match as one: exact codes,
// code families (a head code and everything below it, ICD-10 only) and
// exclusions of either kind. Codes are canonical (Canonical).
type ValueSet struct {
	// Name is how a query names it: `code IN VALUESET 'Name'`.
	Name string `json:"name"`
	// Title is the human-readable title, when the source gives one.
	Title string `json:"title,omitempty"`
	// Source is the file it was read from.
	Source string `json:"-"`
	// Include and IncludeFamilies are the codes and families it contains;
	// Exclude and ExcludeFamilies are taken out again.
	Include         []Concept `json:"include,omitempty"`
	IncludeFamilies []Concept `json:"include_families,omitempty"`
	Exclude         []Concept `json:"exclude,omitempty"`
	ExcludeFamilies []Concept `json:"exclude_families,omitempty"`
}

// Codes returns the distinct codes of cs, sorted.
func Codes(cs []Concept) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Code)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Digest identifies the value set's content (name and codes, not titles
// or displays), so that two parties can tell whether they expand a name
// alike.
func (v *ValueSet) Digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "name=%s\n", v.Name)
	for _, part := range []struct {
		tag string
		cs  []Concept
	}{{"in", v.Include}, {"in*", v.IncludeFamilies}, {"out", v.Exclude}, {"out*", v.ExcludeFamilies}} {
		fmt.Fprintf(h, "%s=%q\n", part.tag, Codes(part.cs))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Names returns the display name of each code the value set lists, for
// showing codes with their names.
func (v *ValueSet) Names() map[string]string {
	out := map[string]string{}
	for _, cs := range [][]Concept{v.Include, v.IncludeFamilies} {
		for _, c := range cs {
			if c.Display != "" {
				out[c.Code] = c.Display
			}
		}
	}
	return out
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]*$`)

// Load reads value sets from paths: files, or directories whose *.json
// files are read in name order. Each file holds a FHIR ValueSet resource
// or an OMOP concept set as ATLAS exports it. Names must be unique.
func Load(paths []string) ([]ValueSet, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrValueSet, err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		m, err := filepath.Glob(filepath.Join(p, "*.json"))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrValueSet, err)
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	var out []ValueSet
	seen := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrValueSet, err)
		}
		stem := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		v, err := Parse(f, stem, b)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[strings.ToLower(v.Name)]; dup {
			return nil, fmt.Errorf("%w: %s: name %q is also the name of the value set in %s", ErrValueSet, f, v.Name, prev)
		}
		seen[strings.ToLower(v.Name)] = f
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Parse reads one value set from b (file names it in errors; name is the
// fallback name when the source has none): a FHIR ValueSet resource, or an
// OMOP concept set ({"name", "expression": {"items": [...]}} or the bare
// expression {"items": [...]}).
func Parse(file, name string, b []byte) (*ValueSet, error) {
	var probe struct {
		ResourceType string          `json:"resourceType"`
		Items        json.RawMessage `json:"items"`
		Expression   json.RawMessage `json:"expression"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%w: %s: not JSON: %v", ErrValueSet, file, err)
	}
	var v *ValueSet
	var err error
	switch {
	case probe.ResourceType == "ValueSet":
		v, err = parseFHIR(file, b)
	case probe.ResourceType != "":
		return nil, fmt.Errorf("%w: %s: a FHIR %s, not a ValueSet", ErrValueSet, file, probe.ResourceType)
	case probe.Items != nil || probe.Expression != nil:
		v, err = parseOMOP(file, b)
	default:
		return nil, fmt.Errorf("%w: %s: neither a FHIR ValueSet (resourceType) nor an OMOP concept set (items or expression.items)", ErrValueSet, file)
	}
	if err != nil {
		return nil, err
	}
	if v.Name == "" {
		v.Name = name
	}
	if !validName.MatchString(v.Name) {
		return nil, fmt.Errorf("%w: %s: name %q: use letters, digits, '_', '.' and '-' (it is written in queries)", ErrValueSet, file, v.Name)
	}
	if len(v.Include)+len(v.IncludeFamilies) == 0 {
		return nil, fmt.Errorf("%w: %s: %s includes no code", ErrValueSet, file, v.Name)
	}
	v.Source = file
	return v, nil
}

// family adds c to fam as a family when its system has codes that carry
// their hierarchy (ICD-10), and refuses otherwise.
func family(file, where string, c Concept) (Concept, error) {
	if !IsICD10(c.System) {
		return c, fmt.Errorf("%w: %s: %s: descendants of %s code %s need the system's hierarchy, which a node may not hold: give the value set expanded (FHIR expansion.contains, or ATLAS's included concepts)", ErrValueSet, file, where, systemName(c.System), c.Code)
	}
	c.Code = FamilyPrefix(c.Code)
	return c, nil
}

func systemName(s string) string {
	if s == "" {
		return "an unnamed system's"
	}
	return s
}

// --- FHIR ValueSet ----------------------------------------------------------

type fhirValueSet struct {
	Name    string `json:"name"`
	ID      string `json:"id"`
	Title   string `json:"title"`
	Compose *struct {
		Include []fhirInclude `json:"include"`
		Exclude []fhirInclude `json:"exclude"`
	} `json:"compose"`
	Expansion *struct {
		Contains []fhirContains `json:"contains"`
	} `json:"expansion"`
}

type fhirInclude struct {
	System   string   `json:"system"`
	ValueSet []string `json:"valueSet"`
	Concept  []struct {
		Code    string `json:"code"`
		Display string `json:"display"`
	} `json:"concept"`
	Filter []struct {
		Property string `json:"property"`
		Op       string `json:"op"`
		Value    string `json:"value"`
	} `json:"filter"`
}

type fhirContains struct {
	System   string         `json:"system"`
	Code     string         `json:"code"`
	Display  string         `json:"display"`
	Abstract bool           `json:"abstract"`
	Inactive bool           `json:"inactive"`
	Contains []fhirContains `json:"contains"`
}

func parseFHIR(file string, b []byte) (*ValueSet, error) {
	var r fhirValueSet
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrValueSet, file, err)
	}
	v := &ValueSet{Name: r.Name, Title: r.Title}
	if v.Name == "" {
		v.Name = r.ID
	}
	// An expansion is the value set's meaning, already computed.
	if r.Expansion != nil && len(r.Expansion.Contains) > 0 {
		var walk func([]fhirContains)
		walk = func(cs []fhirContains) {
			for _, c := range cs {
				if c.Code != "" && !c.Abstract {
					v.Include = append(v.Include, Concept{System: c.System, Code: Canonical(c.System, c.Code), Display: c.Display})
				}
				walk(c.Contains)
			}
		}
		walk(r.Expansion.Contains)
		return v, nil
	}
	if r.Compose == nil {
		return nil, fmt.Errorf("%w: %s: ValueSet has neither compose nor expansion.contains", ErrValueSet, file)
	}
	read := func(incs []fhirInclude, side string, codes, fams *[]Concept) error {
		for i, inc := range incs {
			where := fmt.Sprintf("compose.%s[%d]", side, i)
			if len(inc.ValueSet) > 0 {
				return fmt.Errorf("%w: %s: %s.valueSet: a value set built from other value sets is not supported; list its codes or give it expanded", ErrValueSet, file, where)
			}
			if inc.System == "" {
				return fmt.Errorf("%w: %s: %s: missing system", ErrValueSet, file, where)
			}
			if len(inc.Concept) == 0 && len(inc.Filter) == 0 {
				return fmt.Errorf("%w: %s: %s: the whole of %s is not a value set fedstat can expand; list its codes", ErrValueSet, file, where, inc.System)
			}
			for j, c := range inc.Concept {
				if strings.TrimSpace(c.Code) == "" {
					return fmt.Errorf("%w: %s: %s.concept[%d]: missing code", ErrValueSet, file, where, j)
				}
				*codes = append(*codes, Concept{System: inc.System, Code: Canonical(inc.System, c.Code), Display: c.Display})
			}
			for j, f := range inc.Filter {
				fw := fmt.Sprintf("%s.filter[%d]", where, j)
				if f.Property != "concept" || (f.Op != "is-a" && f.Op != "descendent-of") {
					return fmt.Errorf("%w: %s: %s: filter %s %s %s is not supported (only concept is-a and descendent-of)", ErrValueSet, file, fw, f.Property, f.Op, f.Value)
				}
				c, err := family(file, fw, Concept{System: inc.System, Code: f.Value})
				if err != nil {
					return err
				}
				*fams = append(*fams, c)
				if f.Op == "descendent-of" && side == "include" {
					// Below the code, not the code itself.
					v.Exclude = append(v.Exclude, Concept{System: c.System, Code: c.Code})
				}
			}
		}
		return nil
	}
	if err := read(r.Compose.Include, "include", &v.Include, &v.IncludeFamilies); err != nil {
		return nil, err
	}
	if err := read(r.Compose.Exclude, "exclude", &v.Exclude, &v.ExcludeFamilies); err != nil {
		return nil, err
	}
	return v, nil
}

// --- OMOP concept set (ATLAS) ----------------------------------------------

type omopItem struct {
	Concept *struct {
		ConceptID    json.Number `json:"CONCEPT_ID"`
		ConceptName  string      `json:"CONCEPT_NAME"`
		ConceptCode  string      `json:"CONCEPT_CODE"`
		VocabularyID string      `json:"VOCABULARY_ID"`
	} `json:"concept"`
	IsExcluded         bool `json:"isExcluded"`
	IncludeDescendants bool `json:"includeDescendants"`
	IncludeMapped      bool `json:"includeMapped"`
}

// vocabularies maps OMOP vocabulary ids to FHIR system URIs.
var vocabularies = map[string]string{
	"SNOMED": SNOMED, "LOINC": LOINC, "RxNorm": RxNorm, "RxNorm Extension": RxNorm,
	"ICD10": ICD10, "ICD10CM": ICD10CM, "ICD10GM": ICD10GM, "ATC": ATC, "CVX": CVX, "NDC": NDC,
	"CPT4": CPT, "ICD10PCS": ICD10PCS,
}

// SystemOfVocabulary returns the FHIR system URI of an OMOP vocabulary id
// (urn:omop:vocabulary:ID for one fedstat does not know).
func SystemOfVocabulary(id string) string {
	if s, ok := vocabularies[id]; ok {
		return s
	}
	return "urn:omop:vocabulary:" + id
}

func parseOMOP(file string, b []byte) (*ValueSet, error) {
	var r struct {
		Name       string `json:"name"`
		Expression *struct {
			Items []omopItem `json:"items"`
		} `json:"expression"`
		Items []omopItem `json:"items"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrValueSet, file, err)
	}
	items := r.Items
	if r.Expression != nil {
		items = r.Expression.Items
	}
	v := &ValueSet{Name: r.Name, Title: r.Name}
	if r.Name != "" && !validName.MatchString(r.Name) {
		// ATLAS names are titles ("Type 2 diabetes"); the file name is the
		// query name.
		v.Name = ""
	}
	for i, it := range items {
		where := fmt.Sprintf("items[%d]", i)
		if it.Concept == nil || strings.TrimSpace(it.Concept.ConceptCode) == "" || it.Concept.VocabularyID == "" {
			return nil, fmt.Errorf("%w: %s: %s: needs concept.CONCEPT_CODE and concept.VOCABULARY_ID", ErrValueSet, file, where)
		}
		sys := SystemOfVocabulary(it.Concept.VocabularyID)
		c := Concept{System: sys, Code: Canonical(sys, it.Concept.ConceptCode), Display: it.Concept.ConceptName}
		codes, fams := &v.Include, &v.IncludeFamilies
		if it.IsExcluded {
			codes, fams = &v.Exclude, &v.ExcludeFamilies
		}
		if it.IncludeDescendants {
			f, err := family(file, where, c)
			if err != nil {
				return nil, err
			}
			*fams = append(*fams, f)
			continue
		}
		*codes = append(*codes, c)
	}
	return v, nil
}
