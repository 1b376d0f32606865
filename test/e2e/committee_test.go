package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fedstat/fedstat/cmd/fedstat/demo"
	"github.com/fedstat/fedstat/coordinator"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// committeeOf is the coordinator's decryption committee, sorted.
func committeeOf(t *testing.T, nw *demo.Network) (uint64, []string) {
	t.Helper()
	ns := nw.Coordinator.NodesStatus(context.Background())
	var out []string
	for _, n := range ns.GetNodes() {
		if n.GetOnCommittee() {
			out = append(out, n.GetNodeId())
		}
	}
	if int(ns.GetCommittee()) != len(out) {
		t.Fatalf("nodes status says a committee of %d and marks %d nodes", ns.GetCommittee(), len(out))
	}
	return ns.GetEpoch(), out
}

// TestCommittee: a network of 7 nodes with a decryption committee of K = 4
// (T = 3). Only the committee makes key material in the ceremony (the
// others send nothing and hold no key file); a member off the committee
// refuses to decrypt; releases are decrypted by committee members only.
// Then a committee member is killed while queries run back to back: the
// queries keep releasing with T of the remaining committee, the coordinator
// replaces the member after CommitteeReplaceAfter with a new key epoch
// (a rotation: the three that are still up keep their seats, a member off
// the committee takes the fourth), and no query fails across the rotation
// (only the one running at the instant of the kill may): those that
// started in the old epoch finish in it (the nodes serve the epoch they
// replaced for node.PreviousEpochGrace).
func TestCommittee(t *testing.T) {
	data, err := demo.Synthetic(7, 200, 5)
	if err != nil {
		t.Fatal(err)
	}
	nw := startFault(t, demo.Options{Data: data, Threshold: 3, Committee: 4, MinNodes: 3, CoordinatorConfig: func(c *coordinator.Config) {
		c.AutoEpoch = true
		c.HealthInterval, c.EpochDebounce = 100*time.Millisecond, 200*time.Millisecond
		c.CeremonyRetry = coordinator.Backoff{Initial: 200 * time.Millisecond, Max: time.Second}
		c.CommitteeReplaceAfter = 2 * time.Second
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cc := nw.Coordinator.LastCeremony()
	if cc.Members != 7 || cc.Committee != 4 || cc.Threshold != 3 {
		t.Fatalf("ceremony of %d members, committee %d, threshold %d; want 7, 4, 3", cc.Members, cc.Committee, cc.Threshold)
	}
	if cc.MemberSent != 0 || cc.CommitteeSent == 0 {
		t.Fatalf("a member off the committee sent %d bytes in the ceremony (want 0), a committee member %d", cc.MemberSent, cc.CommitteeSent)
	}
	epoch, committee := committeeOf(t, nw)
	if len(committee) != 4 {
		t.Fatalf("committee %v, want 4 members", committee)
	}
	var off []string
	for _, id := range nodeIDs(nw) {
		secret := filepath.Join(nw.Dir, id, "keys", fmt.Sprintf("epoch-%d.secret", epoch))
		_, err := os.Stat(secret)
		if on := slices.Contains(committee, id); on != (err == nil) {
			t.Fatalf("%s (on the committee: %v): key file %s: %v", id, on, secret, err)
		}
		if !slices.Contains(committee, id) {
			off = append(off, id)
		}
	}

	// A curious coordinator asks a member off the committee to decrypt.
	nodes := coordinatorClients(t, nw)
	_, err = nodes[off[0]].KeySwitch(ctx, &nodev1.KeySwitchRequest{QueryId: "q-off", Epoch: epoch, Spec: secSpec(3, 3),
		Decryptors: []string{off[0], committee[0], committee[1]}})
	wantCode(t, "key switch at a member off the committee", err, codes.FailedPrecondition, "committee")

	analyst := dialCoordinator(t, nw, nil)
	spec := &typesv1.QuerySpec{Sql: demo.CohortQuery, MinNodes: 3}
	decryptors := func(st *coordinatorv1.QueryStatus) []string {
		var out []string
		for _, np := range st.GetNodes() {
			if np.GetStatus() == "decrypted" {
				out = append(out, np.GetNodeId())
			}
		}
		return out
	}
	st, err := runQuery(ctx, analyst, spec)
	if err != nil {
		t.Fatal(err)
	}
	if d := decryptors(st); len(d) != 3 || slices.ContainsFunc(d, func(id string) bool { return !slices.Contains(committee, id) }) {
		t.Fatalf("decryptors %v, want 3 of the committee %v", d, committee)
	}

	// Queries back to back while a committee member dies and is replaced.
	type outcome struct {
		epoch     uint64
		err       error
		start, at time.Time
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			time.Sleep(100 * time.Millisecond) // queries back to back, leaving the rotation some CPU
			start := time.Now()
			st, err := runQuery(ctx, analyst, spec)
			mu.Lock()
			outcomes = append(outcomes, outcome{st.GetEpoch(), err, start, time.Now()})
			mu.Unlock()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	victim := committee[1]
	killed := time.Now()
	for _, n := range nw.Nodes {
		if n.ID() == victim {
			n.Close()
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	var newEpoch uint64
	var newCommittee []string
	for time.Now().Before(deadline) {
		if e, c := committeeOf(t, nw); e > epoch {
			newEpoch, newCommittee = e, c
			t.Logf("epoch %d with committee %v %s after the kill", e, c, time.Since(killed).Round(time.Millisecond))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if newEpoch == 0 {
		t.Fatalf("no new key epoch within 90 s of killing committee member %s", victim)
	}
	// A few queries in the new epoch.
	for time.Now().Before(deadline) {
		mu.Lock()
		n := 0
		for _, o := range outcomes {
			if o.err == nil && o.epoch == newEpoch {
				n++
			}
		}
		mu.Unlock()
		if n >= 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	<-done

	// The query running at the instant of the kill may fail (the victim
	// may have been one of its decryptors after the others had handed out
	// their shares: nothing is decrypted, the analyst asks again); every
	// other one must release.
	var failed []error
	oldAfterKill, inNew := 0, 0
	for _, o := range outcomes {
		switch {
		case o.err != nil && o.start.Before(killed) && o.at.After(killed):
			t.Logf("the query running when %s was killed: %v", victim, o.err)
		case o.err != nil:
			failed = append(failed, o.err)
		case o.epoch == epoch && o.at.After(killed):
			oldAfterKill++
		case o.epoch == newEpoch:
			inNew++
		}
	}
	t.Logf("%d queries: %d released in epoch %d after %s was killed, %d in epoch %d; new committee %v",
		len(outcomes), oldAfterKill, epoch, victim, inNew, newEpoch, newCommittee)
	if len(failed) > 0 {
		t.Fatalf("%d of %d queries failed across the committee rotation, the first: %v", len(failed), len(outcomes), errors.Join(failed[0]))
	}
	if oldAfterKill == 0 || inNew < 3 {
		t.Fatalf("%d queries released in the old epoch with a committee member down, %d in the new; want at least 1 and 3", oldAfterKill, inNew)
	}
	if len(newCommittee) != 4 || slices.Contains(newCommittee, victim) {
		t.Fatalf("new committee %v: want 4 members without %s", newCommittee, victim)
	}
	for _, id := range committee {
		if id != victim && !slices.Contains(newCommittee, id) {
			t.Fatalf("new committee %v lost %s, which was up: a committee changes only the seats it must", newCommittee, id)
		}
	}
	st, err = runQuery(ctx, analyst, spec)
	if err != nil {
		t.Fatal(err)
	}
	if d := decryptors(st); len(d) != 3 || slices.ContainsFunc(d, func(id string) bool { return !slices.Contains(newCommittee, id) }) {
		t.Fatalf("decryptors after the rotation %v, want 3 of the new committee %v", d, newCommittee)
	}
}
