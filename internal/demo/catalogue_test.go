package demo

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fedstat/fedstat/internal/cdm"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestCatalogue: the coordinator serves the public catalogue (regions, study
// tables, populations) to analysts over gRPC, and to nobody else.
func TestCatalogue(t *testing.T) {
	data, err := Synthetic(2, 50, 5)
	if err != nil {
		t.Fatal(err)
	}
	study, err := cdm.ParseStudySchema(SurvivalSchema, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw, err := Start(ctx, Options{Data: data, Regions: []string{"north", "south"},
		Studies: []cdm.StudySchema{*study}, Populations: map[string]int64{"north": 120000, "south": 80000}})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	client, closeConn, err := nw.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	cat, err := client.Catalogue(ctx, &coordinatorv1.CatalogueRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cat.GetRegions(), []string{"north", "south"}) || cat.GetPopulations()["north"] != 120000 ||
		cat.GetPopulations()["south"] != 80000 || !slices.Contains(cat.GetStudies(), study.Name) {
		t.Fatalf("catalogue %v", cat)
	}
	// A node's certificate is not an analyst's.
	nodeClient, closeNode, err := nw.Client(mustIdentity(t, nw, "node-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeNode()
	if _, err := nodeClient.Catalogue(ctx, &coordinatorv1.CatalogueRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("catalogue for a node's certificate: %v", err)
	}
}
