package node

import (
	"context"
	"fmt"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// On-demand proofs of key-switch shares (docs/crypto.md, "Proofs of
// key-switch shares", "Checked dealing"). A decryptor's key-switch shares
// go out unproven: a proof costs about 9 ms more than the share, and the
// coordinator's check of it 4 ms, which every release would pay for each
// of its decryptors. The decryptor keeps each share's witness in memory
// and proves the shares it released when the coordinator asks, which it
// does when the release's total is refused: the decryptor whose share was
// not well formed cannot prove it, and is named. Proofs are against the
// member's CKG share (threshold = committee) or its threshold image
// (threshold below the committee). A witness with the share gives the
// member's secret share: it is never stored, and wiped when evicted.

// maxKeptWitnesses bounds the releases whose witnesses a node keeps (the
// coordinator asks right after it combines the shares).
const maxKeptWitnesses = 32

// keptWitness is what proves one release's shares.
type keptWitness struct {
	epoch     uint64
	witnesses []*collective.ShareWitness
	contexts  [][]byte
	held      bool // kept by keepWitness: wiped on eviction, not by the caller
}

func (k *keptWitness) wipe() {
	for _, w := range k.witnesses {
		w.Wipe()
	}
	k.witnesses, k.contexts = nil, nil
}

// keepWitness keeps the witnesses of qid's shares, evicting the oldest
// release's beyond maxKeptWitnesses.
func (n *Node) keepWitness(qid string, k *keptWitness) {
	n.witnessMu.Lock()
	defer n.witnessMu.Unlock()
	if n.witnesses == nil {
		n.witnesses = map[string]*keptWitness{}
	}
	if old := n.witnesses[qid]; old != nil {
		old.wipe()
	} else {
		n.witnessOrder = append(n.witnessOrder, qid)
	}
	k.held = true
	n.witnesses[qid] = k
	for len(n.witnessOrder) > maxKeptWitnesses {
		oldest := n.witnessOrder[0]
		n.witnessOrder = n.witnessOrder[1:]
		if w := n.witnesses[oldest]; w != nil {
			w.wipe()
			delete(n.witnesses, oldest)
		}
	}
}

// proveKeySwitch answers ProveKeySwitch: the proofs of the shares this
// node released for the query, from their kept witnesses.
func (n *Node) proveKeySwitch(ctx context.Context, req *nodev1.ProveKeySwitchRequest) (*nodev1.ProveKeySwitchResponse, error) {
	if _, err := rpc.Require(ctx, pki.RoleCoordinator); err != nil {
		return nil, err
	}
	n.witnessMu.Lock()
	defer n.witnessMu.Unlock()
	k := n.witnesses[req.GetQueryId()]
	if k == nil || k.epoch != req.GetEpoch() {
		return nil, fmt.Errorf("%w: no key-switch share of %s in epoch %d is kept to prove (none was made here, or the node restarted, or more than %d releases since)",
			ErrBadRequest, req.GetQueryId(), req.GetEpoch(), maxKeptWitnesses)
	}
	resp := &nodev1.ProveKeySwitchResponse{}
	for i, w := range k.witnesses {
		proof, err := w.Prove(k.contexts[i])
		if err != nil {
			return nil, err
		}
		resp.Proofs = append(resp.Proofs, proof)
	}
	n.record(ctx, "coordinator", "release.share_proven", req.GetQueryId(), map[string]any{"epoch": req.GetEpoch(), "shares": len(k.witnesses)})
	return resp, nil
}
