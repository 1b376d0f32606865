package admin

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
	"time"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/terminology"
	"github.com/fedstat/fedstat/node/internal/fhir"
	"github.com/fedstat/fedstat/node/internal/ingest"
	"github.com/fedstat/fedstat/node/internal/store"
)

// ImportOptions configure Import.
type ImportOptions struct {
	// DataDir is the node's data directory. Required by Import (not by
	// ImportInto).
	DataDir string
	// KeyFile is the operator key file (see ReadKeyFile). Defaults to none
	// (no encryption at rest).
	KeyFile string
	// RegionRule derives a patient's region from the address of FHIR
	// Patients: "state", "city", "postal:N" (first N characters of the
	// postal code) or "fixed:CODE". Defaults to "state". CSV patients carry
	// their region in the region column.
	RegionRule string
	// Table names the table of CSV files whose name does not tell it.
	// Defaults to the file name (patients.csv, site1_conditions.csv, ...).
	Table string
	// Quarantine, when set, is a file that receives the bad records (one
	// JSON object per line with the error) while the good ones are
	// imported. The file is created with mode 0600 (it holds patient
	// data) and replaced if it exists. Defaults to none: any bad record
	// fails the whole import and nothing is written.
	Quarantine string
	// MaxErrors caps the errors listed in the returned error (the total
	// is always given). Defaults to 20.
	MaxErrors int
	// CodeMap is a CSV file of the node admin's map from local codes to
	// standard ones (terminology.ReadCodeMap: local_system, local_code,
	// system, code, display): a record coded only locally also carries the
	// standard codes it maps to. Defaults to none.
	CodeMap string
	// codeMap is CodeMap read (withDefaults).
	codeMap *terminology.CodeMap
	// Progress, when set, receives a progress bar (use it for a terminal).
	// Without it, progress goes to Logger every few seconds.
	Progress io.Writer
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Bulk imports for nodes larger than memory (see importBulk): the
	// patients' files as usual, every other file streamed in chunks into
	// column files on disk (store.ImportBulk) with memory bounded
	// independently of the number of rows. Only CDM CSV and CDM-row
	// NDJSON files; no Quarantine; not with KeyFile (column files are not
	// encrypted). Bulk records cannot be replaced one by one: correct them
	// by dropping the whole bulk import (DropBulk) and importing again.
	// Defaults to false.
	Bulk bool
	// ChunkRows is the number of records a bulk import reads at a time.
	// Defaults to ingest.DefaultChunkRows (65,536).
	ChunkRows int
}

// Bulk import errors.
var (
	ErrBulkEncrypted = errors.New("admin: a bulk import writes unencrypted column files; not with an operator key file")
	ErrBulkOptions   = errors.New("admin: a bulk import takes no quarantine")
	// ErrBulkBackup: Backup of a data directory with bulk imports (their
	// column files are not in a backup yet; copy the stopped directory).
	ErrBulkBackup = errors.New("admin: backup of bulk imports not supported")
)

// ImportSummary describes an import.
type ImportSummary struct {
	// Files is the number of input files read (archive members count).
	Files int `json:"files"`
	// Bytes is the input size on disk; JSONBytes the uncompressed FHIR
	// JSON read.
	Bytes     int64 `json:"bytes"`
	JSONBytes int64 `json:"json_bytes"`
	// Read counts the good records read, by table.
	Read map[string]int `json:"read"`
	// Skipped counts FHIR resources of types outside the model, by type.
	Skipped map[string]int `json:"skipped"`
	// Bad is the number of bad records; Quarantined how many of them went
	// to the quarantine file.
	Bad         int    `json:"bad"`
	Quarantined int    `json:"quarantined"`
	Quarantine  string `json:"quarantine,omitempty"`
	// NoRegion counts FHIR patients whose address gave no region.
	NoRegion int `json:"no_region"`
	// Added, Replaced and Unchanged count stored records by table.
	Added     map[string]int `json:"added"`
	Replaced  map[string]int `json:"replaced"`
	Unchanged map[string]int `json:"unchanged"`
	// Duplicates counts records given more than once (same table and id);
	// the last was kept.
	Duplicates int `json:"duplicates"`
	// Generation is the store generation the import committed (0: nothing
	// changed).
	Generation uint64 `json:"generation"`
	// Parse, Write and Build time the phases: reading the input, storing
	// durably, rebuilding the columnar copy.
	Parse time.Duration `json:"parse_ns"`
	Write time.Duration `json:"write_ns"`
	Build time.Duration `json:"build_ns"`
}

