package fhir

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// errs keeps the first semantic (non-syntax) error of one JSON level while
// the scan goes on, so one bad field does not lose the parser's position.
// Syntax errors are returned at once: the input cannot be read further.
type errs struct{ bad error }

// array reads an array member named seg, calling fn for each element and
// keeping the first element's error under seg[i].
func (e *errs) array(s *scanner, seg string, fn func(i int) error) error {
	var inner errs
	err := s.array(func(i int) error { return inner.keep(idx(i), fn(i)) })
	if err != nil {
		return e.keep(seg, err)
	}
	return e.keep(seg, inner.bad)
}

func (e *errs) keep(seg string, err error) error {
	if err == nil {
		return nil
	}
	var se *syntaxError
	if errors.As(err, &se) {
		return err
	}
	if e.bad == nil {
		e.bad = at(seg, err)
	}
	return nil
}

// interner shares the strings of repeated values (codes, systems, units).
type interner map[string]string

func (in interner) get(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < 1<<20 {
		in[s] = s
	}
	return s
}

// str shares s.
func (in interner) str(s string) string {
	if t, ok := in[s]; ok {
		return t
	}
	if len(in) < 1<<20 {
		in[s] = s
	}
	return s
}

// text reads a string value into a shared string.
func (in interner) text(s *scanner) (string, error) {
	b, err := s.stringValue()
	if err != nil {
		return "", err
	}
	return in.get(b), nil
}

// date reads a FHIR date/dateTime string.
func date(s *scanner) (cdm.Date, error) {
	b, err := s.stringValue()
	if err != nil {
		return cdm.NoDate, err
	}
	if len(b) == 0 {
		return cdm.NoDate, &problem{ErrDate, `impossible date "" (want YYYY-MM-DD)`}
	}
	d, err := cdm.ParseDate(string(b))
	if err != nil {
		return cdm.NoDate, &problem{ErrDate, "impossible date " + quote(b) + " (want a real day as YYYY-MM-DD, YYYY-MM or YYYY, optionally with a time)"}
	}
	return d, nil
}

// dateAt reads the date at offset off of the resource being read (a
// fallback date member skipped earlier), leaving the scanner where it was.
func dateAt(s *scanner, off int) (cdm.Date, error) {
	save := s.pos
	s.pos = off
	d, err := date(s)
	s.pos = save
	return d, err
}

// quote quotes at most 64 bytes of b for an error message.
func quote(b []byte) string {
	if len(b) > 64 {
		return strconvQuote(string(b[:64])) + "..."
	}
	return strconvQuote(string(b))
}

// coding is one Coding (or the primary coding of a CodeableConcept).
type coding struct{ system, code string }

func (p *Parser) coding(s *scanner) (coding, error) {
	var c coding
	var e errs
	err := s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "system":
			c.system, err = p.in.text(s)
			return e.keep("system", err)
		case "code":
			c.code, err = p.in.text(s)
			return e.keep("code", err)
		}
		return s.skip()
	})
	if err != nil {
		return c, err
	}
	return c, e.bad
}

