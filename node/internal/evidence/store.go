package evidence

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/fedstat/fedstat/internal/kv"
)

// Keys of the node's records in its kv store that this package reads. The
// node writes the epoch record (node/epoch.go); a test there checks that
// StoredEpoch reads what it writes.
var (
	keyAnchor       = []byte("n/audit-head")
	keyEpoch        = []byte("n/epoch")
	keyPendingEpoch = []byte("n/epoch-pending")
)

// Anchor is an audit log head recorded somewhere else than the log.
type Anchor struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// SetAnchor records the audit log's head in the store, in tx (the node does
// it inside every debit's transaction).
func SetAnchor(tx *kv.Txn, a Anchor) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return tx.Set(keyAnchor, b)
}

// WriteAnchor records a in the store with a watermarked update.
func WriteAnchor(db *kv.DB, a Anchor) error {
	_, err := db.UpdateWatermarked(func(tx *kv.Txn) error { return SetAnchor(tx, a) })
	return err
}

// ReadAnchor returns the audit head recorded in the store (ok=false when
// none was).
func ReadAnchor(db *kv.DB) (a Anchor, ok bool, err error) {
	b, err := db.Get(keyAnchor)
	if errors.Is(err, kv.ErrNotFound) {
		return a, false, nil
	}
	if err != nil {
		return a, false, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, false, fmt.Errorf("evidence: the audit head recorded in the store does not decode: %w", err)
	}
	return a, true, nil
}

// Epoch is what the store's epoch record says of the node's key epoch.
type Epoch struct {
	Epoch     uint64 `json:"epoch"`
	Threshold int    `json:"threshold"`
	// Members is the number of members.
	Members int `json:"-"`
	// Installed: the epoch's public key is installed (the ceremony ended).
	Installed bool `json:"-"`
	// Committee lists the members that hold a share of the key (a nonzero
	// Shamir point): every member, unless the epoch has a decryption
	// committee.
	Committee []string `json:"-"`
}

// NeedsThreshold reports whether committee members decrypt with threshold
// shares (epoch-N-threshold) rather than with their own CKG secret
// (epoch-N).
func (e Epoch) NeedsThreshold() bool { return e.Threshold < len(e.Committee) }

// OnCommittee reports whether node id holds a share of the epoch's key (a
// member off the decryption committee has no key file of it).
func (e Epoch) OnCommittee(id string) bool { return slices.Contains(e.Committee, id) }

// StoredEpoch reads the node's epoch record (ok=false when there is none).
func StoredEpoch(db *kv.DB) (e Epoch, ok bool, err error) {
	b, err := db.Get(keyEpoch)
	if errors.Is(err, kv.ErrNotFound) {
		return e, false, nil
	}
	if err != nil {
		return e, false, err
	}
	var rec struct {
		Epoch     uint64 `json:"epoch"`
		Threshold int    `json:"threshold"`
		Members   []struct {
			ID    string `json:"id"`
			Point uint64 `json:"point"`
		} `json:"members"`
		PublicKey []byte `json:"public_key"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return e, false, fmt.Errorf("evidence: the epoch record does not decode: %w", err)
	}
	e = Epoch{Epoch: rec.Epoch, Threshold: rec.Threshold, Members: len(rec.Members), Installed: len(rec.PublicKey) > 0}
	for _, m := range rec.Members {
		if m.Point != 0 {
			e.Committee = append(e.Committee, m.ID)
		}
	}
	if len(e.Committee) == 0 {
		// A record without points (none a node writes): every member.
		for _, m := range rec.Members {
			e.Committee = append(e.Committee, m.ID)
		}
	}
	return e, true, nil
}

// PendingEpoch reads the number of the node's pending key epoch: one whose
// key generation ran but whose public key is not installed yet (a ceremony
// in progress, or one that failed); ok=false when there is none. Its key
// file is not a stray.
func PendingEpoch(db *kv.DB) (epoch uint64, ok bool, err error) {
	b, err := db.Get(keyPendingEpoch)
	if errors.Is(err, kv.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var rec struct {
		Epoch uint64 `json:"epoch"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return 0, false, fmt.Errorf("evidence: the pending epoch record does not decode: %w", err)
	}
	return rec.Epoch, true, nil
}

// CopyEpoch copies the epoch record of from into to (watermarked), for a
// restore that keeps a newer epoch than its backup's.
func CopyEpoch(from, to *kv.DB) error {
	b, err := from.Get(keyEpoch)
	if err != nil {
		return err
	}
	_, err = to.UpdateWatermarked(func(tx *kv.Txn) error { return tx.Set(keyEpoch, b) })
	return err
}
