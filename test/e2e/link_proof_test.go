package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/node"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
	"github.com/fedstat/fedstat/queries/plan"
)

const linkProofSystem = "urn:test:resident"

// linkProofCity gives three hospitals overlapping residents: resident r is
// diabetic (E11) at hospital r%3 and hypertensive (I10) at hospital
// (r+1)%3 when r is even. The linked COUNT(*) of diabetes rows of
// hypertensive residents is the number of even residents.
func linkProofCity(residents int) []*cdm.Records {
	data := make([]*cdm.Records, 3)
	for i := range data {
		data[i] = &cdm.Records{}
	}
	add := func(h, r int, code string) {
		id := fmt.Sprintf("h%d-p%d", h, r)
		data[h].Patients = append(data[h].Patients, cdm.Patient{ID: id, Region: "north", Sex: cdm.SexFemale,
			BirthDate: cdm.DateFromYMD(1960, 1, 1), Identifiers: fmt.Sprintf("%s|%09d", linkProofSystem, r)})
		data[h].Conditions = append(data[h].Conditions, cdm.Condition{ID: id + "-" + code, PatientID: id, Code: code,
			Onset: cdm.DateFromYMD(2022, 1, 1), Abatement: cdm.NoDate})
	}
	for r := range residents {
		add(r%3, r, "E11.9")
		if r%2 == 0 {
			add((r+1)%3, r, "I10")
		}
	}
	return data
}

