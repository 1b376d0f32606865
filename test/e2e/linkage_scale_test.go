package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/synth"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

var (
	linkBench          = flag.Bool("linkbench", false, "run TestLinkedCityScale: a synthetic city as separate processes, the linked queries timed (minutes to an hour)")
	linkBenchResidents = flag.String("linkbench.residents", "1000000", "comma-separated city sizes of TestLinkedCityScale")
	linkBenchHospitals = flag.String("linkbench.hospitals", "4", "comma-separated numbers of hospitals of TestLinkedCityScale")
	linkBenchThreshold = flag.Int("linkbench.threshold", 0, "decryption threshold T (the number of mix stages); 0: 2/3 of the nodes, rounded up")
	linkBenchSum       = flag.Bool("linkbench.sum", false, "also run Q3, the insurer's sum over the diabetics (a payload query: every claimant mixed with a payload, and the decryptors' check of the sums)")
)

// TestLinkedCityScale is the benchmark of docs/performance.md's "Record
// linkage at city scale" (not a timed assertion; skipped without
// -linkbench): for every city size and number of hospitals asked, a
// synthetic city (fedstat synth city: H hospitals, a registry, an insurer)
// runs as separate processes on this machine, and the deduplicated count
// (Q1) and the cross-agency count (Q2) of issue 17 run at ε 1 (with
// -linkbench.sum also the insurer's sum, Q3, in yuan). It logs, per
// query, the wall time from submission to release, the phases, and the
// bytes each node sent (its partial, and a stage node's mixed lists).
//
//	go test -count=1 -timeout 3h -run TestLinkedCityScale ./test/e2e/ -v -args -linkbench -linkbench.residents 100000,300000,1000000 -linkbench.hospitals 4
func TestLinkedCityScale(t *testing.T) {
	if !*linkBench {
		t.Skip("a benchmark: run with -args -linkbench (see the doc comment)")
	}
	ints := func(s string) []int {
		var out []int
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	var table []string
	for _, residents := range ints(*linkBenchResidents) {
		for _, hospitals := range ints(*linkBenchHospitals) {
			table = append(table, linkScaleRun(t, residents, hospitals)...)
		}
	}
	t.Logf("\n| residents | hospitals | nodes | T | query | cohort (truth) | wall | phases | most sent by one node |\n|---|---|---|---|---|---|---|---|---|\n%s", strings.Join(table, "\n"))
}

func linkScaleRun(t *testing.T, residents, hospitals int) []string {
	t.Helper()
	start := time.Now()
	cityDir := t.TempDir()
	truth, err := synth.City(synth.CityConfig{Residents: residents, Hospitals: hospitals, Seed: 1}, cityDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("city of %d residents, %d hospitals generated in %s", residents, hospitals, time.Since(start).Round(time.Second))
	n := hospitals + 2
	imports := make([][]string, n)
	for h := range hospitals {
		imports[h] = []string{filepath.Join(cityDir, "hospital-"+strconv.Itoa(h+1))}
	}
	deathsCSV, claimsCSV := make([]string, n), make([]string, n)
	deathsCSV[hospitals] = filepath.Join(cityDir, "registry", "deaths.csv")
	claimsCSV[hospitals+1] = filepath.Join(cityDir, "insurer", "claims.csv")
	threshold := *linkBenchThreshold
	if threshold == 0 {
		threshold = (2*n + 2) / 3
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	start = time.Now()
	p := serve(t, ctx, demo.ServeOptions{
		Data: make([]*cdm.Records, n), Imports: imports, Threshold: threshold, MinNodes: n,
		Regions: truth.Config.Regions, MaxNodesPerPatient: 5,
		Studies: []demo.ServeStudy{
			{Name: "deaths", Schema: filepath.Join(cityDir, "registry", "deaths.toml"), CSV: deathsCSV},
			{Name: "claims", Schema: filepath.Join(cityDir, "insurer", "claims.toml"), CSV: claimsCSV},
		},
		Network:           "\n[linkage]\nidentifier_system = " + strconv.Quote(truth.Config.IdentifierSystem) + "\n",
		CoordinatorConfig: `deadline = "30m"`,
	})
	t.Logf("imported and started in %s", time.Since(start).Round(time.Second))
	var rows []string
	type benchQuery struct {
		name, sql string
		truth     int
	}
	queries := []benchQuery{
		{"Q1 deduplicated count", synth.CitySQLDiabetics, truth.Diabetics},
		{"Q2 cross-agency count", synth.CitySQLDiabeticDeaths2023, truth.DiabeticDeaths2023},
	}
	if *linkBenchSum {
		queries = append(queries, benchQuery{"Q3 insurer sum (yuan)", synth.CitySQLDiabeticClaims, int(truth.DiabeticClaims())})
	}
	for _, q := range queries {
		body, _ := json.Marshal(map[string]any{"spec": map[string]any{"sql": q.sql, "epsilon": 1}})
		t0 := time.Now()
		code, b := httpJSONAs(t, p, p.OperatorToken, "POST", "/v1/queries", string(body))
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", q.name, code, b)
		}
		var sub coordinatorv1.QueryStatus
		if err := protojson.Unmarshal(b, &sub); err != nil {
			t.Fatal(err)
		}
		st := waitQuery(t, p, sub.QueryId)
		wall := time.Since(t0)
		if st.State != coordinatorv1.State_STATE_DONE {
			t.Fatalf("%s: %s %s", q.name, st.State, st.Error)
		}
		var phases []string
		for _, ph := range st.Phases {
			phases = append(phases, fmt.Sprintf("%s %.1fs", ph.Name, ph.ElapsedMs/1000))
		}
		sent := map[string]int64{}
		for _, nd := range st.Nodes {
			sent[nd.NodeId] = nd.UploadBytes
		}
		ids := make([]string, 0, len(sent))
		for id := range sent {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return sent[ids[i]] > sent[ids[j]] })
		v := st.GetResult().GetRows()[0].GetValues()[0].GetValue()
		sd := math.Sqrt(st.GetResult().GetRows()[0].GetValues()[0].GetVariance())
		t.Logf("%s: released %v (sd %.3g, truth %d) in %s; phases %s; sent %v", q.name, v, sd, q.truth, wall.Round(100*time.Millisecond), strings.Join(phases, ", "), sent)
		rows = append(rows, fmt.Sprintf("| %d | %d | %d | %d | %s | %d | %.1f s | %s | %.1f MiB (%s) |", residents, hospitals, n, threshold, q.name, q.truth,
			wall.Seconds(), strings.Join(phases, ", "), float64(sent[ids[0]])/(1<<20), ids[0]))
	}
	p.Stop()
	return rows
}

// waitQuery watches a query as the operator until it ends and returns its
// final status (with every node's progress and bytes).
func waitQuery(t *testing.T, p *demo.Processes, id string) *coordinatorv1.QueryStatus {
	t.Helper()
	c, err := p.HTTPClient(2 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for {
		req, _ := http.NewRequest("GET", p.Env["FEDSTAT_HTTP"]+"/v1/queries/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+p.OperatorToken)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		st := &coordinatorv1.QueryStatus{}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := protojson.Unmarshal(b, st); err != nil {
			t.Fatalf("status of %s: %v: %s", id, err, b)
		}
		if terminalState(st.State) {
			return st
		}
		time.Sleep(500 * time.Millisecond)
	}
}
