package main

// `fedstat synth` writes synthetic records in the CSV form of the common data
// model (see synth.Files and docs/synth.md):
//
//	patients.csv      patient_id,birth_date,sex,region,death_date
//	conditions.csv    id,patient_id,code,system,onset_date,abatement_date
//	observations.csv  id,patient_id,code,system,date,value,unit
//	encounters.csv    id,patient_id,class,type_code,type_system,start_date,end_date
//	medications.csv   id,patient_id,code,system,authored_date
//
// with a header row, dates as YYYY-MM-DD (empty when missing), sex as
// female/male/other/unknown and code systems as URIs. `--format ndjson`
// writes the same columns as JSON objects, one a line.

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/shareddata"
	"github.com/fedstat/fedstat/internal/synth"
)

// synthCommand returns `fedstat synth`.
func synthCommand() *cobra.Command {
	var (
		patients  int
		seed      int64
		regions   []string
		start     string
		end       string
		idPrefix  string
		out       string
		format    string
		overwrite bool
	)
	c := &cobra.Command{
		Use:   "synth --patients N --out DIR [flags]",
		Short: "Generate realistic synthetic patient records (CDM CSV) for demos and tests",
		Long: `synth writes a synthetic population in the CSV form of fedstat's common data model,
ready for "fedstat node import". The same --seed and flags always give the same records.

The population follows the US census age/sex pyramid and carries type-2 diabetes (about
10% of adults, rising with age), hypertension (about 30% of adults) and asthma (about 8%);
seasonal influenza peaking every winter (real season peaks, the near-absent 2020-21
season), COVID-19 waves from March 2020, HbA1c results that track diabetes, blood
pressure, check-ups, prescriptions (metformin, lisinopril, albuterol) and deaths.
docs/synth.md lists every rate and code.

Files written to --out: patients, conditions, observations, encounters, medications
(.csv with a header row, or .ndjson). Columns:
  patients      patient_id,birth_date,sex,region,death_date
  conditions    id,patient_id,code,system,onset_date,abatement_date
  observations  id,patient_id,code,system,date,value,unit
  encounters    id,patient_id,class,type_code,type_system,start_date,end_date
  medications   id,patient_id,code,system,authored_date

Give every node its own --id-prefix (and seed) so that patient ids never collide
across nodes. A million patients (about 12 million rows) take a few seconds.`,
		Example: `  # 10,000 patients in the ten default states
  fedstat synth --patients 10000 --seed 1 --out data/node-a

  # three nodes with their own regions, seeds and id prefixes
  fedstat synth --patients 50000 --seed 1 --regions north,east --id-prefix a- --out data/a
  fedstat synth --patients 50000 --seed 2 --regions south      --id-prefix b- --out data/b
  fedstat synth --patients 50000 --seed 3 --regions west       --id-prefix c- --out data/c

  # events in 2020-2022 only, as NDJSON
  fedstat synth --patients 1000 --start 2020-01-01 --end 2022-12-31 --format ndjson --out /tmp/s

  # one node per US state from the FluSight influenza admissions
  fedstat synth flusight --out data/flu`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if patients <= 0 {
				return &usageError{"synth: --patients N (> 0) is required"}
			}
			if out == "" {
				return &usageError{"synth: --out DIR is required"}
			}
			o := synth.Options{Patients: patients, Seed: seed, Regions: regions, IDPrefix: idPrefix}
			var err error
			if o.Start, err = flagDate("--start", start); err != nil {
				return err
			}
			if o.End, err = flagDate("--end", end); err != nil {
				return err
			}
			w, err := synth.NewWriter(out, synth.Format(format), overwrite)
			if err != nil {
				return overwriteHint(err)
			}
			t0 := time.Now()
			err = synth.GenerateFunc(o, w.Write)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			printCounts(cmd, out, w.Counts(), time.Since(t0))
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&patients, "patients", 0, "number of patients (required)")
	f.Int64Var(&seed, "seed", 1, "random seed; the same seed gives the same records")
	f.StringSliceVar(&regions, "regions", nil, "region codes, comma-separated (default "+strings.Join(synth.DefaultRegions, ",")+", weighted by population)")
	f.StringVar(&start, "start", synth.DefaultStart.String(), "first day of clinical events (YYYY-MM-DD)")
	f.StringVar(&end, "end", synth.DefaultEnd.String(), "last day of clinical events (YYYY-MM-DD)")
	f.StringVar(&idPrefix, "id-prefix", "p", "prefix of patient ids (give each node its own)")
	f.StringVarP(&out, "out", "o", "", "output directory, created if missing (required)")
	f.StringVar(&format, "format", "csv", "file format: csv or ndjson")
	f.BoolVar(&overwrite, "overwrite", false, "replace existing output files")
	c.AddCommand(synthFluSightCommand(), synthCityCommand())
	return c
}