// TestWrongLinkShareNamed (issue 21): in a linked network, every decryption
// share a stage gives (the first stage's withheld share at LinkFinish, each
// decryptor's shares of the payload sums at LinkDecrypt) carries a proof
// that it is w·C1 for the node's weighted linkage-key share, which the
// coordinator checks against the key the members' public commitments give
// that node. node-3 runs the real protocol with one step changed:
//   - at LinkDecrypt it shifts its share of the sum by B (the total would
//     move by one step of the payload grid, a bias no range check sees),
//     keeping its honest proof;
//   - at LinkDecrypt it decrypts another ciphertext than the sum it is
//     asked for, and proves that (a real proof of the wrong statement);
//   - at LinkDecrypt it sends no proof (a version before the proofs);
//   - at LinkFinish it changes one share of one pseudonym.
//
// Each is refused naming node-3 and the step, nothing is released, and the
// coordinator's audit log names node-3. The same network, honest, releases
// the exact count.
func TestWrongLinkShareNamed(t *testing.T) {
	dir := t.TempDir()
	var mode atomic.Value // "", "shift", "other-ct", "no-proof", "finish"
	mode.Store("")
	evil := func(nodeID string) []grpc.ServerOption {
		if nodeID != "node-3" {
			return nil
		}
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			m := mode.Load().(string)
			switch {
			case info.FullMethod == nodev1.NodeService_LinkDecrypt_FullMethodName && m == "other-ct":
				// Decrypt another ciphertext than the sum asked (its C1
				// moved by B): the real node's code and a real proof, of
				// the wrong statement.
				r := proto.Clone(req.(*nodev1.LinkDecryptRequest)).(*nodev1.LinkDecryptRequest)
				copy(r.Sums[0][:linkage.PointSize], shiftByBase(t, r.Sums[0][:linkage.PointSize]))
				return h(ctx, r)
			case info.FullMethod == nodev1.NodeService_LinkDecrypt_FullMethodName && (m == "shift" || m == "no-proof"):
				resp, err := h(ctx, req)
				if err != nil {
					return resp, err
				}
				d := resp.(*nodev1.LinkDecryptResponse)
				if m == "no-proof" {
					d.Proof = nil
					return d, nil
				}
				d.Shares[0] = shiftByBase(t, d.Shares[0])
				return d, nil
			case info.FullMethod == nodev1.NodeService_LinkFinish_FullMethodName && m == "finish":
				resp, err := h(ctx, req)
				if err != nil {
					return resp, err
				}
				f := resp.(*nodev1.LinkFinishResponse)
				for i, b := range f.Shares {
					if len(b) >= linkage.PointSize {
						copy(f.Shares[i][:linkage.PointSize], shiftByBase(t, b[:linkage.PointSize]))
						break
					}
				}
				return f, nil
			}
			return h(ctx, req)
		})}
	}
	const residents = 60
	nw := startFault(t, demo.Options{
		Dir: dir, Data: linkProofCity(residents), Threshold: 3, MinNodes: 3, AuditLogs: true,
		Regions: []string{"north"}, Linkage: &plan.Linkage{IdentifierSystem: linkProofSystem}, MaxNodesPerPatient: 3,
		NodeServerOptions: evil, Budget: node.Budget{TotalRho: 1e12, PerAnalystRho: 1e12},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cl := dialCoordinator(t, nw, nil)
	const sql = "SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN (SELECT patient_id FROM conditions WHERE code LIKE 'I10%')"
	spec := func() *typesv1.QuerySpec {
		return &typesv1.QuerySpec{Sql: sql, Epsilon: 1e6, Delta: 1e-6, Mechanism: typesv1.Mechanism_MECHANISM_GAUSSIAN, MinNodes: 3}
	}

	// Honest: the exact count (ε 1e6: the noise is far below one).
	st, err := runQuery(ctx, cl, spec())
	if err != nil {
		t.Fatalf("honest linked query: %v", err)
	}
	if got := st.GetResult().GetRows()[0].GetValues()[0].GetValue(); got < residents/2-0.5 || got > residents/2+0.5 {
		t.Fatalf("honest linked query released %v, want %d", got, residents/2)
	}

	refused := func(m, step, why string) {
		t.Helper()
		mode.Store(m)
		defer mode.Store("")
		st, err := runQuery(ctx, cl, spec())
		if err == nil {
			t.Fatalf("%s: released %v", m, st.GetResult())
		}
		msg := err.Error()
		if !strings.Contains(msg, "node-3's "+step+" shares refused") || !strings.Contains(msg, why) {
			t.Fatalf("%s: %v; want node-3's %s shares refused, %q", m, err, step, why)
		}
		for _, id := range []string{"node-1's", "node-2's"} {
			if strings.Contains(msg, id) {
				t.Errorf("%s: the refusal names %s too: %v", m, id, err)
			}
		}
		if st.GetResult() != nil {
			t.Errorf("%s: a result was kept: %v", m, st.GetResult())
		}
	}
	refused("shift", protocol.LinkStepDecrypt, "do not match their proof")
	refused("other-ct", protocol.LinkStepDecrypt, "do not match their proof")
	refused("no-proof", protocol.LinkStepDecrypt, "no proof of its shares")

	// LinkFinish is asked of the first stage only, drawn at random among
	// the three: ask until node-3 is first (each query it is not first in
	// releases, as the honest one did).
	finished := false
	mode.Store("finish")
	for try := 0; try < 25 && !finished; try++ {
		st, err := runQuery(ctx, cl, spec())
		if err == nil {
			if got := st.GetResult().GetRows()[0].GetValues()[0].GetValue(); got < residents/2-0.5 || got > residents/2+0.5 {
				t.Fatalf("a query without node-3 first released %v, want %d", got, residents/2)
			}
			continue
		}
		if !strings.Contains(err.Error(), "node-3's "+protocol.LinkStepFinish+" shares refused") || !strings.Contains(err.Error(), "do not match their proof") {
			t.Fatalf("node-3 changing a finish share: %v; want its link-finish shares refused", err)
		}
		finished = true
	}
	mode.Store("")
	if !finished {
		t.Fatal("node-3 was never the first stage in 25 queries")
	}

	// The coordinator's audit log names node-3, for each step.
	f, err := os.Open(filepath.Join(dir, "coordinator", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	steps := map[string]int{}
	if err := audit.Scan(f, func(_ int, e audit.Entry) error {
		if e.Action == "link.share_proof_failed" {
			if e.Details["node"] != "node-3" {
				t.Errorf("audit entry names %v, want node-3", e.Details["node"])
			}
			s, _ := e.Details["step"].(string)
			steps[s]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if steps[protocol.LinkStepDecrypt] != 3 || steps[protocol.LinkStepFinish] != 1 {
		t.Errorf("audit log: refusals by step %v, want 3 link-decrypt and 1 link-finish", steps)
	}

	// Honest again: released.
	if _, err := runQuery(ctx, cl, spec()); err != nil {
		t.Fatalf("honest linked query after the refusals: %v", err)
	}
}

// shiftByBase returns the encoding of P + B for the 32-byte point p, with
// crypto/linkage's own arithmetic: CombineDecryption((C1, C2), [D]) is
// C2 − D, so −B is 0 − B and P + B is P − (−B).
func shiftByBase(t *testing.T, p []byte) []byte {
	t.Helper()
	// The ristretto255 base point's encoding (RFC 9496, appendix A.1).
	base, err := linkage.ParsePoint(mustHex(t, "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"))
	if err != nil {
		t.Fatal(err)
	}
	negB, err := linkage.CombineDecryption(linkage.ValueCiphertext{}, []linkage.Point{base})
	if err != nil {
		t.Fatal(err)
	}
	var ct linkage.ValueCiphertext
	copy(ct[linkage.PointSize:], p)
	out, err := linkage.CombineDecryption(ct, []linkage.Point{negB})
	if err != nil {
		t.Fatal(err)
	}
	return out[:]
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
