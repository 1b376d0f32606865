package e2e

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/client"
	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/cdm"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/releasecheck"
	"github.com/fedstat/fedstat/node"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
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

// residents is the linkProofCity size of the linked-network tests; the
// linked COUNT(*) of linkProofSpec is residents/2 (small, to keep the
// race run of the proofs short).
const residents = 30

// startLinkProofNetwork starts an in-process linked network of three
// hospitals (linkProofCity, T = 3: every node is a stage) with the given
// gRPC server options per node, audit logs and a budget no test exhausts,
// and returns a client of its coordinator.
func startLinkProofNetwork(t *testing.T, dir string, opts func(nodeID string) []grpc.ServerOption) (*client.Client, *demo.Network) {
	nw := startFault(t, demo.Options{
		Dir: dir, Data: linkProofCity(residents), Threshold: 3, MinNodes: 3, AuditLogs: true,
		Regions: []string{"north"}, Linkage: &plan.Linkage{IdentifierSystem: linkProofSystem}, MaxNodesPerPatient: 3,
		NodeServerOptions: opts, Budget: node.Budget{TotalRho: 1e12, PerAnalystRho: 1e12},
	})
	return dialCoordinator(t, nw, nil), nw
}

// linkProofSpec is a linked query with a payload (so that it has both a
// finish and a decrypt step) at ε 1e6, where the noise is far below one.
func linkProofSpec() *typesv1.QuerySpec {
	const sql = "SELECT COUNT(*) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN (SELECT patient_id FROM conditions WHERE code LIKE 'I10%')"
	return &typesv1.QuerySpec{Sql: sql, Epsilon: 1e6, Delta: 1e-6, Mechanism: typesv1.Mechanism_MECHANISM_GAUSSIAN, MinNodes: 3}
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
//   - at LinkDecrypt it sends no proof (a version before the proofs);
//   - at LinkFinish (whichever node is the first stage, in that mode) it
//     changes one share of one pseudonym.
//
// Each is refused naming the node and the step, nothing is released, and
// the coordinator's audit log names the node. The same network, honest,
// releases the exact count.
func TestWrongLinkShareNamed(t *testing.T) {
	noRace(t)
	dir := t.TempDir()
	var mode atomic.Value // "", "shift", "no-proof", "finish"
	mode.Store("")
	evil := func(nodeID string) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			m := mode.Load().(string)
			if nodeID != "node-3" && m != "finish" {
				return h(ctx, req)
			}
			switch {
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
	cl, _ := startLinkProofNetwork(t, dir, evil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	spec := linkProofSpec

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
	refused("no-proof", protocol.LinkStepDecrypt, "no proof of its shares")

	// LinkFinish is asked of the first stage only, drawn at random among
	// the three: in this mode whichever node is first changes a share, and
	// it alone is named.
	mode.Store("finish")
	_, err = runQuery(ctx, cl, spec())
	mode.Store("")
	first := ""
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		if err != nil && strings.Contains(err.Error(), id+"'s "+protocol.LinkStepFinish+" shares refused") {
			first = id
		}
	}
	if first == "" || !strings.Contains(err.Error(), "do not match their proof") {
		t.Fatalf("the first stage changing a finish share: %v; want its link-finish shares refused, naming it", err)
	}

	// The coordinator's audit log names node-3, for each step.
	steps := map[string]int{}
	for _, e := range auditLog(t, filepath.Join(dir, "coordinator", "audit.log")) {
		if e.Action == "link.share_proof_failed" {
			s, _ := e.Details["step"].(string)
			if want := map[string]string{protocol.LinkStepDecrypt: "node-3", protocol.LinkStepFinish: first}[s]; e.Details["node"] != want {
				t.Errorf("audit entry of %s names %v, want %s", s, e.Details["node"], want)
			}
			steps[s]++
		}
	}
	if steps[protocol.LinkStepDecrypt] != 2 || steps[protocol.LinkStepFinish] != 1 {
		t.Errorf("audit log: refusals by step %v, want 2 link-decrypt and 1 link-finish", steps)
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

// TestDeviatingStageNamed (issue 21): every mix stage proves that each of
// its output lists is a permutation of its input under its exponent (and
// the key share it strips), with its payloads re-randomised and moved with
// their pseudonyms (linkage.StageProof). node-3 runs the real protocol with
// one step changed: after mixing it copies one element of its output over
// another (an element dropped, one counted twice: the planting a stage and
// the coordinator would use to learn whether a resident is on another
// agency's list) and signs that. The coordinator refuses its output naming
// node-3, and nothing is decrypted. Then the coordinator is played as a
// colluder: node-3 mixes honestly, the coordinator's check passes, and the
// next stage is handed the tampered output, signed by node-3: that stage
// checks every earlier stage's proof itself and refuses to mix, naming
// node-3 in its error and its audit log (the coordinator, whose own check
// of node-3's true output passed, reports the refusal as unfounded). The
// network then releases the exact count.
func TestDeviatingStageNamed(t *testing.T) {
	dir := t.TempDir()
	var mode atomic.Value // "", "tamper-own", "tamper-forwarded"
	mode.Store("")
	tamper := func(s *typesv1.Signed, qid string, epoch uint64) *typesv1.Signed {
		return tamperStageOutput(t, dir, s, qid, epoch)
	}
	interceptors := func(nodeID string) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if info.FullMethod != nodev1.NodeService_LinkStage_FullMethodName {
				return h(ctx, req)
			}
			r := req.(*nodev1.LinkStageRequest)
			switch m := mode.Load().(string); {
			case m == "tamper-own" && nodeID == "node-3":
				resp, err := h(ctx, req)
				if err != nil {
					return resp, err
				}
				sr := resp.(*nodev1.LinkStageResponse)
				sr.Output = tamper(sr.GetOutput(), r.GetQueryId(), r.GetEpoch())
				return sr, nil
			case m == "tamper-forwarded" && nodeID != "node-3":
				// The colluding coordinator hands this stage node-3's
				// output tampered after its own check passed.
				r = proto.Clone(r).(*nodev1.LinkStageRequest)
				for _, o := range append(append([]*nodev1.NodeSigned(nil), r.GetEarlier()...), r.GetPrevious()) {
					if o.GetNodeId() == "node-3" {
						o.Signed = tamper(o.GetSigned(), r.GetQueryId(), r.GetEpoch())
					}
				}
				return h(ctx, r)
			}
			return h(ctx, req)
		})}
	}
	cl, _ := startLinkProofNetwork(t, dir, interceptors)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	spec := linkProofSpec()
	exact := func(st *coordinatorv1.QueryStatus) {
		t.Helper()
		if got := st.GetResult().GetRows()[0].GetValues()[0].GetValue(); got < residents/2-0.5 || got > residents/2+0.5 {
			t.Fatalf("released %v, want %d", got, residents/2)
		}
	}

	mode.Store("tamper-own")
	_, err := runQuery(ctx, cl, spec)
	if err == nil || !strings.Contains(err.Error(), "at node-3: its output refused") || !strings.Contains(err.Error(), "not a proven mix of its input") {
		t.Fatalf("node-3 tampering its own output: %v; want the coordinator to refuse it, naming node-3", err)
	}

	// The forwarded case needs a stage after node-3: ask until there is
	// one (node-3 is last in a third of the queries, which then release).
	mode.Store("tamper-forwarded")
	refused := false
	for try := 0; try < 25 && !refused; try++ {
		st, err := runQuery(ctx, cl, spec)
		if err == nil {
			exact(st)
			continue
		}
		if !strings.Contains(err.Error(), "the output of stage") || !strings.Contains(err.Error(), "(node-3) refused") || !strings.Contains(err.Error(), "not a proven mix of its input") ||
			!strings.Contains(err.Error(), "refused earlier outputs whose proofs verify at the coordinator") {
			t.Fatalf("a tampered output of node-3 forwarded: %v; want the next stage to refuse it, naming node-3", err)
		}
		refused = true
	}
	if !refused {
		t.Fatal("node-3 was the last stage in 25 queries")
	}
	// The refusing stage's own audit log names node-3 (the coordinator,
	// which checked node-3's true output, calls the refusal unfounded: in
	// this play the tampering is the coordinator's).
	named := 0
	for _, id := range []string{"node-1", "node-2"} {
		named += auditCount(t, filepath.Join(dir, id, "audit.log"), "link.stage_proof_failed", "node", "node-3")
	}
	if named != 1 {
		t.Errorf("the honest stages' audit logs name node-3 %d times, want once", named)
	}
	// The coordinator's audit log names node-3 for its own output, and the
	// stage that refused the forwarded one as unfounded.
	actions := map[string]string{}
	for _, e := range auditLog(t, filepath.Join(dir, "coordinator", "audit.log")) {
		if e.Action == "link.stage_proof_failed" || e.Action == "link.stage_refusal_unfounded" {
			actions[e.Action], _ = e.Details["node"].(string)
		}
	}
	if actions["link.stage_proof_failed"] != "node-3" || actions["link.stage_refusal_unfounded"] == "" || actions["link.stage_refusal_unfounded"] == "node-3" {
		t.Errorf("the coordinator's audit log: %v; want node-3's output refused and an honest stage's refusal unfounded", actions)
	}
	mode.Store("")
	st, err := runQuery(ctx, cl, spec)
	if err != nil {
		t.Fatalf("honest linked query after the refusals: %v", err)
	}
	exact(st)
}