// codings reads a CodeableConcept and appends every coding that has a code
// to p.cbuf (concept and coded take them out).
func (p *Parser) codings(s *scanner) error {
	var e errs
	err := s.object(func(k []byte) error {
		if string(k) != "coding" {
			return s.skip()
		}
		return e.array(s, "coding", func(int) error {
			c, err := p.coding(s)
			if err == nil && c.code != "" {
				p.cbuf = append(p.cbuf, cdm.Coding{System: c.system, Code: c.code})
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	return e.bad
}

// coded is the code of a record: its primary coding (cdm.CodedRecord:
// the best-ranked system, whatever the order of the codings) and the text
// of its codings column (the others).
type coded struct {
	coding
	others string
	ok     bool // some coding has a code
}

// takeCoded turns the codings gathered in p.cbuf into a coded and empties
// p.cbuf.
func (p *Parser) takeCoded() coded {
	var c coded
	switch len(p.cbuf) {
	case 0:
	case 1: // the common case, without sorting or formatting
		c = coded{coding: coding{p.cbuf[0].System, p.cbuf[0].Code}, ok: true}
	default:
		prim, others, ok := cdm.CodedRecord(p.cbuf)
		c = coded{coding: coding{prim.System, prim.Code}, others: p.in.str(others), ok: ok}
	}
	p.cbuf = p.cbuf[:0]
	return c
}

// concept reads a CodeableConcept: every coding of it.
func (p *Parser) concept(s *scanner) (coded, error) {
	p.cbuf = p.cbuf[:0]
	err := p.codings(s)
	return p.takeCoded(), err
}

// statusConcept reads a CodeableConcept holding a status (Condition's
// clinicalStatus, verificationStatus): the code of its first coding.
func (p *Parser) statusConcept(s *scanner) (string, error) {
	p.cbuf = p.cbuf[:0]
	err := p.codings(s)
	code := ""
	if len(p.cbuf) > 0 {
		code = p.cbuf[0].Code
	}
	p.cbuf = p.cbuf[:0]
	return code, err
}

// enteredInError is the status of a record that should not exist: it is
// never imported (counted as skipped).
const enteredInError = "entered-in-error"

// skipErroneous counts a resource skipped for its status.
func (p *Parser) skipErroneous(resourceType string) {
	p.res.Skipped[resourceType+" ("+enteredInError+")"]++
}

// identPrefix marks a logical reference (a Reference with an identifier
// and no reference) as reference returns it: "identifier:system|value".
const identPrefix = "identifier:"

// reference reads a Reference and returns its reference string, or for a
// logical reference (identifier only) identPrefix + "system|value".
func reference(s *scanner) (string, error) {
	var ref, ident string
	var e errs
	err := s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "reference":
			ref, err = s.text()
			return e.keep("reference", err)
		case "identifier":
			ident, err = identifier(s)
			return e.keep("identifier", err)
		}
		return s.skip()
	})
	if err != nil {
		return "", err
	}
	if e.bad == nil && ref == "" {
		if ident != "" {
			return identPrefix + ident, nil
		}
		return "", missing("reference")
	}
	return ref, e.bad
}

// identifier reads an Identifier as "system|value" ("" without a value).
func identifier(s *scanner) (string, error) {
	sys, val, err := identifierParts(s)
	if err != nil || val == "" {
		return "", err
	}
	return sys + "|" + val, nil
}

// identifierParts reads an Identifier's system and value (either may be
// empty).
func identifierParts(s *scanner) (sys, val string, err error) {
	var e errs
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "system":
			sys, err = s.text()
			return e.keep("system", err)
		case "value":
			val, err = s.text()
			return e.keep("value", err)
		}
		return s.skip()
	})
	if err != nil || e.bad != nil {
		return "", "", firstErr(err, e.bad)
	}
	return sys, val, nil
}

// period reads a Period.
func period(s *scanner) (start, end cdm.Date, err error) {
	start, end = cdm.NoDate, cdm.NoDate
	var e errs
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "start":
			start, err = date(s)
			return e.keep("start", err)
		case "end":
			end, err = date(s)
			return e.keep("end", err)
		}
		return s.skip()
	})
	if err != nil {
		return start, end, err
	}
	return start, end, e.bad
}

// quantity reads a Quantity's value and unit (unit, else code).
func (p *Parser) quantity(s *scanner) (v float64, has bool, unit string, err error) {
	var e errs
	var code string
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "value":
			v, err = s.number()
			has = err == nil
			return e.keep("value", err)
		case "unit":
			unit, err = p.in.text(s)
			return e.keep("unit", err)
		case "code":
			code, err = p.in.text(s)
			return e.keep("code", err)
		}
		return s.skip()
	})
	if unit == "" {
		unit = code
	}
	if err != nil {
		return v, has, unit, err
	}
	return v, has, unit, e.bad
}

