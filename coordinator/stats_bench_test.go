package coordinator_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/signedquery"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// BenchmarkStatsSigned measures a three-round logistic regression through
// POST /v1/stats/logit on an in-process network of N nodes (production
// parameters, 200 rows of the survival study per node, T = 2), unsigned
// and signed by the analyst: a signed analysis' round r carries the r-1
// release records before it, and every node checks them and recomputes
// the round (docs/performance.md).
func BenchmarkStatsSigned(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			benchStats(b, n)
		})
	}
}

func benchStats(b *testing.B, nodes int) {
	schema, err := cdm.ParseStudySchema(demo.SurvivalSchema, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	data := make([]*cdm.Records, nodes)
	for i := range data {
		data[i] = &cdm.Records{}
	}
	nw, err := demo.Start(ctx, demo.Options{Data: data, Studies: []cdm.StudySchema{*schema}, Threshold: 2, MinNodes: 2,
		Budget: node.Budget{TotalRho: 1e9, PerAnalystRho: 1e9}})
	if err != nil {
		b.Fatal(err)
	}
	defer nw.Close()
	if err := nw.ImportSurvival(200); err != nil {
		b.Fatal(err)
	}
	ca, err := pki.LoadCA(filepath.Join(nw.Dir, "pki"))
	if err != nil {
		b.Fatal(err)
	}
	ann, err := ca.Issue(pki.IssueRequest{Name: "ann", Role: pki.RoleResearcher, Validity: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(nw.Coordinator.HTTPHandler(testTokens(b, map[string]string{"ann": "researcher"})))
	defer srv.Close()
	req := &coordinatorv1.StatsRequest{Method: "logit", Table: "survival", Outcome: "status = 2", Covariates: []string{"age"},
		Factors: []string{"sex"}, Epsilon: 200, Rounds: 3}
	post := func(r *coordinatorv1.StatsRequest) {
		body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		hr, _ := http.NewRequest("POST", srv.URL+"/v1/stats/logit", bytes.NewReader(body))
		hr.Header.Set("Authorization", "Bearer tok-ann")
		resp, err := srv.Client().Do(hr)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var msg bytes.Buffer
			_, _ = msg.ReadFrom(resp.Body)
			b.Fatalf("POST /v1/stats/logit: %d %s", resp.StatusCode, msg.String())
		}
	}
	b.Run("unsigned", func(b *testing.B) {
		for b.Loop() {
			post(req)
		}
	})
	b.Run("signed", func(b *testing.B) {
		for b.Loop() {
			signed, err := signedquery.SignStats(ann.Key, ann.Cert.Raw, "coordinator", req, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			post(signed)
		}
	})
}
