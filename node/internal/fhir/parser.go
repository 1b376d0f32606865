package fhir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
)

func strconvQuote(s string) string { return strconv.Quote(s) }

// Parser reads FHIR inputs into one Result. Feed it inputs with ParseBundle
// or ParseNDJSON, then take Result. It is not safe for concurrent use; run
// one Parser per goroutine and merge results if needed.
type Parser struct {
	opts Options
	res  *Result
	in   interner
	sc   scanner

	// Bundle-local state: fullUrl -> patient id, and records whose patient
	// reference waits for the end of the Bundle.
	bundleURLs map[string]string
	waiting    []pendingRef
	entry      int // Bundle entry being read, or -1

	// Import-wide state: the Medications read so far (by "Medication/id"
	// and by fullUrl) and the MedicationRequests whose medicationReference
	// waits for the end of the import (medication.go); waitFrom is the
	// first of those added by the input being read.
	meds        map[string]medCode
	waitingMeds []waitingMed
	waitFrom    int
	// Patients by identifier (system|value), and records whose patient is
	// a logical reference, resolved at the end of the import.
	identPatients map[string]string
	byIdent       []pendingRef
	finished      bool

	cbuf  []cdm.Coding // codings of the concept being read
	comps []component  // components of the Observation being read
}

type pendingRef struct {
	table *cdm.TableSchema
	index int
}

// NewParser returns a parser with the given options.
func NewParser(o Options) *Parser {
	b := o.Into
	if b == nil {
		b = &cdm.Batch{}
	}
	return &Parser{
		opts:       o,
		res:        &Result{Batch: b, Addresses: map[string]Address{}, Skipped: map[string]int{}},
		in:         interner{},
		bundleURLs: map[string]string{},
		entry:      -1,
		meds:       map[string]medCode{},

		identPatients: map[string]string{},
	}
}

// Result returns everything read. It first resolves the medicationReferences
// that name Medications outside their own resource (the requests become
// records, or bad records when nothing in the import resolves them). The
// parser must not be used afterwards.
func (p *Parser) Result() *Result {
	if !p.finished {
		p.resolveMeds()
		p.resolveIdentifiers()
		p.finished = true
	}
	return p.res
}

func (p *Parser) pending(ref string, table *cdm.TableSchema, index int) {
	switch {
	case strings.HasPrefix(ref, "urn:"):
		p.waiting = append(p.waiting, pendingRef{table, index})
	case strings.HasPrefix(ref, identPrefix):
		p.byIdent = append(p.byIdent, pendingRef{table, index})
	}
}

// resolveIdentifiers turns logical patient references (identifier
// only) into the ids of the Patients of the import with that identifier
// (system|value); one that names no such Patient keeps its text, and the
// patient check reports it as an unknown patient naming the record.
func (p *Parser) resolveIdentifiers() {
	for _, w := range p.byIdent {
		ref := w.table.PatientRef(&p.res.Records, w.index)
		if id, ok := p.identPatients[strings.TrimPrefix(*ref, identPrefix)]; ok {
			*ref = id
		}
	}
	p.byIdent = nil
}

// resolve turns the waiting bundle-local references into patient ids: the
// id of the Patient whose entry has that fullUrl, else (urn:uuid:X) X.
func (p *Parser) resolve() {
	for _, w := range p.waiting {
		p.bundleRef(w.table.PatientRef(&p.res.Records, w.index))
	}
	p.waiting = p.waiting[:0]
	p.resolveMedPatients(p.waitFrom)
	p.waitFrom = len(p.waitingMeds)
	clear(p.bundleURLs)
}

// bundleRef resolves one bundle-local patient reference in place: the id
// of the Patient whose entry has that fullUrl, else (urn:uuid:X) X; any
// other reference is left as it is.
func (p *Parser) bundleRef(ref *string) {
	if id, ok := p.bundleURLs[*ref]; ok {
		*ref = id
	} else if rest, ok := strings.CutPrefix(*ref, "urn:uuid:"); ok {
		*ref = rest
	}
}

// syntaxFail records a malformed-JSON error at byte offset off of buf.
func (p *Parser) syntaxFail(o cdm.Origin, buf []byte, err error, path string) {
	var se *syntaxError
	msg := err.Error()
	if errors.As(err, &se) {
		line, col := lineCol(buf, se.off)
		if o.Line > 0 {
			msg = fmt.Sprintf("malformed JSON at column %d: %s", se.off+1, se.msg)
		} else {
			msg = fmt.Sprintf("malformed JSON at line %d column %d: %s", line, col, se.msg)
		}
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		if path != "" {
			path += "."
		}
		path += fe.path()
	}
	kind := ErrSyntax
	var te *typeError
	if errors.As(err, &te) {
		kind = ErrType
	}
	p.res.Errors = append(p.res.Errors, &cdm.RecordError{Origin: o, Path: path, Err: &problem{kind, msg}})
}