// address reads an Address.
func (p *Parser) address(s *scanner) (a Address, use string, err error) {
	var e errs
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "use":
			use, err = s.text()
			return e.keep("use", err)
		case "city":
			a.City, err = p.in.text(s)
			return e.keep("city", err)
		case "state":
			a.State, err = p.in.text(s)
			return e.keep("state", err)
		case "postalCode":
			a.PostalCode, err = p.in.text(s)
			return e.keep("postalCode", err)
		case "country":
			a.Country, err = p.in.text(s)
			return e.keep("country", err)
		}
		return s.skip()
	})
	if err != nil {
		return a, use, err
	}
	return a, use, e.bad
}

// resourceType finds the resourceType member of the object at the current
// position without moving the scanner.
func resourceType(s *scanner) (string, error) {
	start := s.pos
	defer func() { s.pos = start }()
	var rt string
	found := errors.New("found")
	err := s.object(func(k []byte) error {
		if string(k) != "resourceType" {
			return s.skip()
		}
		b, err := s.stringValue()
		if err != nil {
			return at("resourceType", err)
		}
		rt = string(b)
		return found
	})
	switch {
	case err == found:
		return rt, nil
	case err != nil:
		return "", err
	}
	return "", missing("resourceType")
}

// loc is the place of the resource being read, for the records and errors
// it makes.
type loc struct {
	origin  cdm.Origin
	fullURL string // Bundle entry fullUrl, or ""
	path    string // path of the resource inside its entry ("resource"), or ""
}

// mapping is the decoder's mapping from FHIR resource types to the tables
// of the data model (cdm.Schema), each with the function that reads one
// resource into a record. Resources of other types are skipped and
// counted.
var mapping = []struct {
	resource, table string
	read            func(p *Parser, s *scanner, l loc) (bad, err error)
}{
	{"Patient", cdm.TablePatients, (*Parser).patient},
	{"Condition", cdm.TableConditions, (*Parser).condition},
	{"Observation", cdm.TableObservations, (*Parser).observation},
	{"Encounter", cdm.TableEncounters, (*Parser).encounter},
	{"MedicationRequest", cdm.TableMedications, (*Parser).medication},
	{"Procedure", cdm.TableProcedures, (*Parser).procedure},
	{"Immunization", cdm.TableImmunizations, (*Parser).immunization},
}

var readers = func() map[string]func(p *Parser, s *scanner, l loc) (bad, err error) {
	m := map[string]func(p *Parser, s *scanner, l loc) (bad, err error){}
	for _, x := range mapping {
		m[x.resource] = x.read
	}
	// Medication resources are no records of their own: they are read for
	// the MedicationRequests that reference them (medication.go), and
	// counted as skipped.
	m["Medication"] = (*Parser).medicationResource
	return m
}()

// Resources returns the FHIR resource types the decoder reads, in the
// order of the mapping, with the table each becomes.
func Resources() (resources, tables []string) {
	for _, x := range mapping {
		resources, tables = append(resources, x.resource), append(tables, x.table)
	}
	return resources, tables
}

// resource reads one resource at the current position and adds its record
// (or its error, or a skip count) to the result. It returns only syntax
// errors (and the top-level not-an-object type error), after which the
// input cannot be read further.
func (p *Parser) resource(s *scanner, l loc) error {
	s.ws()
	start := s.pos
	rt, err := resourceType(s)
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			return err
		}
		if err := s.skip(); err != nil {
			return err
		}
		p.fail(l, err, s.buf[start:s.pos])
		return nil
	}
	read, ok := readers[rt]
	if !ok {
		p.res.Skipped[rt]++
		return s.skip()
	}
	bad, err := read(p, s, l)
	if err != nil {
		return err
	}
	if bad != nil {
		p.fail(l, bad, s.buf[start:s.pos])
	}
	return nil
}

// fail records a bad record.
func (p *Parser) fail(l loc, err error, raw []byte) {
	re := &cdm.RecordError{Origin: l.origin, Err: err}
	var fe *fieldError
	if errors.As(err, &fe) {
		re.Path = fe.path()
		re.Err = fe.err
	}
	if l.path != "" {
		if re.Path == "" {
			re.Path = l.path
		} else {
			re.Path = l.path + "." + re.Path
		}
	}
	re.Raw = append([]byte(nil), raw...)
	p.res.Errors = append(p.res.Errors, re)
}