// tamperStageOutput copies element 1 of the first list of stage output s
// with two elements over element 0 (an element dropped, one counted
// twice) and signs the output again as node-3, with node-3's key from the
// network's pki directory under dir.
func tamperStageOutput(t *testing.T, dir string, s *typesv1.Signed, qid string, epoch uint64) *typesv1.Signed {
	out := &nodev1.LinkStagePayload{}
	if err := proto.Unmarshal(s.GetPayload(), out); err != nil {
		t.Errorf("stage output: %v", err)
		return s
	}
	for _, l := range out.GetLists() {
		if ps := l.GetPseudonyms(); len(ps) >= 2*linkage.CiphertextSize {
			copy(ps[:linkage.CiphertextSize], ps[linkage.CiphertextSize:2*linkage.CiphertextSize])
			if pl := l.GetPayloads(); len(pl) >= 2*linkage.CiphertextSize {
				copy(pl[:linkage.CiphertextSize], pl[linkage.CiphertextSize:2*linkage.CiphertextSize])
			}
			break
		}
	}
	key3, err := pki.LoadIdentityDir(filepath.Join(dir, "pki"), "node-3")
	if err != nil {
		t.Error(err)
		return s
	}
	signed, err := protocol.SealLinkStage(key3.Key, qid, epoch, "node-3", out, time.Now())
	if err != nil {
		t.Errorf("sealing the tampered output: %v", err)
		return s
	}
	return signed
}

