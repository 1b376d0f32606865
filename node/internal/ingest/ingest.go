// Package ingest reads the inputs of an import into one cdm.Batch: it owns
// the sources (files, directories walked in name order with dot files
// skipped, .tar archives, gzip compression, progress reporting), tells each
// input's format in one place (formatOf), and hands the input to that
// format's decoder, which appends records, their origins and the bad
// records to the batch through the table registry (cdm.Schema):
//
//	*.json                               FHIR R4 Bundle or one resource   fhir.Parser.ParseBundle
//	*.ndjson, *.jsonl                    FHIR Bulk Data NDJSON            fhir.Parser.ParseNDJSON
//	*.ndjson, *.jsonl named by a table   CDM rows as JSON objects         csvimport.ParseNDJSON
//	*.csv                                CDM rows with a header row       csvimport.Parse
//	any of these + .gz; .tar, .tar.gz, .tgz of them
//
// A study table's CSV is read by its schema (ReadStudy, studycsv).
//
// The data path of an import is: source (this package) -> decoder
// (node/internal/fhir, csvimport, studycsv) -> registry (cdm.Batch, whose
// records are cdm.Records) -> patient check (Result.CheckPatients) ->
// staging and the store (node/internal/store) -> the columnar copy
// (cdm.Builder). node/admin drives it.
//
// Bad records are *cdm.RecordError naming the file and line (or entry and
// field path), in input order. The package neither logs raw values nor
// stores anything.
package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/node/internal/csvimport"
	"github.com/fedstat/fedstat/node/internal/fhir"
	"github.com/fedstat/fedstat/node/internal/studycsv"
)

// ErrFormat marks an input of no known format (by its name) or not the
// compression its name says; matched with errors.Is on a RecordError.
var ErrFormat = errors.New("ingest: unsupported input")

// Options configure Read.
type Options struct {
	// Region derives FHIR patients' regions from their addresses, parsed
	// once by the caller (fhir.ParseRegionRule). Defaults to the zero rule
	// (empty regions).
	Region fhir.RegionRule
	// Table names the table of CDM files (CSV, NDJSON) whose name does not
	// tell it. Defaults to the file name (patients.csv,
	// site1_conditions.csv, ...).
	Table string
	// Progress, when set, receives a progress bar (a terminal). Without
	// it, progress goes to Logger every few seconds, when Logger is set.
	Progress io.Writer
	Logger   *slog.Logger
	// OnRead, when set, is called with the number of input bytes (as read
	// from disk, compressed or not) consumed since the last call.
	OnRead func(n int64)
	// CodeMap, when set, is the node admin's map of local codes to
	// standard ones: every record of a coded table whose codings it maps
	// also carries the standard codes (applyCodeMap). Defaults to none.
	CodeMap *terminology.CodeMap
}

// Result is what Read read.
type Result struct {
	// Batch holds the good records with their origins, and the bad
	// records (Errors) in input order.
	cdm.Batch
	// Addresses holds each FHIR patient's address (the one the region
	// rule used), by patient id, so callers can split data by city or
	// postcode.
	Addresses map[string]fhir.Address
	// Skipped counts FHIR resources of types outside the model, by type.
	Skipped map[string]int
	// Files is the number of inputs read (archive members count).
	Files int
	// Manifests is the number of FHIR Bulk Data manifests read (their
	// listed files count in Files).
	Manifests int
	// Bytes is the size of the inputs on disk; JSONBytes the uncompressed
	// FHIR JSON read.
	Bytes     int64
	JSONBytes int64

	formats map[string]format // by input name: how the patient check names the field
}

// format is what an input is, by its name (formatOf).
type format uint8

const (
	formatUnknown    format = iota
	formatFHIRJSON          // a Bundle or one resource
	formatFHIRNDJSON        // Bulk Data
	formatCDMCSV            // CDM rows with a header row
	formatCDMNDJSON         // CDM rows as JSON objects
	formatTar               // an archive of inputs
)