// id returns the record id: the resource id, else the entry's fullUrl.
func idOr(id string, l loc) (string, error) {
	if id == "" {
		id = l.fullURL
	}
	if id == "" {
		return "", missing("id")
	}
	if strings.IndexByte(id, 0) >= 0 {
		return "", &problem{ErrValue, "id contains a NUL byte"}
	}
	return id, nil
}

func (p *Parser) patient(s *scanner, l loc) (bad, err error) {
	var e errs
	pt := cdm.Patient{BirthDate: cdm.NoDate, DeathDate: cdm.NoDate}
	var addr Address
	var idents []string
	var codes []cdm.Coding // identifiers with a system and a value
	haveAddr, home := false, false
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			pt.ID, err = s.text()
			return e.keep("id", err)
		case "gender":
			var g []byte
			if g, err = s.stringValue(); err == nil {
				pt.Sex, err = cdm.ParseSex(string(g))
				if err != nil {
					err = &problem{ErrValue, "bad gender " + quote(g) + " (want female, male, other or unknown)"}
				}
			}
			return e.keep("gender", err)
		case "birthDate":
			pt.BirthDate, err = date(s)
			return e.keep("birthDate", err)
		case "deceasedDateTime":
			pt.DeathDate, err = date(s)
			return e.keep("deceasedDateTime", err)
		case "address":
			return e.array(s, "address", func(i int) error {
				a, use, err := p.address(s)
				if err == nil && !home && (use == "home" || !haveAddr) {
					addr, haveAddr, home = a, true, use == "home"
				}
				return err
			})
		case "identifier":
			return e.array(s, "identifier", func(int) error {
				sys, val, err := identifierParts(s)
				if err == nil && val != "" {
					idents = append(idents, sys+"|"+val)
					if sys != "" {
						codes = append(codes, cdm.Coding{System: sys, Code: val})
					}
				}
				return err
			})
		case "extension":
			return e.array(s, "extension", func(int) error {
				url, codes, err := p.ombExtension(s)
				switch url {
				case usCoreRace:
					pt.Race = codes
				case usCoreEthnicity:
					pt.Ethnicity = codes
				}
				return err
			})
		}
		return s.skip()
	})
	if err != nil || e.bad != nil {
		return e.bad, err
	}
	if pt.ID, bad = idOr(pt.ID, l); bad != nil {
		return bad, nil
	}
	pt.Region = p.opts.Region.Region(addr)
	pt.Identifiers = cdm.FormatCodings(cdm.SortCodings(codes)) // unique per patient: not interned
	if l.fullURL != "" {
		p.bundleURLs[l.fullURL] = pt.ID
	}
	for _, id := range idents {
		p.identPatients[id] = pt.ID
	}
	cdm.Push(&p.res.Records.Patients, pt)
	p.res.Origins.Add(cdm.TablePatients, l.origin)
	p.res.Addresses[pt.ID] = addr
	return nil, nil
}

// The US Core race and ethnicity extensions.
const (
	usCoreRace      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	usCoreEthnicity = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
)

// ombExtension reads one extension of a Patient: its url and, for the US
// Core race and ethnicity extensions, the codes of their ombCategory
// sub-extensions (sorted, distinct, joined by commas). The detailed
// categories and the text are not read.
func (p *Parser) ombExtension(s *scanner) (url, codes string, err error) {
	var e errs
	var omb []string
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "url":
			url, err = p.in.text(s)
			return e.keep("url", err)
		case "extension":
			return e.array(s, "extension", func(int) error {
				var sub string
				var c coding
				var se errs
				err := s.object(func(k []byte) error {
					var err error
					switch string(k) {
					case "url":
						sub, err = s.text()
						return se.keep("url", err)
					case "valueCoding":
						c, err = p.coding(s)
						return se.keep("valueCoding", err)
					}
					return s.skip()
				})
				if err == nil && se.bad == nil && sub == "ombCategory" && c.code != "" {
					omb = append(omb, c.code)
				}
				if err != nil {
					return err
				}
				return se.bad
			})
		}
		return s.skip()
	})
	if err != nil || e.bad != nil || len(omb) == 0 || (url != usCoreRace && url != usCoreEthnicity) {
		return url, "", firstErr(err, e.bad)
	}
	if len(omb) == 1 {
		return url, omb[0], nil
	}
	slices.Sort(omb)
	return url, p.in.str(strings.Join(slices.Compact(omb), ",")), nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// add records the origin of the next record of table, and its patient