// ImportError is returned when an import has bad records and no
// quarantine: nothing was written. It lists the first errors.
type ImportError struct {
	Errors []*cdm.RecordError // the first MaxErrors, in input order
	Total  int
	// NoQuarantine is set for imports that have no quarantine (study
	// tables): the message then does not suggest one.
	NoQuarantine bool
}

func (e *ImportError) Error() string {
	var b strings.Builder
	hint := "fix them, or use --quarantine FILE to import the rest"
	if e.NoQuarantine {
		hint = "fix them"
	}
	fmt.Fprintf(&b, "%d bad record(s), nothing imported (%s):", e.Total, hint)
	for _, re := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(re.Error())
	}
	if e.Total > len(e.Errors) {
		fmt.Fprintf(&b, "\n  ... and %d more", e.Total-len(e.Errors))
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrBadInput) hold, and exposes the listed
// record errors.
func (e *ImportError) Unwrap() []error {
	out := []error{ErrBadInput}
	for _, re := range e.Errors {
		out = append(out, re)
	}
	return out
}

// Import opens the store of o.DataDir, imports the files at paths into it
// (see ImportInto) and closes it.
func Import(ctx context.Context, o ImportOptions, paths []string) (*ImportSummary, error) {
	o, rule, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Bulk && o.KeyFile != "" {
		return nil, ErrBulkEncrypted
	}
	s, db, err := OpenStore(ctx, OpenOptions{DataDir: o.DataDir, KeyFile: o.KeyFile, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	sum, err := importInto(ctx, s, o, rule, paths)
	if cerr := db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("admin: close: %w", cerr)
	}
	return sum, err
}

// withDefaults fills in o's defaults and parses its region rule, once.
func (o ImportOptions) withDefaults() (ImportOptions, fhir.RegionRule, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = 20
	}
	rule, err := regionRule(o.RegionRule)
	if err != nil {
		return o, rule, err
	}
	if o.CodeMap != "" {
		if o.codeMap, err = terminology.ReadCodeMap(o.CodeMap); err != nil {
			return o, rule, fmt.Errorf("admin: --code-map: %w", err)
		}
	}
	return o, rule, nil
}

// regionRule parses a region rule, "state" by default: the one parse of an
// import's or a parse's rule.
func regionRule(s string) (fhir.RegionRule, error) {
	if s == "" {
		s = "state"
	}
	return fhir.ParseRegionRule(s)
}

// ImportInto reads the files at paths (FHIR Bundles and NDJSON, CSV, .gz,
// .tar.gz archives, directories of these) and stores their records in s as
// one atomic import. Records whose patient is neither in the input nor in
// the store are bad records. With bad records and no o.Quarantine it
// returns an *ImportError and writes nothing; with o.Quarantine it writes
// the bad records there first and imports the rest. o.DataDir and
// o.KeyFile are ignored.
//
// The data path: node/internal/ingest reads the sources and hands each
// input to its format's decoder, which writes into one cdm.Batch through
// the table registry; the batch's patient check moves records of unknown
// patients to the bad records; the store stages, writes and commits the
// rest and swaps in the new columnar copy.
func ImportInto(ctx context.Context, s *store.Store, o ImportOptions, paths []string) (*ImportSummary, error) {
	o, rule, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return importInto(ctx, s, o, rule, paths)
}

