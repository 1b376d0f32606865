package node

import (
	"errors"
	"fmt"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/node/internal/keystore"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// The node's readiness report: can it do its part in a key epoch? The
// coordinator reads it (InfoResponse.epoch_status) to choose decryptors and
// to notice a member that lost its keys, and the node's /readyz shows it.

// ErrKeysUnavailable: the node cannot use its own key material of an epoch
// (a share file missing, unreadable or malformed). Its text names the file's
// role and epoch, never key material or paths.
var ErrKeysUnavailable = errors.New("node: this node cannot use its key shares")

// EpochReady reports whether this node can do its part in key epoch id: id
// is its active (installed) epoch, and its secret key share and, when the
// epoch's threshold is below its number of members, its threshold share and,
// when the epoch has a linkage key, its linkage-key share load from the key
// store and decode. It reads the files at every call, so a share
// deleted or damaged after start is seen. It is safe for concurrent use.
func (n *Node) EpochReady(id uint64) error {
	e, err := n.current()
	if err != nil {
		return err
	}
	if e.Epoch != id {
		return fmt.Errorf("%w: asked about epoch %d, this node is at epoch %d", ErrWrongEpoch, id, e.Epoch)
	}
	if !e.onCommittee(n.id) {
		// It encrypts under the committee's key and holds none: ready.
		return nil
	}
	if _, err := n.loadSecret(e); err != nil {
		return err
	}
	if e.thresholdShared() {
		if _, err := n.loadThresholdShare(e); err != nil {
			return err
		}
	}
	if e.Link != nil {
		// Without it the node can neither mix nor decrypt a query across
		// linked agencies: reported like the other shares, so the network
		// re-keys.
		if _, err := n.loadLinkShare(e); err != nil {
			return err
		}
	}
	return nil
}

// epochStatus is the readiness report of Info.
func (n *Node) epochStatus() *nodev1.EpochStatus {
	n.mu.RLock()
	st := &nodev1.EpochStatus{LatestEpoch: n.latestEpoch()}
	if n.epoch != nil && n.epoch.PublicKey != nil {
		st.Epoch = n.epoch.Epoch
	}
	n.mu.RUnlock()
	if st.Epoch == 0 {
		st.Problem = "no key epoch"
		return st
	}
	if err := n.EpochReady(st.Epoch); err != nil {
		st.Problem = err.Error()
		return st
	}
	st.Ready = true
	return st
}

// loadSecret reads and decodes the node's secret key share of e.
func (n *Node) loadSecret(e *epochState) (*homomorphic.SecretKeyShare, error) {
	b, err := n.keys.Get(secretName(e.Epoch))
	if err != nil {
		return nil, fmt.Errorf("%w: secret key share of epoch %d: %s", ErrKeysUnavailable, e.Epoch, keyProblem(err))
	}
	sk, err := homomorphic.UnmarshalSecretKeyShare(e.Params, b)
	if err != nil {
		return nil, fmt.Errorf("%w: secret key share of epoch %d: malformed", ErrKeysUnavailable, e.Epoch)
	}
	return sk, nil
}

// loadThresholdShare reads and decodes the node's threshold share of e.
func (n *Node) loadThresholdShare(e *epochState) (*collective.ThresholdShare, error) {
	b, err := n.keys.Get(thresholdName(e.Epoch))
	if err != nil {
		return nil, fmt.Errorf("%w: threshold share of epoch %d: %s", ErrKeysUnavailable, e.Epoch, keyProblem(err))
	}
	ts, err := collective.UnmarshalThresholdShare(e.Params, b)
	if err != nil {
		return nil, fmt.Errorf("%w: threshold share of epoch %d: malformed", ErrKeysUnavailable, e.Epoch)
	}
	return ts, nil
}

// keyProblem says in a few words why the key store could not give a share.
func keyProblem(err error) string {
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return "missing"
	case errors.Is(err, keystore.ErrInsecure):
		return "its file is readable by group or others"
	case errors.Is(err, keystore.ErrDamaged):
		return "damaged (truncated, or it fails its checksum)"
	case errors.Is(err, keystore.ErrSealed):
		return "cannot be opened (damaged, or not sealed with this operator key)"
	default:
		return "unreadable"
	}
}