// reference if it waits for the end of the Bundle; the caller appends the
// record.
func (p *Parser) add(table, patientRef string, o cdm.Origin) {
	t := tableOf[table]
	p.pending(patientRef, t, t.Len(&p.res.Records))
	p.res.Origins.Add(table, o)
}

// tableOf holds the Schema entries of the tables this decoder fills.
var tableOf = func() map[string]*cdm.TableSchema {
	m := map[string]*cdm.TableSchema{}
	for i := range cdm.Schema {
		m[cdm.Schema[i].Name] = &cdm.Schema[i]
	}
	return m
}()

// subject reads a subject/patient reference into a patient id, or records
// a pending bundle-local reference.
func (p *Parser) subject(s *scanner) (string, error) {
	ref, err := reference(s)
	if err != nil {
		return "", err
	}
	return p.patientRef(ref)
}

// patientRef turns a reference into a patient id. "Patient/123",
// "http://host/fhir/Patient/123" and "Patient/123/_history/2" give "123".
// "urn:uuid:X" is kept as is and resolved at the end of the Bundle; a
// logical reference (identifier only) at the end of the import, to the
// Patient with that identifier.
func (p *Parser) patientRef(ref string) (string, error) {
	if strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:") || strings.HasPrefix(ref, identPrefix) {
		return ref, nil
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndex(ref, "Patient/")
	if j < 0 || (j > 0 && ref[j-1] != '/') || len(ref) == j+len("Patient/") || strings.IndexByte(ref[j+len("Patient/"):], '/') >= 0 {
		return "", &problem{ErrReference, "bad patient reference " + strconvQuote(ref) + " (want Patient/ID, an absolute URL ending in Patient/ID, or urn:uuid:)"}
	}
	return ref[j+len("Patient/"):], nil
}

func (p *Parser) condition(s *scanner, l loc) (bad, err error) {
	var e errs
	c := cdm.Condition{Onset: cdm.NoDate, Abatement: cdm.NoDate}
	recordedAt := -1
	var code coded
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			c.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			c.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "code":
			code, err = p.concept(s)
			return e.keep("code", err)
		case "clinicalStatus":
			c.ClinicalStatus, err = p.statusConcept(s)
			return e.keep("clinicalStatus", err)
		case "verificationStatus":
			c.VerificationStatus, err = p.statusConcept(s)
			return e.keep("verificationStatus", err)
		case "onsetDateTime":
			c.Onset, err = date(s)
			return e.keep("onsetDateTime", err)
		case "onsetPeriod":
			c.Onset, _, err = period(s)
			return e.keep("onsetPeriod", err)
		case "recordedDate":
			// Read only if no onset date comes (dateAt).
			s.ws()
			recordedAt = s.pos
			return s.skip()
		case "abatementDateTime":
			c.Abatement, err = date(s)
			return e.keep("abatementDateTime", err)
		case "abatementPeriod":
			_, c.Abatement, err = period(s)
			return e.keep("abatementPeriod", err)
		}
		return s.skip()
	})
	if err != nil {
		return nil, err
	}
	if c.VerificationStatus == enteredInError {
		p.skipErroneous("Condition")
		return nil, nil
	}
	if e.bad != nil {
		return e.bad, nil
	}
	if c.ID, bad = idOr(c.ID, l); bad != nil {
		return bad, nil
	}
	if c.PatientID == "" {
		return missing("subject"), nil
	}
	if !code.ok {
		return missing("code.coding[0].code"), nil
	}
	c.Code, c.System, c.Codings = code.code, code.system, code.others
	if !c.Onset.Valid() && recordedAt >= 0 {
		// No onset date (none given, or onsetAge/onsetString): the day it
		// was recorded.
		if c.Onset, bad = dateAt(s, recordedAt); bad != nil {
			return at("recordedDate", bad), nil
		}
	}
	p.add(cdm.TableConditions, c.PatientID, l.origin)
	cdm.Push(&p.res.Records.Conditions, c)
	return nil, nil
}