// formatOf tells an input's format by its name, and whether it is gzip
// compressed: the one place formats are recognised.
func formatOf(name string) (f format, gz bool) {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		return formatTar, true
	case strings.HasSuffix(n, ".tar"):
		return formatTar, false
	}
	if strings.HasSuffix(n, ".gz") {
		gz = true
		n = strings.TrimSuffix(n, ".gz")
	}
	switch {
	case strings.HasSuffix(n, ".ndjson"), strings.HasSuffix(n, ".jsonl"):
		// FHIR Bulk Data files are named by resource type (Patient.ndjson,
		// Condition.000.ndjson); files named by a CDM table
		// (patients.ndjson, site1_conditions.jsonl) hold CDM rows
		// (fedstat synth --format ndjson).
		if _, ok := cdm.TableOfFile(n); ok {
			return formatCDMNDJSON, gz
		}
		return formatFHIRNDJSON, gz
	case strings.HasSuffix(n, ".json"):
		return formatFHIRJSON, gz
	case strings.HasSuffix(n, ".csv"):
		return formatCDMCSV, gz
	}
	return formatUnknown, gz
}

// reader reads the inputs of one import into one Result.
type reader struct {
	o    Options
	res  *Result
	fhir *fhir.Parser
}

// Read reads the inputs at paths (files, directories, archives) into one
// Result: all of it, or an error for inputs that cannot be read at all
// (file system errors, cancellation). Problems in the data are bad records
// in Result.Errors. Records naming unknown patients are not checked here
// (Result.CheckPatients).
func Read(ctx context.Context, o Options, paths []string) (*Result, error) {
	total, err := inputSize(paths)
	if err != nil {
		return nil, err
	}
	prog := newProgress(ctx, o, total)
	defer prog.done()
	r := &reader{o: o, res: &Result{Bytes: total, formats: map[string]format{}}}
	r.o.OnRead = prog.add
	r.fhir = fhir.NewParser(fhir.Options{Region: o.Region, Into: &r.res.Batch})
	for _, path := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.path(path); err != nil {
			return nil, err
		}
	}
	fr := r.fhir.Result()
	r.res.Addresses, r.res.Skipped, r.res.JSONBytes = fr.Addresses, fr.Skipped, fr.JSONBytes
	canonicalCodes(&r.res.Records)
	applyCodeMap(&r.res.Records, o.CodeMap)
	return r.res, nil
}

// fail records an input that cannot be read as its name says.
func (r *reader) fail(name, msg string) {
	r.res.Errors = append(r.res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: name, Entry: -1},
		Err: &problem{ErrFormat, msg}})
}

// input reads one input (any format but a directory) from in; name is used
// to tell the format and in errors.
func (r *reader) input(name string, in io.Reader) error {
	f, gz := formatOf(name)
	if f == formatUnknown {
		r.fail(name, "unsupported file (want .json, .ndjson, .jsonl, .csv, optionally .gz, or .tar.gz)")
		return nil
	}
	if gz {
		zr, err := gunzip(in)
		if err != nil {
			r.fail(name, "not gzip data: "+err.Error())
			return nil
		}
		defer zr.Close()
		in = zr
	}
	r.res.formats[name] = f
	switch f {
	case formatTar:
		return r.tar(name, in)
	case formatFHIRNDJSON:
		r.res.Files++
		return r.fhir.ParseNDJSON(name, in)
	}
	// The other formats are read whole first: a read error (a damaged
	// archive) is then the import's error, not a bad record.
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("ingest: read %s: %w", name, err)
	}
	r.res.Files++
	switch f {
	case formatCDMCSV:
		csvimport.Parse(name, bytes.NewReader(data), r.o.Table, &r.res.Batch)
	case formatCDMNDJSON:
		csvimport.ParseNDJSON(name, bytes.NewReader(data), r.o.Table, &r.res.Batch)
	default:
		if _, ok := manifestIn(data); ok {
			// A manifest inside an archive: its files are members of the
			// same archive, read by their own names.
			r.res.Manifests++
			return nil
		}
		r.fhir.ParseBundle(name, data)
	}
	return nil
}

