package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/node"
	"github.com/fedstat/fedstat/node/internal/store"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// patientsWithConditions returns n patients of node id, each with three
// conditions, numbered from first.
func patientsWithConditions(id string, first, n int) *cdm.Records {
	r := &cdm.Records{}
	for i := first; i < first+n; i++ {
		pid := fmt.Sprintf("%s-p%d", id, i)
		r.Patients = append(r.Patients, cdm.Patient{ID: pid, BirthDate: cdm.DateFromYMD(1960, 1, 1+i%28), Sex: cdm.SexFemale, Region: "north", DeathDate: cdm.NoDate})
		for j := range 3 {
			r.Conditions = append(r.Conditions, cdm.Condition{ID: fmt.Sprintf("%s-c%d", pid, j), PatientID: pid, Code: "44054006",
				System: cdm.SystemSNOMED, Onset: cdm.DateFromYMD(2020, 1, 1+j), Abatement: cdm.NoDate})
		}
	}
	return r
}

// TestNodeSummaryCoarseForCoordinator (issue 13, item 1): a node whose data
// grows by one patient (and three conditions) shows the same summary to the
// coordinator, hence to an analyst through the Nodes RPC and GET /v1/nodes;
// a network operator calling the node directly sees the exact counts. The
// sizes (42 -> 43 patients, 126 -> 129 conditions) sit away from a rounding
// boundary of node.CoarseCount.
func TestNodeSummaryCoarseForCoordinator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network; skipped with -short")
	}
	homomorphic.AllowInsecureForTests()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := []*cdm.Records{patientsWithConditions("node-1", 0, 42), patientsWithConditions("node-2", 0, 30)}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Params: homomorphic.InsecureTestSet})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()

	dir := t.TempDir()
	tokPath := filepath.Join(dir, "tokens.json")
	toks := `[{"name": "ann", "role": "analyst", "sha256": "` + coordinator.HashToken("tok-ann") + `"}]`
	if err := os.WriteFile(tokPath, []byte(toks), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := coordinator.LoadTokens(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(nw.Coordinator.HTTPHandler(tokens))
	defer srv.Close()
	analyst, closeConn, err := nw.Client(nw.Analyst)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	operator := dialNode(t, nw.Nodes[0].Addr(), nw.Operator, "node-1")
	coordID := identity(t, nw.Dir, "coordinator")
	asCoordinator := dialNode(t, nw.Nodes[0].Addr(), coordID, "node-1")

	// seen is node-1's summary as every party sees it.
	type seen struct{ grpc, http, coordinator, operator *typesv1.DataSummary }
	look := func() seen {
		t.Helper()
		var s seen
		r, err := analyst.Nodes(ctx, &coordinatorv1.NodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range r.GetNodes() {
			if n.GetNodeId() == "node-1" {
				s.grpc = n.GetSummary()
			}
		}
		req, _ := http.NewRequest("GET", srv.URL+"/v1/nodes", nil)
		req.Header.Set("Authorization", "Bearer tok-ann")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var hr coordinatorv1.NodesResponse
		if resp.StatusCode != http.StatusOK || protojson.Unmarshal(b, &hr) != nil {
			t.Fatalf("GET /v1/nodes: %d %s", resp.StatusCode, b)
		}
		for _, n := range hr.GetNodes() {
			if n.GetNodeId() == "node-1" {
				s.http = n.GetSummary()
			}
		}
		for _, c := range []struct {
			cl  nodev1.NodeServiceClient
			out **typesv1.DataSummary
		}{{asCoordinator, &s.coordinator}, {operator, &s.operator}} {
			info, err := c.cl.Info(ctx, &nodev1.InfoRequest{})
			if err != nil {
				t.Fatal(err)
			}
			*c.out = info.GetSummary()
		}
		return s
	}

	before := look()
	if _, err := nw.Stores[0].(*store.Store).ImportRecords(ctx, patientsWithConditions("node-1", 42, 1), "one more"); err != nil {
		t.Fatal(err)
	}
	after := look()

	for _, c := range []struct {
		what          string
		before, after *typesv1.DataSummary
	}{
		{"the analyst's Nodes RPC", before.grpc, after.grpc},
		{"the analyst's GET /v1/nodes", before.http, after.http},
		{"Info to the coordinator", before.coordinator, after.coordinator},
	} {
		if !proto.Equal(c.before, c.after) {
			t.Errorf("%s: one more patient changed node-1's summary from %v to %v", c.what, c.before, c.after)
		}
		if c.after.GetPatients() != 40 || c.after.GetRows()[cdm.TableConditions] != 130 {
			t.Errorf("%s: node-1's summary is %v, want 40 patients and 130 conditions (coarse)", c.what, c.after)
		}
	}
	if p, c := before.operator.GetPatients(), before.operator.GetRows()[cdm.TableConditions]; p != 42 || c != 126 {
		t.Errorf("operator at the node before the import: %d patients, %d conditions; want the exact 42 and 126", p, c)
	}
	if p, c := after.operator.GetPatients(), after.operator.GetRows()[cdm.TableConditions]; p != 43 || c != 129 {
		t.Errorf("operator at the node after the import: %d patients, %d conditions; want the exact 43 and 129", p, c)
	}
}

// TestCoarseCount pins the one rounding of counts that leave a node.
func TestCoarseCount(t *testing.T) {
	for _, c := range []struct{ in, want int64 }{
		{-3, 0}, {0, 0}, {1, 10}, {4, 10}, {9, 10}, {14, 10}, {15, 20}, {24, 20}, {42, 40}, {43, 40}, {95, 100},
		{99, 100}, {100, 100}, {104, 100}, {105, 110}, {126, 130}, {129, 130}, {999, 1000}, {1234, 1200},
		{1250, 1300}, {98765, 99000}, {123456789, 120000000},
	} {
		if got := node.CoarseCount(c.in); got != c.want {
			t.Errorf("CoarseCount(%d) = %d, want %d", c.in, got, c.want)
		}
	}
	// Never finer than a step of 10, never exact below 15 (except 0).
	for v := int64(1); v < 20000; v++ {
		got := node.CoarseCount(v)
		if got%10 != 0 || got == 0 {
			t.Fatalf("CoarseCount(%d) = %d: want a nonzero multiple of 10", v, got)
		}
		if d := max(got-v, v-got); d > max(9, v/20) {
			t.Fatalf("CoarseCount(%d) = %d: off by more than the step", v, got)
		}
	}
}