func importInto(ctx context.Context, s *store.Store, o ImportOptions, rule fhir.RegionRule, paths []string) (*ImportSummary, error) {
	if len(paths) == 0 {
		return nil, errors.New("admin: no input files")
	}
	if o.Bulk {
		return importBulk(ctx, s, o, rule, paths)
	}
	t0 := time.Now()
	res, noRegion, err := readInput(ctx, o, rule, paths)
	if err != nil {
		return nil, err
	}
	sum := &ImportSummary{Files: res.Files, Bytes: res.Bytes, JSONBytes: res.JSONBytes, Skipped: res.Skipped, Parse: time.Since(t0), NoRegion: noRegion}
	res.CheckPatients(s.Tables())
	recs, bad := &res.Records, res.Errors
	sum.Read = recs.TableCounts()
	sum.Bad = len(bad)
	o.Logger.Info("admin: input read", "files", res.Files, "records", recs.Len(), "bad", len(bad), "parse", sum.Parse.Round(time.Millisecond))
	if len(bad) > 0 {
		if o.Quarantine == "" {
			return sum, &ImportError{Errors: bad[:min(len(bad), o.MaxErrors)], Total: len(bad)}
		}
		if err := writeQuarantine(o.Quarantine, bad); err != nil {
			return sum, err
		}
		sum.Quarantined, sum.Quarantine = len(bad), o.Quarantine
		o.Logger.Warn("admin: bad records quarantined", "records", len(bad), "file", o.Quarantine)
	}
	st, err := s.ImportRecords(ctx, recs, sourceOf(paths))
	if st != nil {
		sum.Added, sum.Replaced, sum.Unchanged = st.Added, st.Replaced, st.Unchanged
		sum.Duplicates, sum.Generation = st.Duplicates, st.Generation
		sum.Write, sum.Build = st.Write, st.Build
	}
	return sum, err
}

// readInput reads the files at paths as an import and its dry run both
// do, and counts the FHIR patients whose address gave no region.
func readInput(ctx context.Context, o ImportOptions, rule fhir.RegionRule, paths []string) (res *ingest.Result, noRegion int, err error) {
	res, err = ingest.Read(ctx, ingest.Options{Region: rule, Table: o.Table, CodeMap: o.codeMap, Progress: o.Progress, Logger: o.Logger}, paths)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("admin: %w", err)
	}
	for _, pt := range res.Records.Patients {
		if pt.Region == "" {
			if _, fromFHIR := res.Addresses[pt.ID]; fromFHIR {
				noRegion++
			}
		}
	}
	return res, noRegion, nil
}

func sourceOf(paths []string) string {
	s := strings.Join(paths, " ")
	if len(s) > 512 {
		s = s[:509] + "..."
	}
	return s
}

// quarantineLine is one line of a quarantine file.
type quarantineLine struct {
	File  string          `json:"file"`
	Line  int             `json:"line,omitempty"`
	Entry *int            `json:"entry,omitempty"`
	Path  string          `json:"path,omitempty"`
	Error string          `json:"error"`
	JSON  json.RawMessage `json:"record,omitempty"`
	Text  string          `json:"record_text,omitempty"`
}

// writeQuarantine writes the bad records durably (fsync) before anything
// is imported.
func writeQuarantine(path string, bad []*cdm.RecordError) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("admin: quarantine: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, e := range bad {
		q := quarantineLine{File: e.File, Line: e.Line, Path: e.Path, Error: e.Error()}
		if e.Entry >= 0 {
			entry := e.Entry
			q.Entry = &entry
		}
		if raw := bytes.TrimSpace(e.Raw); len(raw) > 0 {
			if json.Valid(raw) {
				q.JSON = raw
			} else {
				q.Text = string(raw)
			}
		}
		if err := enc.Encode(&q); err != nil {
			f.Close()
			return fmt.Errorf("admin: quarantine: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("admin: quarantine: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("admin: quarantine: %w", err)
	}
	return f.Close()
}

// ParseOptions configure ParseFiles.
type ParseOptions struct {
	// RegionRule as in ImportOptions. Defaults to "state".
	RegionRule string
	// Table as in ImportOptions.
	Table string
	// Progress, when set, is called with input bytes consumed.
	Progress func(n int64)
}

// ParseResult is what ParseFiles read: records with their origins, each
// FHIR patient's address (to split data by city or postcode), skipped
// resource counts and bad records.
type ParseResult = ingest.Result

// Address is a FHIR patient's address as the region rules see it.
type Address = fhir.Address

// ParseFiles reads the inputs Import accepts into records without a store
// (the demo splits the result across nodes and imports the parts with
// Store.ImportRecords). Bad records are in the result's Errors; the
// returned error is for unreadable files only. Records naming unknown
// patients are not checked here.
func ParseFiles(o ParseOptions, paths ...string) (*ParseResult, error) {
	rule, err := regionRule(o.RegionRule)
	if err != nil {
		return nil, err
	}
	res, err := ingest.Read(context.Background(), ingest.Options{Region: rule, Table: o.Table, OnRead: o.Progress}, paths)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	return res, nil
}