// failAt records a bad input naming a field of it.
func (r *reader) failAt(name, path, msg string) {
	r.res.Errors = append(r.res.Errors, &cdm.RecordError{Origin: cdm.Origin{File: name, Entry: -1}, Path: path,
		Err: &problem{ErrFormat, msg}})
}

// problem is an error with a fixed message that matches a sentinel.
type problem struct {
	kind error
	msg  string
}

func (p *problem) Error() string        { return p.msg }
func (p *problem) Is(target error) bool { return target == p.kind }

// CheckPatients moves the records whose patient is neither a good patient
// of the input nor in stored (cdm.Records.UnknownPatients) to the bad
// records, each naming its file and line (or entry) and the field that
// names the patient.
func (res *Result) CheckPatients(stored *cdm.Tables) {
	recs := &res.Records
	known := recs.PatientKnown(stored)
	refs := recs.UnknownPatients(known)
	if len(refs) == 0 {
		return
	}
	for _, ref := range refs {
		id, pid := ref.Table.Key(recs, ref.Index)
		o := res.Origins.Of(ref.Table.Name)[ref.Index]
		raw, _ := json.Marshal(map[string]string{"table": ref.Table.Name, "id": id, "patient_id": pid})
		res.Errors = append(res.Errors, &cdm.RecordError{Origin: o, Path: res.patientField(o), Raw: raw,
			Err: fmt.Errorf("%w %q: not in this import nor in the store", cdm.ErrUnknownPatient, pid)})
	}
	kept, origins := recs.FilterPatients(&res.Origins, known)
	res.Records, res.Origins = *kept, *origins
}

// patientField is the field that names the patient of a record from o.
func (res *Result) patientField(o cdm.Origin) string {
	switch {
	case o.Entry >= 0:
		return "resource.subject.reference"
	case res.formats[o.File] == formatCDMCSV:
		return "patient_id"
	}
	// FHIR NDJSON and single resources; CDM-row NDJSON too, as ever.
	return "subject.reference"
}

// ReadStudy reads the study CSV file at path by its schema (studycsv) into
// memory: bad cells are all in the result's Errors and the caller refuses
// the file. An unreadable file is the file system's error as it is. Large
// files go through OpenStudy.
func ReadStudy(path string, schema *cdm.StudySchema) (*studycsv.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return studycsv.Read(f, path, schema)
}

// StudyFile is a study CSV file being streamed (OpenStudy).
type StudyFile struct {
	*studycsv.Reader
	f    *os.File
	z    io.ReadCloser
	prog *progress
}

// OpenStudy opens the study CSV file at path (gzip-compressed when its
// name ends in .gz) for reading chunk by chunk, with progress as Options
// say (a bar on Progress, else a log line every few seconds on Logger;
// only Progress, Logger and OnRead apply). A bad header is a
// *cdm.RecordError; an unreadable file the file system's error. Close it.
func OpenStudy(ctx context.Context, o Options, path string, schema *cdm.StudySchema) (*StudyFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	sf := &StudyFile{f: f, prog: newProgress(ctx, o, fi.Size())}
	var in io.Reader = &progressReader{r: f, fn: sf.prog.add}
	if strings.HasSuffix(path, ".gz") {
		if sf.z, err = gunzip(in); err != nil {
			sf.Close()
			return nil, &cdm.RecordError{Origin: cdm.Origin{File: path, Entry: -1}, Err: &problem{ErrFormat, "not gzip: " + err.Error()}}
		}
		in = sf.z
	}
	if sf.Reader, err = studycsv.NewReader(bufio.NewReaderSize(in, 1<<20), path, schema); err != nil {
		sf.Close()
		return nil, err
	}
	return sf, nil
}

// Close ends the progress display and closes the file.
func (sf *StudyFile) Close() error {
	sf.prog.done()
	if sf.z != nil {
		sf.z.Close()
	}
	return sf.f.Close()
}
