package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/csvimport"
	"github.com/fedstat/fedstat/node/internal/fhir"
	"github.com/fedstat/fedstat/node/internal/ingest"
)

// DryRun is what an import of some files would do, found without writing
// anything (DryRunImport): what would be imported by table, what would be
// skipped and why, and which records are bad and why, by FHIR resource
// type (or CDM table, for CSV rows).
type DryRun struct {
	DataDir string `json:"data_dir"`
	// Store says what DataDir holds: "missing" (the import would create
	// the directory), "empty" (no store yet) or "present" (a store, which
	// a dry run does not open: see UnknownPatients).
	Store string `json:"store"`
	// Files, Bytes and JSONBytes are as in ImportSummary.
	Files     int   `json:"files"`
	Bytes     int64 `json:"bytes"`
	JSONBytes int64 `json:"json_bytes"`
	// Tables lists, for every table of the data model, the good records
	// the import would store (before comparing with the store).
	Tables []DryRunTable `json:"tables"`
	// Skipped lists what the import would skip without error, by resource
	// type and reason, most first.
	Skipped []DryRunCount `json:"skipped"`
	// Bad lists the bad records by resource type (or table) and reason,
	// most first; BadTotal counts them. Errors gives the first MaxErrors
	// with their file, line or entry, and field.
	Bad      []DryRunCount `json:"bad"`
	BadTotal int           `json:"bad_total"`
	Errors   []string      `json:"errors"`
	// UnknownPatients counts the good records whose patient is not in the
	// files. Without a store they are bad records (counted in Bad and
	// BadTotal too). With a store (Store "present") an import accepts them
	// when the store has their patient, which a dry run does not check:
	// they are counted in Tables, and listed here only.
	UnknownPatients int `json:"unknown_patients"`
	// NoRegion counts FHIR patients whose address gave no region by the
	// region rule.
	NoRegion int `json:"no_region"`
	// Duplicates counts records given more than once (same table and id):
	// the import keeps the last.
	Duplicates int `json:"duplicates"`
	// Quarantine is ImportOptions.Quarantine: where the bad records would
	// go (nothing is written in a dry run).
	Quarantine string `json:"quarantine,omitempty"`
	// WouldFail: the import would refuse the whole input (bad records and
	// no quarantine file).
	WouldFail bool `json:"would_fail"`
}

// DryRunTable is one table of a dry run.
type DryRunTable struct {
	Table string `json:"table"`
	// Resource is the FHIR resource type read into the table ("" for
	// tables only CSV files fill).
	Resource string `json:"resource,omitempty"`
	Records  int    `json:"records"`
}

// DryRunCount is a number of records of one type skipped or refused for
// one reason.
type DryRunCount struct {
	// Type is the FHIR resource type, or for CSV rows the table, or
	// "(file)" for an input that could not be read as its name says.
	Type   string `json:"type"`
	Reason string `json:"reason"`
	Count  int    `json:"count"`
}

// Records is the number of good records the import would store.
func (d *DryRun) Records() int {
	n := 0
	for _, t := range d.Tables {
		n += t.Records
	}
	return n
}

// resourceOf gives the FHIR resource type read into each table.
var resourceOf = func() map[string]string {
	m := map[string]string{}
	rs, ts := fhir.Resources()
	for i := range rs {
		m[ts[i]] = rs[i]
	}
	return m
}()

// Skip reasons.
const (
	reasonNotInModel = "resource type not in the data model"
	reasonStatus     = "status %s: not imported (docs/data.md, FHIR elements)"
	reasonMedication = "Medication resource: read to resolve medicationReference, not a record"
	reasonNoResource = "Bundle entry without a resource (a DELETE request)"
)

// skipReason names why the importer skipped what the key of
// ingest.Result.Skipped counts: a resource type ("Claim"), a type with the
// status that excluded it ("Condition (entered-in-error)"), a Medication,
// or entries without a resource.
func skipReason(key string, n int) DryRunCount {
	switch typ, status, ok := strings.Cut(key, " ("); {
	case ok && strings.HasSuffix(status, ")") && typ != "":
		return DryRunCount{Type: typ, Reason: fmt.Sprintf(reasonStatus, strings.TrimSuffix(status, ")")), Count: n}
	case key == "Medication":
		return DryRunCount{Type: key, Reason: reasonMedication, Count: n}
	case key == "(entry without resource)":
		return DryRunCount{Type: key, Reason: reasonNoResource, Count: n}
	}
	return DryRunCount{Type: key, Reason: reasonNotInModel, Count: n}
}