// component is an Observation.component being read.
type component struct {
	code  coded
	value float64
	has   bool
	unit  string
}

func (p *Parser) observation(s *scanner, l loc) (bad, err error) {
	var e errs
	o := cdm.Observation{Date: cdm.NoDate}
	issuedAt := -1
	var code coded
	p.comps = p.comps[:0]
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			o.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			o.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "status":
			o.Status, err = p.in.text(s)
			return e.keep("status", err)
		case "code":
			code, err = p.concept(s)
			return e.keep("code", err)
		case "effectiveDateTime":
			o.Date, err = date(s)
			return e.keep("effectiveDateTime", err)
		case "effectiveInstant":
			o.Date, err = date(s)
			return e.keep("effectiveInstant", err)
		case "effectivePeriod":
			o.Date, _, err = period(s)
			return e.keep("effectivePeriod", err)
		case "issued":
			// Read only if no effective date comes (dateAt).
			s.ws()
			issuedAt = s.pos
			return s.skip()
		case "valueQuantity":
			o.Value, o.HasValue, o.Unit, err = p.quantity(s)
			return e.keep("valueQuantity", err)
		case "component":
			return e.array(s, "component", func(int) error {
				c, err := p.component(s)
				p.comps = append(p.comps, c)
				return err
			})
		}
		return s.skip()
	})
	if err != nil {
		return nil, err
	}
	if o.Status == enteredInError {
		p.skipErroneous("Observation")
		return nil, nil
	}
	if e.bad != nil {
		return e.bad, nil
	}
	if o.ID, bad = idOr(o.ID, l); bad != nil {
		return bad, nil
	}
	if o.PatientID == "" {
		return missing("subject"), nil
	}
	if !code.ok {
		return missing("code.coding[0].code"), nil
	}
	for i := range p.comps {
		if !p.comps[i].code.ok {
			return missing("component[" + strconv.Itoa(i) + "].code.coding[0].code"), nil
		}
	}
	if !o.Date.Valid() && issuedAt >= 0 {
		if o.Date, bad = dateAt(s, issuedAt); bad != nil {
			return at("issued", bad), nil
		}
	}
	o.Code, o.System, o.Codings = code.code, code.system, code.others
	p.add(cdm.TableObservations, o.PatientID, l.origin)
	cdm.Push(&p.res.Records.Observations, o)
	// Each component is an observation of its own, of the panel's patient,
	// day and status, linked to the panel by panel_id.
	for i := range p.comps {
		c := &p.comps[i]
		x := cdm.Observation{ID: o.ID + "/component/" + strconv.Itoa(i), PatientID: o.PatientID,
			Code: c.code.code, System: c.code.system, Codings: c.code.others, Date: o.Date,
			Value: c.value, HasValue: c.has, Unit: c.unit, Status: o.Status, PanelID: o.ID}
		p.add(cdm.TableObservations, x.PatientID, l.origin)
		cdm.Push(&p.res.Records.Observations, x)
	}
	return nil, nil
}

// component reads one Observation.component: its code and valueQuantity.
func (p *Parser) component(s *scanner) (component, error) {
	var c component
	var e errs
	err := s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "code":
			c.code, err = p.concept(s)
			return e.keep("code", err)
		case "valueQuantity":
			c.value, c.has, c.unit, err = p.quantity(s)
			return e.keep("valueQuantity", err)
		}
		return s.skip()
	})
	if err != nil {
		return c, err
	}
	return c, e.bad
}