// ParseBundle reads one JSON document: a Bundle, or a single resource. A
// Bundle with malformed JSON is rejected whole (one error, no records from
// that file); other bad entries are reported one by one.
func (p *Parser) ParseBundle(name string, data []byte) {
	p.res.Files++
	p.res.JSONBytes += int64(len(data))
	s := &p.sc
	s.buf, s.pos = data, 0
	mark := p.mark()
	o := cdm.Origin{File: name, Entry: -1}
	rt, err := resourceType(s)
	if err != nil {
		p.syntaxFail(o, data, err, "")
		return
	}
	if rt != "Bundle" {
		err = p.resource(s, loc{origin: o})
		if err == nil {
			err = s.end()
		}
	} else {
		err = p.bundle(s, name)
	}
	p.resolve()
	if err != nil {
		p.rollback(mark)
		var fe *fieldError
		path := ""
		if errors.As(err, &fe) {
			path = fe.path()
			err = fe.err
		}
		o.Entry = p.entry
		if p.entry >= 0 {
			path = strings.TrimPrefix(path, "entry["+strconv.Itoa(p.entry)+"]")
			path = strings.TrimPrefix(path, ".")
		}
		p.syntaxFail(o, data, err, path)
	}
	s.buf = nil
}

// bundle reads a Bundle document; p.entry tracks the entry being read.
func (p *Parser) bundle(s *scanner, name string) error {
	p.entry = -1
	err := s.object(func(k []byte) error {
		if string(k) != "entry" {
			return s.skip()
		}
		return at("entry", s.array(func(i int) error {
			p.entry = i
			s.ws()
			start := s.pos
			l := loc{origin: cdm.Origin{File: name, Entry: i}, path: "resource"}
			// fullUrl may follow resource: find it first.
			fu, err := fullURL(s)
			if err != nil {
				var se *syntaxError
				if errors.As(err, &se) {
					return at(idx(i), err)
				}
				if err := s.skip(); err != nil {
					return at(idx(i), err)
				}
				p.fail(loc{origin: l.origin}, err, s.buf[start:s.pos])
				return nil
			}
			l.fullURL = fu
			seen := false
			err = s.object(func(k []byte) error {
				if string(k) != "resource" {
					return s.skip()
				}
				seen = true
				return at("resource", p.resource(s, l))
			})
			if err != nil {
				return at(idx(i), err)
			}
			if !seen {
				p.res.Skipped["(entry without resource)"]++
			}
			p.entry = -1
			return nil
		}))
	})
	if err == nil {
		err = s.end()
	}
	return err
}

// fullURL finds an entry's fullUrl without moving the scanner.
func fullURL(s *scanner) (string, error) {
	start := s.pos
	defer func() { s.pos = start }()
	var u string
	var e errs
	err := s.object(func(k []byte) error {
		if string(k) != "fullUrl" {
			if err := s.skip(); err != nil {
				return at(string(k), err)
			}
			return nil
		}
		var err error
		u, err = s.text()
		return e.keep("fullUrl", err)
	})
	if err != nil {
		return "", err
	}
	return u, e.bad
}

// mark/rollback undo the records of one input (a Bundle, an NDJSON line).
type mark struct {
	batch    cdm.Mark
	patients int
	meds     int
	idents   int
}

func (p *Parser) mark() mark {
	return mark{batch: p.res.Mark(), patients: len(p.res.Records.Patients), meds: len(p.waitingMeds), idents: len(p.byIdent)}
}

func (p *Parser) rollback(m mark) {
	for _, pt := range p.res.Records.Patients[m.patients:] {
		delete(p.res.Addresses, pt.ID)
	}
	p.res.Rollback(m.batch)
	p.waitingMeds = p.waitingMeds[:m.meds]
	p.byIdent = p.byIdent[:m.idents]
	p.waitFrom = min(p.waitFrom, m.meds)
}

// ParseNDJSON reads newline-delimited resources (FHIR Bulk Data). Each bad
// line is one error naming the line; good lines are kept. Blank lines are
// ignored.
func (p *Parser) ParseNDJSON(name string, r io.Reader) error {
	p.res.Files++
	br := bufio.NewReaderSize(r, 1<<20)
	s := &p.sc
	var long []byte
	for line := 1; ; line++ {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = br.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("fhir: read %s: %w", name, err)
		}
		p.res.JSONBytes += int64(len(b))
		if len(bytes.TrimSpace(b)) > 0 {
			p.line(s, name, line, b)
		}
		if err != nil {
			return nil
		}
	}
}

func (p *Parser) line(s *scanner, name string, line int, b []byte) {
	s.buf, s.pos = b, 0
	o := cdm.Origin{File: name, Line: line, Entry: -1}
	mark := p.mark()
	err := p.resource(s, loc{origin: o})
	if err == nil {
		err = s.end()
	}
	p.resolve()
	if err != nil {
		p.rollback(mark)
		p.syntaxFail(o, b, err, "")
		p.res.Errors[len(p.res.Errors)-1].Raw = bytes.Clone(b)
	}
	s.buf = nil
}
