package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/internal/fhir"
	"github.com/fedstat/fedstat/node/internal/ingest"
)

// ParseFHIR parses FHIR R4 files (Bundles, Bulk NDJSON, .tar.gz of either)
// into records without storing them, deriving regions by regionRule (see
// fhir.ParseRegionRule). The demo uses it to split a data set across nodes.
// It reads what ParseFiles reads. Any bad record is an error listing the
// first problems.
func ParseFHIR(ctx context.Context, regionRule string, paths ...string) (*cdm.Records, error) {
	rule, err := fhir.ParseRegionRule(regionRule)
	if err != nil {
		return nil, err
	}
	res, err := ingest.Read(ctx, ingest.Options{Region: rule}, paths)
	if err != nil {
		return nil, err
	}
	if len(res.Errors) > 0 {
		errs := make([]error, 0, 5)
		for i, e := range res.Errors {
			if i == 5 {
				break
			}
			errs = append(errs, e)
		}
		return nil, fmt.Errorf("%w: %d bad records: %w", ErrBadInput, len(res.Errors), errors.Join(errs...))
	}
	return &res.Records, nil
}

// FHIRResources returns the FHIR resource types an import reads into the
// data model, in the order of the FHIR decoder's mapping; other types are
// skipped and counted.
func FHIRResources() []string {
	r, _ := fhir.Resources()
	return r
}
