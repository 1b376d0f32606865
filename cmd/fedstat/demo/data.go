package demo

import (
	"context"
	"fmt"
	"sort"

	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/shareddata"
	"github.com/fedstat/fedstat/internal/synth"
	"github.com/fedstat/fedstat/node/admin"
)

// SyntheaBundles is the path of the Synthea set inside the shared data.
const SyntheaBundles = "fhir-r4-synthea/bundles.tar.gz"

// DefaultPatients is the demo's synthetic population per node: large enough
// that its headline cohort and weekly series show counts above the
// small-count threshold.
const DefaultPatients = 5000

// Synthetic makes synthetic patients for n nodes, patients each, with
// disjoint ids and different seeds.
func Synthetic(n, patients int, seed int64) ([]*cdm.Records, error) {
	out := make([]*cdm.Records, n)
	for i := range out {
		r, err := synth.Generate(synth.Options{Patients: patients, Seed: seed*1000 + int64(i), IDPrefix: NodeID(i) + "-"})
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// SplitByCity parses FHIR files with the patient's city as region and splits
// the patients by city over n nodes (every city's patients go to one node;
// cities are dealt largest first to the node with the fewest patients).
func SplitByCity(ctx context.Context, n int, paths ...string) ([]*cdm.Records, int, error) {
	all, err := admin.ParseFHIR(ctx, "city", paths...)
	if err != nil {
		return nil, 0, err
	}
	byCity := map[string][]int{}
	for i, p := range all.Patients {
		byCity[p.Region] = append(byCity[p.Region], i)
	}
	cities := make([]string, 0, len(byCity))
	for c := range byCity {
		cities = append(cities, c)
	}
	sort.Slice(cities, func(i, j int) bool {
		if len(byCity[cities[i]]) != len(byCity[cities[j]]) {
			return len(byCity[cities[i]]) > len(byCity[cities[j]])
		}
		return cities[i] < cities[j]
	})
	// Deal the cities, then every other record goes to its patient's node.
	out := make([]*cdm.Records, n)
	patients := make([][]cdm.Patient, n)
	nodeOf := map[string]int{}
	for _, c := range cities {
		best := 0
		for i := range patients {
			if len(patients[i]) < len(patients[best]) {
				best = i
			}
		}
		for _, pi := range byCity[c] {
			p := all.Patients[pi]
			patients[best] = append(patients[best], p)
			nodeOf[p.ID] = best
		}
	}
	for i := range out {
		out[i], _ = all.FilterPatients(nil, func(pid string) bool { return nodeOf[pid] == i })
		out[i].Patients = patients[i]
	}
	return out, len(cities), nil
}

// LoadData returns the demo's data for n nodes: kind "synthea" (the shared
// Synthea bundles split by city), "synthetic", or "auto" (Synthea when the
// file is there). It also returns a sentence saying what was loaded.
func LoadData(ctx context.Context, kind string, n, patients int, seed int64) ([]*cdm.Records, string, error) {
	path, ok := shareddata.Path(SyntheaBundles)
	switch kind {
	case "auto":
		if !ok {
			kind = "synthetic"
		} else {
			kind = "synthea"
		}
	case "synthea":
		if !ok {
			return nil, "", fmt.Errorf("demo: %s not found (looked for ../shared/data beside the repository, or $%s)", SyntheaBundles, shareddata.EnvDir)
		}
	case "synthetic":
	default:
		return nil, "", fmt.Errorf("demo: unknown data kind %q (want auto, synthea or synthetic)", kind)
	}
	if kind == "synthetic" {
		recs, err := Synthetic(n, patients, seed)
		if err != nil {
			return nil, "", err
		}
		return recs, fmt.Sprintf("synthetic patients generated on the spot (%d per node, seed %d)", patients, seed), nil
	}
	recs, cities, err := SplitByCity(ctx, n, path)
	if err != nil {
		return nil, "", err
	}
	total := 0
	for _, r := range recs {
		total += len(r.Patients)
	}
	return recs, fmt.Sprintf("%d Synthea patients from %s, split over the nodes by city (%d cities)", total, path, cities), nil
}