// DryRunImport reads the files at paths as Import would and says what the
// import would do, without writing anything: no directory, store or
// quarantine file is created, and the store is not opened (so a dry run
// also works while the daemon runs). o is as for Import; o.DataDir may
// name a directory that does not exist yet.
func DryRunImport(ctx context.Context, o ImportOptions, paths []string) (*DryRun, error) {
	o, rule, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, errors.New("admin: no input files")
	}
	d := &DryRun{DataDir: o.DataDir, Store: storeState(o.DataDir), Quarantine: o.Quarantine}
	res, noRegion, err := readInput(ctx, o, rule, paths)
	if err != nil {
		return nil, err
	}
	d.Files, d.Bytes, d.JSONBytes, d.NoRegion = res.Files, res.Bytes, res.JSONBytes, noRegion
	for typ, n := range res.Skipped {
		d.Skipped = append(d.Skipped, skipReason(typ, n))
	}
	// The patient check against an empty store: records whose patient is
	// not in the files become bad records, as an import into a new store
	// would make them.
	parsed := len(res.Errors)
	withUnknown := res.Records
	res.CheckPatients(nil)
	d.UnknownPatients = len(res.Errors) - parsed
	bad := res.Errors
	if d.Store == "present" {
		// They may name stored patients: an import decides; keep them.
		bad = res.Errors[:parsed]
		res.Records = withUnknown
	}
	counts := res.Records.TableCounts()
	for _, t := range cdm.TableNames() {
		d.Tables = append(d.Tables, DryRunTable{Table: t, Resource: resourceOf[t], Records: counts[t]})
	}
	d.Duplicates = duplicates(&res.Records)
	byReason := map[[2]string]int{}
	for _, e := range bad {
		byReason[[2]string{recordType(e), badReason(e)}]++
	}
	for k, n := range byReason {
		d.Bad = append(d.Bad, DryRunCount{Type: k[0], Reason: k[1], Count: n})
	}
	d.BadTotal = len(bad)
	for _, e := range bad[:min(len(bad), o.MaxErrors)] {
		d.Errors = append(d.Errors, e.Error())
	}
	d.WouldFail = d.BadTotal > 0 && o.Quarantine == ""
	sortCountsBy(d.Skipped)
	sortCountsBy(d.Bad)
	return d, nil
}

// storeState says what dir holds, without creating or opening anything.
func storeState(dir string) string {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "missing"
	}
	if st, err := os.Stat(KVDir(dir)); err == nil && st.IsDir() {
		return "present"
	}
	return "empty"
}

// duplicates counts the records given more than once (same table and id).
func duplicates(r *cdm.Records) int {
	n := 0
	for ti := range cdm.Schema {
		t := &cdm.Schema[ti]
		seen := make(map[string]struct{}, t.Len(r))
		for i := range t.Len(r) {
			id, _ := t.Key(r, i)
			if _, ok := seen[id]; ok {
				n++
				continue
			}
			seen[id] = struct{}{}
		}
	}
	return n
}

// recordType is the FHIR resource type of a bad record, read from its
// source text; the table, for CSV rows and records of unknown patients;
// "(file)" for an input that could not be read; for a malformed line of
// a Bulk Data file, the type its name gives; else "(unreadable)".
func recordType(e *cdm.RecordError) string {
	if errors.Is(e.Err, ingest.ErrFormat) {
		return "(file)"
	}
	var v struct {
		ResourceType string `json:"resourceType"`
		Resource     struct {
			ResourceType string `json:"resourceType"`
		} `json:"resource"`
		Table string `json:"table"`
	}
	if json.Unmarshal(e.Raw, &v) == nil {
		switch {
		case v.ResourceType != "":
			return v.ResourceType
		case v.Resource.ResourceType != "":
			return v.Resource.ResourceType
		case v.Table != "":
			// A record of an unknown patient (Result.CheckPatients): its
			// resource type when it came from FHIR.
			if _, cdmFile := cdm.TableOfFile(e.File); !cdmFile && resourceOf[v.Table] != "" {
				return resourceOf[v.Table]
			}
			return v.Table
		}
	}
	if t, ok := cdm.TableOfFile(e.File); ok {
		return t
	}
	// FHIR Bulk Data files are named by resource type: Observation.ndjson,
	// Observation.000.ndjson.gz.
	if typ, _, _ := strings.Cut(filepath.Base(e.File), "."); typ != "" && typ[0] >= 'A' && typ[0] <= 'Z' {
		return typ
	}
	return "(unreadable)"
}

// badKinds are the kinds of bad records, matched in this order; the
// reason is the kind's text without its package.
var badKinds = []error{
	fhir.ErrSyntax, fhir.ErrType, fhir.ErrMissing, fhir.ErrDate, fhir.ErrValue, fhir.ErrReference,
	csvimport.ErrTable, csvimport.ErrHeader, csvimport.ErrColumns, csvimport.ErrSyntax,
	csvimport.ErrMissing, csvimport.ErrDate, csvimport.ErrValue, ingest.ErrFormat,
}

// badReason says why a record is bad, in words that group: the kind of
// problem and the field.
func badReason(e *cdm.RecordError) string {
	if errors.Is(e.Err, cdm.ErrUnknownPatient) {
		return "its patient is not in these files (and the data directory has no store yet)"
	}
	reason := "bad record"
	for _, k := range badKinds {
		if errors.Is(e.Err, k) {
			_, reason, _ = strings.Cut(k.Error(), ": ")
			break
		}
	}
	if e.Path != "" {
		reason += " (" + e.Path + ")"
	}
	return reason
}

func sortCountsBy(cs []DryRunCount) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Count != cs[j].Count {
			return cs[i].Count > cs[j].Count
		}
		if cs[i].Type != cs[j].Type {
			return cs[i].Type < cs[j].Type
		}
		return cs[i].Reason < cs[j].Reason
	})
}
