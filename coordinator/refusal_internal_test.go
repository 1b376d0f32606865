package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// TestJudgeRefusals: the coordinator checks a partial a decryptor refuses
// (a PartialRefusal detail) once, however many decryptors refuse it. A
// partial whose proofs fail ends the release naming its sender and every
// decryptor that refused it (release.partial_refused); a refusal of a
// partial whose proofs verify becomes the decryptor's failure
// (release.refusal_unfounded); a refusal naming no partial of the release,
// or no partial at all, is left as it was; and a compact release (no
// judge) judges nothing. The proofs here are stand-ins whose result the
// test sets; the real checks behind them are TestVerifyPartialChecksProofs'
// and, end to end, TestFaultMaliciousNode's and TestFalsePartialRefusal's.
func TestJudgeRefusals(t *testing.T) {
	c, path := auditedCoordinator(t)
	calls := map[string]int{}
	proofs := func(node string, bad bool) func() error {
		return func() error {
			calls[node]++
			if bad {
				return errors.New("ciphertext 0: proof of encryption refused: injected")
			}
			return nil
		}
	}
	parts := []partial{
		{node: "node-1", proofs: proofs("node-1", false)},
		{node: "node-3", proofs: proofs("node-3", true)},
		{node: "node-5"}, // checked as it arrived
	}
	refusal := func(from ...string) error {
		s := status.New(codes.InvalidArgument, "node: partial rejected: injected")
		for _, f := range from {
			var err error
			if s, err = s.WithDetails(&nodev1.PartialRefusal{NodeId: f}); err != nil {
				t.Fatal(err)
			}
		}
		return callError(s.Err()) // as the coordinator's calls wrap it
	}
	newQuery := func() *query {
		return &query{id: "q-judge", changed: make(chan struct{}), st: &coordinatorv1.QueryStatus{Nodes: []*coordinatorv1.NodeProgress{{NodeId: "node-1"}, {NodeId: "node-3"}}}}
	}
	ctx := context.Background()

	// A bad partial, refused by two decryptors: named once, its proofs
	// checked once; node-2's false refusal of node-1 is node-2's.
	q := newQuery()
	judge := newPartialJudge(parts)
	plain := errors.New("unreachable")
	errs := []error{refusal("node-3"), nil, refusal("node-1"), plain, refusal("node-3", "node-9"), refusal("node-5")}
	set := []string{"dec-a", "dec-b", "node-2", "dec-d", "dec-e", "dec-f"}
	err := c.judgeRefusals(ctx, q, set, errs, judge)
	if err == nil {
		t.Fatal("a partial whose proofs fail: the release goes on")
	}
	for _, want := range []string{"node-3 sent a partial whose proofs of encryption fail", "node-3: partial rejected: ciphertext 0: proof of encryption refused",
		"refused by dec-a, dec-e"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if calls["node-3"] != 1 || calls["node-1"] != 1 {
		t.Errorf("proofs checked %v times, want node-3's and node-1's once each", calls)
	}
	if !strings.Contains(errs[2].Error(), "it refused node-1's partial, whose proofs of encryption the coordinator checked and found good") {
		t.Errorf("node-2's false refusal: %v", errs[2])
	}
	if errs[3] != plain {
		t.Errorf("a refusal naming no partial was changed: %v", errs[3])
	}
	if !strings.Contains(errs[5].Error(), "found good") {
		t.Errorf("a refusal of a partial checked as it arrived: %v", errs[5])
	}
	if np := q.st.Nodes[1]; np.GetStatus() != "failed" || !strings.Contains(np.GetError(), "partial rejected") {
		t.Errorf("node-3's progress: %q %q", np.GetStatus(), np.GetError())
	}

	// Only a false refusal: the release goes on, node-2's error says why;
	// node-1's proofs are not checked again.
	errs = []error{nil, refusal("node-1")}
	if err := c.judgeRefusals(ctx, newQuery(), []string{"node-1", "node-2"}, errs, judge); err != nil {
		t.Fatalf("a false refusal ended the release: %v", err)
	}
	if calls["node-1"] != 1 || !strings.Contains(errs[1].Error(), "found good") {
		t.Errorf("node-1 checked %d times; node-2's error %v", calls["node-1"], errs[1])
	}

	// A compact release judges nothing.
	errs = []error{refusal("node-3")}
	if err := c.judgeRefusals(ctx, newQuery(), []string{"dec-a"}, errs, nil); err != nil || calls["node-3"] != 1 {
		t.Errorf("no judge: %v, node-3 checked %d times", err, calls["node-3"])
	}

	// The audit log names the sender of the bad partial with its refusers,
	// and each decryptor whose refusal did not hold.
	var got []string
	for _, e := range auditEntries(t, path) {
		got = append(got, e.Action+" "+e.Details["node"].(string))
	}
	want := "[release.refusal_unfounded node-2 release.refusal_unfounded dec-f release.partial_refused node-3 release.refusal_unfounded node-2]"
	if fmt.Sprint(got) != want {
		t.Errorf("audit entries %v, want %s", got, want)
	}
}