func synthCityCommand() *cobra.Command {
	var cfg synth.CityConfig
	var out string
	c := &cobra.Command{
		Use:   "city --out DIR [flags]",
		Short: "Generate a synthetic city: hospitals (FHIR), a death registry and an insurer sharing resident ids",
		Long: `city writes one synthetic population as several agencies see it, for record linkage:

  DIR/hospital-1 .. hospital-H   FHIR R4 Bulk NDJSON: Patient.ndjson, Condition.ndjson,
                                 Encounter.ndjson of the residents seen at that hospital
  DIR/registry/deaths.csv        resident_id,death_date,cause   (schema deaths.toml)
  DIR/insurer/claims.csv         claim_id,resident_id,service_date,amount,category
                                                                (schema claims.toml)
  DIR/network.toml               the catalogue: regions, studies, max_nodes_per_patient,
                                 [linkage] identifier_system
  DIR/answers.json               the exact answers of the linkage queries

Residents are known to 0-3 hospitals (20% none, 55% one, 20% two, 5% three), each
hospital with its own MRNs; every Patient carries the resident identity number
(--identifier-system) and its MRN, except about 2% of a hospital's patients:
visitors without an identity number, who cannot be linked. Conditions are coded
in ICD-10: type-2 diabetes E11.x (about 10% of adults), hypertension I10, COVID-19
U07.1 in waves. Regions are districts in Patient.address.state (import with the
default --region-rule state). About 85% of residents are insured; claims are in
yuan with a long tail above the schema's 100,000. The same --seed and flags give
byte-identical files. docs/synth.md describes the model.`,
		Example: `  fedstat synth city --out data/city
  fedstat synth city --residents 1000000 --hospitals 6 --seed 7 --out /tmp/city
  fedstat node import --data-dir nodes/h1 data/city/hospital-1/*.ndjson
  fedstat node import --data-dir nodes/registry --study deaths --schema data/city/registry/deaths.toml data/city/registry/deaths.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &usageError{"synth city: --out DIR is required"}
			}
			if cfg.Residents <= 0 {
				return &usageError{"synth city: --residents must be > 0"}
			}
			if cfg.Hospitals < 1 || cfg.Hospitals > synth.MaxCityHospitals {
				return &usageError{fmt.Sprintf("synth city: --hospitals must be 1 to %d", synth.MaxCityHospitals)}
			}
			t0 := time.Now()
			a, err := synth.City(cfg, out)
			if err != nil {
				return overwriteHint(err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote a city of %d residents (%d known to no hospital, %d to one, %d to two, %d to three) to %s in %s\n",
				a.Residents, a.ResidentsByHospitals[0], a.ResidentsByHospitals[1], a.ResidentsByHospitals[2], a.ResidentsByHospitals[3],
				out, time.Since(t0).Round(time.Millisecond))
			for _, h := range a.Hospitals {
				fmt.Fprintf(w, "  %-12s %d patients (%d visitors without identifier), %d conditions, %d encounters\n",
					h.Name, h.Patients, h.Visitors, h.Conditions, h.Encounters)
			}
			fmt.Fprintf(w, "  registry     %d deaths\n  insurer      %d claims of %d insured residents (%d above %d yuan)\n",
				a.Deaths, a.Claims, a.Insured, a.ClaimsAboveMax, synth.ClaimAmountMax)
			fmt.Fprintln(w, "exact answers (answers.json):")
			for _, q := range a.Queries() {
				if q.Value != nil {
					fmt.Fprintf(w, "  %-16s %s\n", q.Name, strconv.FormatFloat(*q.Value, 'f', -1, 64))
					continue
				}
				keys := make([]string, 0, len(q.Groups))
				for k := range q.Groups {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				var parts []string
				for _, k := range keys {
					parts = append(parts, k+"="+strconv.FormatFloat(q.Groups[k], 'f', -1, 64))
				}
				fmt.Fprintf(w, "  %-16s %s\n", q.Name, strings.Join(parts, " "))
			}
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&cfg.Residents, "residents", synth.DefaultCityResidents, "number of residents (with identity numbers)")
	f.IntVar(&cfg.Hospitals, "hospitals", synth.DefaultCityHospitals, "number of hospitals")
	f.Int64Var(&cfg.Seed, "seed", 1, "random seed; the same seed gives the same files")
	f.StringVar(&cfg.IdentifierSystem, "identifier-system", synth.DefaultIdentifierSystem, "FHIR identifier system of the resident identity number")
	f.StringSliceVar(&cfg.Regions, "regions", nil, "district codes, comma-separated (default "+strings.Join(synth.CityRegions, ",")+")")
	f.StringVarP(&out, "out", "o", "", "output directory, created if missing (required)")
	f.BoolVar(&cfg.Overwrite, "overwrite", false, "replace existing output files")
	return c
}

func synthFluSightCommand() *cobra.Command {
	var (
		admissions string
		locations  string
		seed       int64
		from, to   string
		states     []string
		idPrefix   string
		out        string
		format     string
		overwrite  bool
	)
	c := &cobra.Command{
		Use:   "flusight --out DIR [flags]",
		Short: "Turn FluSight weekly influenza admissions into one node's records per US state",
		Long: `flusight converts the CDC FluSight weekly laboratory-confirmed influenza hospital
admissions (target-hospital-admissions.csv: date (week ending), location (FIPS),
location_name, value, weekly_rate) into patient-level records, one directory per
state, DC and Puerto Rico, named by postal code (--out/CA, --out/NY, ...). Each weekly
count becomes that many patients, each with one influenza condition (SNOMED CT
6142004) dated within that week, a plausible birth date (57% aged 65+) and sex.
Region is the postal code. The national "US" row is left out, so the states of a
week add up to the national count (55,757 in the week ending 2025-02-08).

It also writes --out/populations.csv (region,fips,name,population) from
locations.csv, for incidence rates.

The files are looked for in ../shared/data/flusight (or $FEDSTAT_SHARED_DATA/flusight)
unless --admissions and --locations say where. The whole file (2022-02 to 2026-06)
is about 1.4 million patients; --from/--to/--states convert less.`,
		Example: `  fedstat synth flusight --out data/flu
  fedstat synth flusight --from 2024-10-01 --to 2025-05-31 --states CA,NY,TX --out data/flu-2024
  fedstat node import --data-dir nodes/ca data/flu/CA/*.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &usageError{"synth flusight: --out DIR is required"}
			}
			if admissions == "" {
				p, ok := shareddata.Path("flusight/target-hospital-admissions.csv")
				if !ok {
					return &usageError{"synth flusight: FluSight data not found in ../shared/data/flusight; give --admissions and --locations"}
				}
				admissions = p
			}
			if locations == "" {
				locations = filepath.Join(filepath.Dir(admissions), "locations.csv")
			}
			o := synth.FluOptions{Seed: seed, Locations: states, IDPrefix: idPrefix}
			var err error
			if from != "" {
				if o.From, err = flagDate("--from", from); err != nil {
					return err
				}
			}
			if to != "" {
				if o.To, err = flagDate("--to", to); err != nil {
					return err
				}
			}
			t0 := time.Now()
			byState, err := synth.FluSight(admissions, locations, o)
			if err != nil {
				return err
			}
			codes := make([]string, 0, len(byState))
			for code := range byState {
				codes = append(codes, code)
			}
			sort.Strings(codes)
			total := 0
			for _, code := range codes {
				w, err := synth.NewWriter(filepath.Join(out, code), synth.Format(format), overwrite)
				if err != nil {
					return overwriteHint(err)
				}
				err = w.Write(byState[code])
				if cerr := w.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
				total += len(byState[code].Patients)
			}
			if err := writePopulations(filepath.Join(out, "populations.csv"), locations, overwrite); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d influenza patients in %d state directories under %s in %s\n",
				total, len(codes), out, time.Since(t0).Round(time.Millisecond))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&admissions, "admissions", "", "path of target-hospital-admissions.csv (default: the shared data)")
	f.StringVar(&locations, "locations", "", "path of locations.csv (default: beside --admissions)")
	f.Int64Var(&seed, "seed", 1, "random seed for birth dates, sexes and days within the week")
	f.StringVar(&from, "from", "", "keep weeks ending on or after this day (YYYY-MM-DD)")
	f.StringVar(&to, "to", "", "keep weeks ending on or before this day (YYYY-MM-DD)")
	f.StringSliceVar(&states, "states", nil, "keep only these states (postal or FIPS codes, comma-separated)")
	f.StringVar(&idPrefix, "id-prefix", "flu-", "prefix of patient ids (followed by the state code)")
	f.StringVarP(&out, "out", "o", "", "output directory, one subdirectory per state (required)")
	f.StringVar(&format, "format", "csv", "file format: csv or ndjson")
	f.BoolVar(&overwrite, "overwrite", false, "replace existing output files")
	return c
}

// overwriteHint adds the flag to use when output files exist.
func overwriteHint(err error) error {
	if errors.Is(err, synth.ErrExists) {
		return fmt.Errorf("%w; pass --overwrite to replace it", err)
	}
	return err
}

// flagDate parses a YYYY-MM-DD flag value.
func flagDate(name, v string) (cdm.Date, error) {
	d, err := cdm.ParseDate(v)
	if err != nil || len(v) != 10 {
		return 0, &usageError{fmt.Sprintf("%s %q: want YYYY-MM-DD", name, v)}
	}
	return d, nil
}

func printCounts(cmd *cobra.Command, dir string, counts map[string]int, took time.Duration) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "wrote to %s in %s:\n", dir, took.Round(time.Millisecond))
	for _, f := range synth.Files {
		fmt.Fprintf(w, "  %-13s %d\n", f.Name, counts[f.Name])
	}
}

// writePopulations writes region,fips,name,population for every state-level
// location.
func writePopulations(path, locations string, overwrite bool) error {
	locs, err := synth.FluLocations(locations)
	if err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return fmt.Errorf("synth: %w", err)
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"region", "fips", "name", "population"})
	for _, l := range locs {
		if l.Code == "US" {
			continue
		}
		cw.Write([]string{l.Code, l.FIPS, l.Name, strconv.FormatInt(l.Population, 10)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return fmt.Errorf("synth: %w", err)
	}
	return f.Close()
}