// TestLinkSumsCheckedByDecryptors (issue 21): the decryptors of a linked
// payload query recompute every sum before they decrypt it, from the
// evidence the coordinator must send with it (every stage's signed output,
// the first stage's finish shares and their proof). The coordinator is
// played as a malicious one, changing one thing in the LinkDecrypt requests
// it sends:
//   - "one-payload": the sum of cell 0 replaced by one resident's payload
//     ciphertext from the last stage's output (decrypted, it would give
//     that resident's value, without noise);
//   - "pseudonym": the sum replaced by a pseudonym ciphertext of the last
//     output (its "decryption" is the resident's blinded pseudonym);
//   - "forged-finish": a finish share changed, so that the recomputed
//     pseudonyms, hence the sums, would be the coordinator's choice;
//   - "forged-stage": node-3, a stage colluding with the coordinator,
//     signs a tampered output that goes to the other decryptors as its
//     own (its proof verifies for the true output only).
//
// Every honest decryptor refuses before any share leaves it, naming what
// it refuses (the sum's cell, node-3's output, the first stage's finish
// shares), its audit log records the refusal, and nothing is released. The
// same network, honest, releases the exact count.
func TestLinkSumsCheckedByDecryptors(t *testing.T) {
	noRace(t)
	dir := t.TempDir()
	var mode atomic.Value // "", "one-payload", "pseudonym", "forged-finish", "forged-stage"
	mode.Store("")
	var gaveShares atomic.Int32 // decryptors that answered a changed request
	interceptors := func(nodeID string) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			m := mode.Load().(string)
			if info.FullMethod != nodev1.NodeService_LinkDecrypt_FullMethodName || m == "" {
				return h(ctx, req)
			}
			r := proto.Clone(req.(*nodev1.LinkDecryptRequest)).(*nodev1.LinkDecryptRequest)
			last := &nodev1.LinkStagePayload{}
			if err := proto.Unmarshal(r.GetOutputs()[len(r.GetOutputs())-1].GetSigned().GetPayload(), last); err != nil {
				t.Errorf("the last stage's output: %v", err)
				return h(ctx, req)
			}
			outer := last.GetLists()[0] // role 0, cell 0
			switch m {
			case "one-payload":
				r.Sums[0] = outer.GetPayloads()[:linkage.CiphertextSize]
			case "pseudonym":
				r.Sums[0] = outer.GetPseudonyms()[:linkage.CiphertextSize]
			case "forged-finish":
				for i, b := range r.GetFinish().GetShares() {
					if len(b) >= linkage.PointSize {
						copy(r.Finish.Shares[i][:linkage.PointSize], shiftByBase(t, b[:linkage.PointSize]))
						break
					}
				}
			case "forged-stage":
				if nodeID == "node-3" {
					return h(ctx, req) // node-3 colludes: it is not asked to check its own forgery
				}
				for _, o := range r.GetOutputs() {
					if o.GetNodeId() == "node-3" {
						o.Signed = tamperStageOutput(t, dir, o.GetSigned(), r.GetQueryId(), r.GetEpoch())
					}
				}
			}
			resp, err := h(ctx, r)
			if err == nil {
				gaveShares.Add(1)
			}
			return resp, err
		})}
	}
	cl, _ := startLinkProofNetwork(t, dir, interceptors)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	spec := linkProofSpec()

	refused := func(m string, want ...string) {
		t.Helper()
		mode.Store(m)
		defer mode.Store("")
		gaveShares.Store(0)
		st, err := runQuery(ctx, cl, spec)
		if err == nil {
			t.Fatalf("%s: released %v", m, st.GetResult())
		}
		t.Logf("%s: %v", m, err)
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("%s: %v; want %q", m, err, w)
			}
		}
		if n := gaveShares.Load(); n != 0 {
			t.Errorf("%s: %d decryptors gave shares of a changed request", m, n)
		}
		if st.GetResult() != nil {
			t.Errorf("%s: a result was kept: %v", m, st.GetResult())
		}
	}
	refused("one-payload", "the sum asked for cell 0 is not the sum of the cell's matching payloads")
	refused("pseudonym", "the sum asked for cell 0 is not the sum of the cell's matching payloads")
	refused("forged-finish", "link-finish shares refused", "do not match their proof")

	// The forged output reaches a decryptor before node-3 in the stage
	// order: ask until node-3 is not the first stage (then the decryptors
	// after it never look at its output, and the query releases).
	mode.Store("forged-stage")
	named := false
	for try := 0; try < 25 && !named; try++ {
		gaveShares.Store(0)
		st, err := runQuery(ctx, cl, spec)
		if err == nil {
			if got := st.GetResult().GetRows()[0].GetValues()[0].GetValue(); got < residents/2-0.5 || got > residents/2+0.5 {
				t.Fatalf("forged-stage, node-3 first: released %v, want %d", got, residents/2)
			}
			continue
		}
		if !strings.Contains(err.Error(), "(node-3) refused") || !strings.Contains(err.Error(), "not a proven mix of its input") {
			t.Fatalf("forged-stage: %v; want the output of node-3 refused", err)
		}
		named = true
	}
	mode.Store("")
	if !named {
		t.Fatal("node-3 was the first stage in 25 queries")
	}

	// The honest decryptors' audit logs record the refusals.
	actions := map[string]int{}
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		for _, e := range auditLog(t, filepath.Join(dir, id, "audit.log")) {
			switch e.Action {
			case "link.sum_refused", "link.share_proof_failed", "link.stage_proof_failed":
				actions[e.Action]++
			}
		}
	}
	// Two sums refused by the three decryptors; a finish refused by all
	// three; node-3's output by at least one.
	if actions["link.sum_refused"] != 6 || actions["link.share_proof_failed"] != 3 || actions["link.stage_proof_failed"] < 1 {
		t.Errorf("the decryptors' audit logs: %v; want 6 link.sum_refused, 3 link.share_proof_failed, link.stage_proof_failed", actions)
	}

	st, err := runQuery(ctx, cl, spec)
	if err != nil {
		t.Fatalf("honest linked query after the refusals: %v", err)
	}
	if got := st.GetResult().GetRows()[0].GetValues()[0].GetValue(); got < residents/2-0.5 || got > residents/2+0.5 {
		t.Fatalf("released %v, want %d", got, residents/2)
	}
}

