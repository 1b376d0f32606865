package fhir

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/fedstat/fedstat/internal/cdm"
)

func strconvQuote(s string) string { return strconv.Quote(s) }

// Parser reads FHIR inputs into one Result. Feed it files with ParsePath,
// ParseBundle or ParseNDJSON, then take Result. It is not safe for
// concurrent use; run one Parser per goroutine and merge results if needed.
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
	}
}

// Result returns everything read so far. The parser must not be used
// afterwards.
func (p *Parser) Result() *Result { return p.res }

func (p *Parser) pending(ref string, table *cdm.TableSchema, index int) {
	if strings.HasPrefix(ref, "urn:") {
		p.waiting = append(p.waiting, pendingRef{table, index})
	}
}

// resolve turns the waiting bundle-local references into patient ids: the
// id of the Patient whose entry has that fullUrl, else (urn:uuid:X) X.
func (p *Parser) resolve() {
	for _, w := range p.waiting {
		ref := w.table.PatientRef(&p.res.Records, w.index)
		if id, ok := p.bundleURLs[*ref]; ok {
			*ref = id
		} else if rest, ok := strings.CutPrefix(*ref, "urn:uuid:"); ok {
			*ref = rest
		}
	}
	p.waiting = p.waiting[:0]
	clear(p.bundleURLs)
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
}

func (p *Parser) mark() mark {
	return mark{batch: p.res.Mark(), patients: len(p.res.Records.Patients)}
}

func (p *Parser) rollback(m mark) {
	for _, pt := range p.res.Records.Patients[m.patients:] {
		delete(p.res.Addresses, pt.ID)
	}
	p.res.Rollback(m.batch)
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

// ParsePath reads a file, a directory (recursively, in name order, hidden
// files skipped) or a .tar.gz/.tgz archive. Files are recognised by name:
// *.json (Bundle or single resource), *.ndjson and *.jsonl (NDJSON), any of
// these with .gz, and .csv and CDM-row NDJSON named by table (patients.ndjson)
// through Options.Other. Read errors of the
// file system are returned; problems in the data go into the Result.
func (p *Parser) ParsePath(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("fhir: %w", err)
	}
	if st.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("fhir: %w", err)
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			if err := p.ParsePath(filepath.Join(path, e.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("fhir: %w", err)
	}
	defer f.Close()
	return p.ParseReader(path, &progressReader{r: f, fn: p.opts.Progress})
}

// Kind of an input file by name.
func kindOf(name string) (kind string, gz bool) {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		return "tar", true
	case strings.HasSuffix(n, ".tar"):
		return "tar", false
	}
	if strings.HasSuffix(n, ".gz") {
		gz = true
		n = strings.TrimSuffix(n, ".gz")
	}
	switch {
	case strings.HasSuffix(n, ".ndjson"), strings.HasSuffix(n, ".jsonl"):
		if cdmTableName(n) {
			return "other", gz // CDM rows as NDJSON (fedstat synth)
		}
		return "ndjson", gz
	case strings.HasSuffix(n, ".json"):
		return "json", gz
	case strings.HasSuffix(n, ".csv"):
		return "other", gz
	}
	return "", gz
}

// cdmTableName reports whether a .ndjson/.jsonl name stands for a CDM
// table (patients.ndjson, site1_conditions.jsonl): such files hold CDM rows,
// not FHIR resources (FHIR Bulk Data files are named by resource type,
// Patient.ndjson, Condition.000.ndjson).
func cdmTableName(n string) bool {
	base := filepath.Base(n)
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".ndjson"), ".jsonl")
	for _, s := range cdm.Schema {
		if base == s.Name || strings.HasSuffix(base, "_"+s.Name) || strings.HasSuffix(base, "-"+s.Name) {
			return true
		}
	}
	return false
}

// ParseReader reads one input (any kind ParsePath accepts except a
// directory) from r; name is used to tell the kind and in errors.
func (p *Parser) ParseReader(name string, r io.Reader) error {
	kind, gz := kindOf(name)
	if kind == "" {
		p.res.Errors = append(p.res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: name, Entry: -1},
			Err: &problem{ErrFormat, "unsupported file (want .json, .ndjson, .jsonl, .csv, optionally .gz, or .tar.gz)"}})
		return nil
	}
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			p.res.Errors = append(p.res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: name, Entry: -1},
				Err: &problem{ErrFormat, "not gzip data: " + err.Error()}})
			return nil
		}
		defer zr.Close()
		r = zr
	}
	switch kind {
	case "tar":
		return p.tar(name, r)
	case "ndjson":
		return p.ParseNDJSON(name, r)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("fhir: read %s: %w", name, err)
	}
	if kind == "other" {
		p.res.Files++
		if p.opts.Other == nil {
			p.res.Errors = append(p.res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: name, Entry: -1},
				Err: &problem{ErrFormat, "unsupported file here (CSV is read by the node import command)"}})
			return nil
		}
		return p.opts.Other(name, data)
	}
	p.ParseBundle(name, data)
	return nil
}

func (p *Parser) tar(name string, r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("fhir: read %s: %w", name, err)
		}
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(filepath.Base(h.Name), ".") {
			continue
		}
		if err := p.ParseReader(name+"/"+h.Name, tr); err != nil {
			return err
		}
	}
}

type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if pr.fn != nil && n > 0 {
		pr.fn(int64(n))
	}
	return n, err
}

// ParseFiles reads the given paths with a new Parser and returns the
// result: the convenience entry point for callers that only want records
// (the demo, tools).
func ParseFiles(o Options, paths ...string) (*Result, error) {
	p := NewParser(o)
	for _, path := range paths {
		if err := p.ParsePath(path); err != nil {
			return nil, err
		}
	}
	return p.Result(), nil
}
