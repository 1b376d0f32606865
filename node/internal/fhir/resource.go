package fhir

import (
	"errors"
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

// quote quotes at most 64 bytes of b for an error message.
func quote(b []byte) string {
	if len(b) > 64 {
		return strconvQuote(string(b[:64])) + "..."
	}
	return strconvQuote(string(b))
}

// coding is the first Coding of a CodeableConcept (or a Coding itself).
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

// concept reads a CodeableConcept and returns its first coding.
func (p *Parser) concept(s *scanner) (coding, error) {
	var c coding
	var e errs
	err := s.object(func(k []byte) error {
		if string(k) != "coding" {
			return s.skip()
		}
		return e.array(s, "coding", func(i int) error {
			if i > 0 {
				return s.skip()
			}
			cc, err := p.coding(s)
			c = cc
			return err
		})
	})
	if err != nil {
		return c, err
	}
	return c, e.bad
}

// reference reads a Reference and returns its reference string.
func reference(s *scanner) (string, error) {
	var ref string
	var e errs
	err := s.object(func(k []byte) error {
		if string(k) != "reference" {
			return s.skip()
		}
		var err error
		ref, err = s.text()
		return e.keep("reference", err)
	})
	if err != nil {
		return "", err
	}
	if e.bad == nil && ref == "" {
		return "", missing("reference")
	}
	return ref, e.bad
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
}

var readers = func() map[string]func(p *Parser, s *scanner, l loc) (bad, err error) {
	m := map[string]func(p *Parser, s *scanner, l loc) (bad, err error){}
	for _, x := range mapping {
		m[x.resource] = x.read
	}
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
	if l.fullURL != "" {
		p.bundleURLs[l.fullURL] = pt.ID
	}
	p.res.Records.Patients = append(p.res.Records.Patients, pt)
	p.res.Origins.Add(cdm.TablePatients, l.origin)
	p.res.Addresses[pt.ID] = addr
	return nil, nil
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
// "urn:uuid:X" is kept as is and resolved at the end of the Bundle.
func (p *Parser) patientRef(ref string) (string, error) {
	if strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:") {
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
	var haveCode bool
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
			var cc coding
			cc, err = p.concept(s)
			c.Code, c.System, haveCode = cc.code, cc.system, cc.code != ""
			return e.keep("code", err)
		case "onsetDateTime":
			c.Onset, err = date(s)
			return e.keep("onsetDateTime", err)
		case "onsetPeriod":
			c.Onset, _, err = period(s)
			return e.keep("onsetPeriod", err)
		case "abatementDateTime":
			c.Abatement, err = date(s)
			return e.keep("abatementDateTime", err)
		case "abatementPeriod":
			_, c.Abatement, err = period(s)
			return e.keep("abatementPeriod", err)
		}
		return s.skip()
	})
	if err != nil || e.bad != nil {
		return e.bad, err
	}
	if c.ID, bad = idOr(c.ID, l); bad != nil {
		return bad, nil
	}
	if c.PatientID == "" {
		return missing("subject"), nil
	}
	if !haveCode {
		return missing("code.coding[0].code"), nil
	}
	p.add(cdm.TableConditions, c.PatientID, l.origin)
	p.res.Records.Conditions = append(p.res.Records.Conditions, c)
	return nil, nil
}

func (p *Parser) observation(s *scanner, l loc) (bad, err error) {
	var e errs
	o := cdm.Observation{Date: cdm.NoDate}
	var haveCode bool
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			o.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			o.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "code":
			var cc coding
			cc, err = p.concept(s)
			o.Code, o.System, haveCode = cc.code, cc.system, cc.code != ""
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
		case "valueQuantity":
			o.Value, o.HasValue, o.Unit, err = p.quantity(s)
			return e.keep("valueQuantity", err)
		}
		return s.skip()
	})
	if err != nil || e.bad != nil {
		return e.bad, err
	}
	if o.ID, bad = idOr(o.ID, l); bad != nil {
		return bad, nil
	}
	if o.PatientID == "" {
		return missing("subject"), nil
	}
	if !haveCode {
		return missing("code.coding[0].code"), nil
	}
	p.add(cdm.TableObservations, o.PatientID, l.origin)
	p.res.Records.Observations = append(p.res.Records.Observations, o)
	return nil, nil
}

func (p *Parser) encounter(s *scanner, l loc) (bad, err error) {
	var e errs
	en := cdm.Encounter{Start: cdm.NoDate, End: cdm.NoDate}
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			en.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			en.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "class":
			var c coding
			c, err = p.coding(s)
			en.Class = c.code
			return e.keep("class", err)
		case "type":
			return e.array(s, "type", func(i int) error {
				if i > 0 {
					return s.skip()
				}
				c, err := p.concept(s)
				en.TypeCode, en.TypeSystem = c.code, c.system
				return err
			})
		case "period":
			en.Start, en.End, err = period(s)
			return e.keep("period", err)
		}
		return s.skip()
	})
	if err != nil || e.bad != nil {
		return e.bad, err
	}
	if en.ID, bad = idOr(en.ID, l); bad != nil {
		return bad, nil
	}
	if en.PatientID == "" {
		return missing("subject"), nil
	}
	p.add(cdm.TableEncounters, en.PatientID, l.origin)
	p.res.Records.Encounters = append(p.res.Records.Encounters, en)
	return nil, nil
}

func (p *Parser) medication(s *scanner, l loc) (bad, err error) {
	var e errs
	m := cdm.Medication{Authored: cdm.NoDate}
	var haveCode, haveRef bool
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			m.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			m.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "medicationCodeableConcept":
			var c coding
			c, err = p.concept(s)
			m.Code, m.System, haveCode = c.code, c.system, c.code != ""
			return e.keep("medicationCodeableConcept", err)
		case "medicationReference":
			haveRef = true
			return s.skip()
		case "authoredOn":
			m.Authored, err = date(s)
			return e.keep("authoredOn", err)
		}
		return s.skip()
	})
	if err != nil || e.bad != nil {
		return e.bad, err
	}
	if m.ID, bad = idOr(m.ID, l); bad != nil {
		return bad, nil
	}
	if m.PatientID == "" {
		return missing("subject"), nil
	}
	if !haveCode {
		if haveRef {
			return &problem{ErrMissing, "missing required field medicationCodeableConcept (medicationReference is not supported: give the code inline)"}, nil
		}
		return missing("medicationCodeableConcept.coding[0].code"), nil
	}
	p.add(cdm.TableMedications, m.PatientID, l.origin)
	p.res.Records.Medications = append(p.res.Records.Medications, m)
	return nil, nil
}

func (p *Parser) procedure(s *scanner, l loc) (bad, err error) {
	var e errs
	x := cdm.Procedure{Date: cdm.NoDate}
	var haveCode bool
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			x.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			x.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "code":
			var cc coding
			cc, err = p.concept(s)
			x.Code, x.System, haveCode = cc.code, cc.system, cc.code != ""
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
	if err != nil || e.bad != nil {
		return e.bad, err
	}
	if x.ID, bad = idOr(x.ID, l); bad != nil {
		return bad, nil
	}
	if x.PatientID == "" {
		return missing("subject"), nil
	}
	if !haveCode {
		return missing("code.coding[0].code"), nil
	}
	p.add(cdm.TableProcedures, x.PatientID, l.origin)
	p.res.Records.Procedures = append(p.res.Records.Procedures, x)
	return nil, nil
}