// TestLinkedReleaseRecord (issue 21): a query across linked agencies has a
// release record that its analyst checks with nothing but the network CA
// (releasecheck.Check, `fedstat verify`): the participants' signed partial
// headers and commitments, and every mix stage's signed statement of the
// released result, which the stage computes itself from the evidence it
// checks (the proofs of the later stages' mixes, of the finish shares and
// of every decryptor's shares). A count and a payload query verify; a
// record with a changed result, a statement missing, empty or another
// stage's, a participant dropped, or a statement node-3 signs for another
// result (a colluding
// stage) is refused, naming what failed. node-3 stating another result at
// LinkAttest fails the query, naming node-3, and nothing is released.
func TestLinkedReleaseRecord(t *testing.T) {
	noRace(t)
	dir := t.TempDir()
	var lie atomic.Bool
	node3 := func() crypto.Signer {
		id, err := pki.LoadIdentityDir(filepath.Join(dir, "pki"), "node-3")
		if err != nil {
			t.Fatal(err)
		}
		return id.Key
	}
	// restate has node-3 sign st again with the first value of its result
	// moved by one.
	restate := func(s *typesv1.Signed, qid string, epoch uint64) *typesv1.Signed {
		st := &nodev1.LinkReleaseStatement{}
		if err := proto.Unmarshal(s.GetPayload(), st); err != nil {
			t.Fatal(err)
		}
		st.Result.Rows[0].Values[0].Value++
		out, err := protocol.SealLinkRelease(node3(), qid, epoch, "node-3", st, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	interceptors := func(nodeID string) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			if err == nil && nodeID == "node-3" && lie.Load() && info.FullMethod == nodev1.NodeService_LinkAttest_FullMethodName {
				r := req.(*nodev1.LinkAttestRequest)
				a := resp.(*nodev1.LinkAttestResponse)
				a.Statement = restate(a.GetStatement(), r.GetQueryId(), r.GetEpoch())
			}
			return resp, err
		})}
	}
	cl, nw := startLinkProofNetwork(t, dir, interceptors)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	check := func(rec *coordinatorv1.ReleaseRecord, released *typesv1.Result) (*releasecheck.Verdict, error) {
		return releasecheck.Check(rec, releasecheck.Options{CA: nw.Analyst.CA, Released: released, Catalogue: nw.Catalogue})
	}
	run := func(spec *typesv1.QuerySpec) (*coordinatorv1.QueryStatus, *coordinatorv1.ReleaseRecord) {
		t.Helper()
		st, err := runQuery(ctx, cl, spec)
		if err != nil {
			t.Fatalf("%s: %v", spec.GetSql(), err)
		}
		rec, err := cl.ReleaseRecord(ctx, st.GetQueryId())
		if err != nil {
			t.Fatalf("%s: the release record: %v", spec.GetSql(), err)
		}
		v, err := check(rec, st.GetResult())
		if err != nil {
			t.Fatalf("%s: the honest record: %v", spec.GetSql(), err)
		}
		if !v.Linked || len(v.Decryptors) != 3 || len(v.Senders) != 3 || !v.PlanBound {
			t.Errorf("%s: verdict %+v, want a linked release signed by the 3 stages of 3 participants", spec.GetSql(), v)
		}
		return st, rec
	}
	count := linkProofSpec()
	count.Sql = "SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code LIKE 'E11%' AND patient_id IN (SELECT patient_id FROM conditions WHERE code LIKE 'I10%')"
	run(count)
	st, rec := run(linkProofSpec())

	refused := func(name string, rec *coordinatorv1.ReleaseRecord, released *typesv1.Result, want string) {
		t.Helper()
		_, err := check(rec, released)
		if !errors.Is(err, releasecheck.ErrRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want refused: %q", name, err, want)
		}
	}
	// Another result, in the record and as released.
	bad := proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
	bad.Result.Rows[0].Values[0].Value++
	refused("another result", bad, bad.GetResult(), "is not the one")
	// A stage's statement missing.
	bad = proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
	bad.LinkStatements = bad.LinkStatements[1:]
	refused("a statement missing", bad, st.GetResult(), "2 stages signed the release (of 3 stages)")
	// A participant dropped.
	bad = proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
	bad.Senders = bad.Senders[1:]
	refused("a participant dropped", bad, st.GetResult(), "2 senders, the query needs at least 3")
	// A statement empty, or passed off as another stage's.
	bad = proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
	bad.LinkStatements[0].Statement = nil
	refused("an empty statement", bad, st.GetResult(), "does not verify")
	bad = proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
	bad.LinkStatements[0].Statement = bad.LinkStatements[1].GetStatement()
	refused("another stage's statement", bad, st.GetResult(), "does not verify")
	// node-3, colluding, signs another result: the other stages' statements
	// do not follow.
	bad = proto.Clone(rec).(*coordinatorv1.ReleaseRecord)
	bad.Result.Rows[0].Values[0].Value++
	for _, ls := range bad.LinkStatements {
		if ls.GetNodeId() == "node-3" {
			ls.Statement = restate(ls.GetStatement(), rec.GetQueryId(), rec.GetEpoch())
		}
	}
	refused("node-3's statement of another result", bad, bad.GetResult(), "is not the one node-")

	// node-3 states another result at LinkAttest: refused, naming it.
	lie.Store(true)
	st, err := runQuery(ctx, cl, linkProofSpec())
	lie.Store(false)
	if err == nil || !strings.Contains(err.Error(), "the statement of the released totals at node-3") || !strings.Contains(err.Error(), "states another release") {
		t.Fatalf("node-3 stating another result: %v; want the query refused, naming node-3", err)
	}
	if st.GetResult() != nil {
		t.Errorf("a result was kept: %v", st.GetResult())
	}
	// The audit logs: every stage records each statement it signed (three
	// queries: two released, one refused: 3 each), and the coordinator names
	// node-3's statement of another result.
	for _, id := range []string{"node-1", "node-2", "node-3", "coordinator"} {
		attests, mismatch := 0, ""
		for _, e := range auditLog(t, filepath.Join(dir, id, "audit.log")) {
			switch e.Action {
			case "link.attest":
				attests++
			case "link.attest_mismatch":
				mismatch, _ = e.Details["node"].(string)
			}
		}
		switch {
		case id == "coordinator" && mismatch != "node-3":
			t.Errorf("the coordinator's audit log names %q for the statement of another result, want node-3", mismatch)
		case id != "coordinator" && attests != 3:
			t.Errorf("%s's audit log has %d link.attest entries, want 3", id, attests)
		}
	}
}