func (p *Parser) encounter(s *scanner, l loc) (bad, err error) {
	var e errs
	en := cdm.Encounter{Start: cdm.NoDate, End: cdm.NoDate}
	var status string
	p.cbuf = p.cbuf[:0]
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			en.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			en.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "status":
			status, err = p.in.text(s)
			return e.keep("status", err)
		case "class":
			var c coding
			c, err = p.coding(s)
			en.Class = c.code
			return e.keep("class", err)
		case "type":
			// Every coding of every type: the primary one in type_code.
			return e.array(s, "type", func(int) error { return p.codings(s) })
		case "period":
			en.Start, en.End, err = period(s)
			return e.keep("period", err)
		}
		return s.skip()
	})
	typ := p.takeCoded()
	if err != nil {
		return nil, err
	}
	if status == enteredInError {
		p.skipErroneous("Encounter")
		return nil, nil
	}
	if e.bad != nil {
		return e.bad, nil
	}
	if en.ID, bad = idOr(en.ID, l); bad != nil {
		return bad, nil
	}
	if en.PatientID == "" {
		return missing("subject"), nil
	}
	en.TypeCode, en.TypeSystem, en.TypeCodings = typ.code, typ.system, typ.others
	p.add(cdm.TableEncounters, en.PatientID, l.origin)
	cdm.Push(&p.res.Records.Encounters, en)
	return nil, nil
}

func (p *Parser) procedure(s *scanner, l loc) (bad, err error) {
	var e errs
	x := cdm.Procedure{Date: cdm.NoDate}
	var code coded
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			x.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			x.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "status":
			x.Status, err = p.in.text(s)
			return e.keep("status", err)
		case "code":
			code, err = p.concept(s)
			return e.keep("code", err)
		case "performedDateTime":
			x.Date, err = date(s)
			return e.keep("performedDateTime", err)
		case "performedPeriod":
			x.Date, _, err = period(s)
			return e.keep("performedPeriod", err)
		}
		return s.skip()
	})
	if err != nil {
		return nil, err
	}
	if x.Status == enteredInError {
		p.skipErroneous("Procedure")
		return nil, nil
	}
	if e.bad != nil {
		return e.bad, nil
	}
	if x.ID, bad = idOr(x.ID, l); bad != nil {
		return bad, nil
	}
	if x.PatientID == "" {
		return missing("subject"), nil
	}
	if !code.ok {
		return missing("code.coding[0].code"), nil
	}
	x.Code, x.System, x.Codings = code.code, code.system, code.others
	p.add(cdm.TableProcedures, x.PatientID, l.origin)
	cdm.Push(&p.res.Records.Procedures, x)
	return nil, nil
}

func (p *Parser) immunization(s *scanner, l loc) (bad, err error) {
	var e errs
	x := cdm.Immunization{Date: cdm.NoDate}
	recorded := cdm.NoDate
	var code coded
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			x.ID, err = s.text()
			return e.keep("id", err)
		case "patient":
			x.PatientID, err = p.subject(s)
			return e.keep("patient", err)
		case "status":
			x.Status, err = p.in.text(s)
			return e.keep("status", err)
		case "vaccineCode":
			code, err = p.concept(s)
			return e.keep("vaccineCode", err)
		case "occurrenceDateTime":
			x.Date, err = date(s)
			return e.keep("occurrenceDateTime", err)
		case "recorded":
			recorded, err = date(s)
			return e.keep("recorded", err)
		}
		return s.skip()
	})
	if err != nil {
		return nil, err
	}
	if x.Status == enteredInError {
		p.skipErroneous("Immunization")
		return nil, nil
	}
	if e.bad != nil {
		return e.bad, nil
	}
	if x.ID, bad = idOr(x.ID, l); bad != nil {
		return bad, nil
	}
	if x.PatientID == "" {
		return missing("patient"), nil
	}
	if !code.ok {
		return missing("vaccineCode.coding[0].code"), nil
	}
	if !x.Date.Valid() {
		x.Date = recorded // occurrenceString or none
	}
	x.Code, x.System, x.Codings = code.code, code.system, code.others
	p.add(cdm.TableImmunizations, x.PatientID, l.origin)
	cdm.Push(&p.res.Records.Immunizations, x)
	return nil, nil
}
