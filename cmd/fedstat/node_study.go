package main

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node/admin"
)

// importStudy is `fedstat node import --study NAME --schema FILE data.csv`.
func importStudy(cmd *cobra.Command, o admin.ImportOptions, study, schemaPath, format string, args []string) error {
	if study == "" || schemaPath == "" {
		return &usageError{"node import: --study and --schema go together"}
	}
	if len(args) != 1 {
		return &usageError{"node import: --study imports exactly one CSV file"}
	}
	for _, f := range []string{"quarantine", "region-rule", "table"} {
		if cmd.Flags().Changed(f) {
			return &usageError{"node import: --" + f + " is for CDM records, not --study (a study is imported whole)"}
		}
	}
	schema, err := cdm.ReadStudySchema(schemaPath, study)
	if err != nil {
		return err
	}
	sum, err := admin.ImportStudy(cmd.Context(), o, schema, args[0])
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	state := "unchanged (identical to the stored study)"
	switch {
	case sum.Changed && sum.Replaced:
		state = "replaced the stored study"
	case sum.Changed:
		state = "added"
	}
	fmt.Fprintf(out, "study %s: %d rows of %d persons from %s, %s\n", sum.Name, sum.Rows, sum.Persons, sum.Source, state)
	cols := make([]string, 0, len(sum.OutOfRange))
	for c := range sum.OutOfRange {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	for _, c := range cols {
		fmt.Fprintf(out, "  %s: %d values outside the schema range (queries clamp them)\n", c, sum.OutOfRange[c])
	}
	return nil
}
