package fhir

import (
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

// A MedicationRequest names its drug either inline
// (medicationCodeableConcept) or by a reference to a Medication resource
// (medicationReference, what Epic and Cerner send). A reference is
// resolved to
//
//   - "#id": a Medication in the request's own contained[];
//   - anything else ("Medication/id", an absolute URL ending in
//     Medication/id, either with /_history/n, or a Bundle entry's fullUrl
//     such as "urn:uuid:..."): a Medication read anywhere in the same
//     import, in any Bundle or NDJSON file, before or after the request.
//
// The second kind waits until the whole import is read (Parser.Result);
// a reference that resolves to nothing, or to a Medication without a
// code, is then a bad record naming the request's file and line (or entry)
// and the field.

// medCode is the code of a Medication resource.
type medCode struct {
	code coded
}

// waitingMed is a MedicationRequest whose medicationReference waits for the
// end of the import.
type waitingMed struct {
	m    cdm.Medication
	ref  string
	o    cdm.Origin
	path string // path of the reference field, for the error
	raw  []byte // the resource, for the quarantine
}

// medKey normalises a reference to a Medication resource: "Medication/id"
// for a relative or absolute reference (version dropped), else the
// reference itself (urn:uuid:, urn:oid:).
func medKey(ref string) string {
	if strings.HasPrefix(ref, "urn:") {
		return ref
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	if j := strings.LastIndex(ref, "Medication/"); j >= 0 && (j == 0 || ref[j-1] == '/') {
		return ref[j:]
	}
	return ref
}

// medicationResource reads a Medication (a resource of its own, not a
// record): its id and code, kept for the requests that reference it.
func (p *Parser) medicationResource(s *scanner, l loc) (bad, err error) {
	id, code, bad, err := p.medicationBody(s)
	if err != nil || bad != nil {
		return bad, err
	}
	p.res.Skipped["Medication"]++
	if id != "" {
		p.meds["Medication/"+id] = medCode{code}
	}
	if l.fullURL != "" {
		p.meds[l.fullURL] = medCode{code}
		p.meds[medKey(l.fullURL)] = medCode{code}
	}
	return nil, nil
}

// medicationBody reads a Medication resource's id and code.
func (p *Parser) medicationBody(s *scanner) (id string, code coded, bad, err error) {
	var e errs
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			id, err = s.text()
			return e.keep("id", err)
		case "code":
			code, err = p.concept(s)
			return e.keep("code", err)
		}
		return s.skip()
	})
	return id, code, e.bad, err
}

func (p *Parser) medication(s *scanner, l loc) (bad, err error) {
	var e errs
	m := cdm.Medication{Authored: cdm.NoDate}
	var code coded
	var ref string
	haveRef := false
	contained := map[string]medCode(nil)
	start := s.pos
	err = s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			m.ID, err = s.text()
			return e.keep("id", err)
		case "subject":
			m.PatientID, err = p.subject(s)
			return e.keep("subject", err)
		case "status":
			m.Status, err = p.in.text(s)
			return e.keep("status", err)
		case "medicationCodeableConcept":
			code, err = p.concept(s)
			return e.keep("medicationCodeableConcept", err)
		case "medicationReference":
			haveRef = true
			ref, err = reference(s)
			return e.keep("medicationReference", err)
		case "contained":
			return e.array(s, "contained", func(int) error {
				rt, err := resourceType(s)
				if err != nil || rt != "Medication" {
					if serr := s.skip(); serr != nil {
						return serr
					}
					return err
				}
				id, c, bad, err := p.medicationBody(s)
				if err != nil {
					return err
				}
				if contained == nil {
					contained = map[string]medCode{}
				}
				contained[id] = medCode{c}
				return bad
			})
		case "authoredOn":
			m.Authored, err = date(s)
			return e.keep("authoredOn", err)
		}
		return s.skip()
	})
	if err != nil {
		return nil, err
	}
	if m.Status == enteredInError {
		p.skipErroneous("MedicationRequest")
		return nil, nil
	}
	if e.bad != nil {
		return e.bad, nil
	}
	if m.ID, bad = idOr(m.ID, l); bad != nil {
		return bad, nil
	}
	if m.PatientID == "" {
		return missing("subject"), nil
	}
	switch {
	case code.ok:
	case !haveRef:
		return missing("medicationCodeableConcept.coding[0].code"), nil
	case strings.HasPrefix(ref, "#"):
		mc, ok := contained[ref[1:]]
		if !ok {
			return at("medicationReference", at("reference", &problem{ErrReference,
				"no contained Medication with id " + strconvQuote(ref[1:]) + " for " + strconvQuote(ref)})), nil
		}
		if !mc.code.ok {
			return at("contained", &problem{ErrMissing, "contained Medication " + strconvQuote(ref[1:]) + " has no code (missing required field code.coding[0].code)"}), nil
		}
		code = mc.code
	default:
		// Resolved when the whole import is read (resolveMeds).
		path := "medicationReference.reference"
		if l.path != "" {
			path = l.path + "." + path
		}
		p.waitingMeds = append(p.waitingMeds, waitingMed{m: m, ref: ref, o: l.origin, path: path,
			raw: append([]byte(nil), s.buf[start:s.pos]...)})
		return nil, nil
	}
	m.Code, m.System, m.Codings = code.code, code.system, code.others
	p.add(cdm.TableMedications, m.PatientID, l.origin)
	cdm.Push(&p.res.Records.Medications, m)
	return nil, nil
}

// resolveMedPatients resolves the bundle-local patient references of the
// requests waiting since index from (the end of a Bundle or NDJSON line).
func (p *Parser) resolveMedPatients(from int) {
	for i := from; i < len(p.waitingMeds); i++ {
		if ref := &p.waitingMeds[i].m.PatientID; strings.HasPrefix(*ref, "urn:") {
			p.bundleRef(ref)
		}
	}
}

// resolveMeds resolves the waiting medicationReferences against every
// Medication of the import: resolved requests become records (after the
// others), the rest bad records.
func (p *Parser) resolveMeds() {
	for i := range p.waitingMeds {
		w := &p.waitingMeds[i]
		mc, ok := p.meds[w.ref]
		if !ok {
			mc, ok = p.meds[medKey(w.ref)]
		}
		var bad error
		switch {
		case !ok:
			bad = &problem{ErrReference, "medicationReference " + strconvQuote(w.ref) +
				" resolves to no Medication in this import (contained, in the same Bundle or in the export's Medication files)"}
		case !mc.code.ok:
			bad = &problem{ErrMissing, "the Medication " + strconvQuote(w.ref) + " has no code (missing required field code.coding[0].code)"}
		}
		if bad != nil {
			p.res.Errors = append(p.res.Errors, &cdm.RecordError{Origin: w.o, Path: w.path, Err: bad, Raw: w.raw})
			continue
		}
		m := w.m
		m.Code, m.System, m.Codings = mc.code.code, mc.code.system, mc.code.others
		if strings.HasPrefix(m.PatientID, identPrefix) {
			p.byIdent = append(p.byIdent, pendingRef{tableOf[cdm.TableMedications], len(p.res.Records.Medications)})
		}
		p.res.Origins.Add(cdm.TableMedications, w.o)
		cdm.Push(&p.res.Records.Medications, m)
	}
	p.waitingMeds = nil
}
