package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	"github.com/fedstat/fedstat/internal/cdm"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// TestCatalogue: the coordinator serves the public catalogue (regions, study
// tables, populations) to analysts over gRPC, and to nobody else.
func TestCatalogue(t *testing.T) {
	data, err := demo.Synthetic(2, 50, 5)
	if err != nil {
		t.Fatal(err)
	}
	study, err := cdm.ParseStudySchema(demo.SurvivalSchema, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw, err := demo.Start(ctx, demo.Options{Data: data, Regions: []string{"north", "south"},
		Studies: []cdm.StudySchema{*study}, Populations: map[string]int64{"north": 120000, "south": 80000}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	client := dialCoordinator(t, nw, nil)
	cat, err := client.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cat.GetRegions(), []string{"north", "south"}) || cat.GetPopulations()["north"] != 120000 ||
		cat.GetPopulations()["south"] != 80000 || !slices.Contains(cat.GetStudies(), study.Name) {
		t.Fatalf("catalogue %v", cat)
	}
	// The same over HTTP/JSON with bearer tokens; a node admin may not.
	dir := t.TempDir()
	toks := `[{"name": "ann", "role": "researcher", "sha256": "` + coordinator.HashToken("tok-ann") + `"},` +
		`{"name": "hal", "role": "node-admin", "sha256": "` + coordinator.HashToken("tok-hal") + `"}]`
	if err := os.WriteFile(filepath.Join(dir, "tokens.json"), []byte(toks), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := coordinator.LoadTokens(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(nw.Coordinator.HTTPHandler(tokens))
	defer srv.Close()
	get := func(token string) (int, []byte) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/catalogue", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get("tok-ann")
	var hc coordinatorv1.CatalogueResponse
	if code != http.StatusOK || protojson.Unmarshal(body, &hc) != nil || !proto.Equal(&hc, cat) {
		t.Fatalf("GET /v1/catalogue: %d %s", code, body)
	}
	if code, body := get("tok-hal"); code != http.StatusForbidden {
		t.Fatalf("GET /v1/catalogue as a node admin: %d %s", code, body)
	}

	// A node's certificate is not an analyst's.
	nodeClient := dialCoordinator(t, nw, mustIdentity(t, nw, "node-1"))
	if _, err := nodeClient.Catalogue(ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("catalogue for a node's certificate: %v", err)
	}
}
