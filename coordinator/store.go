package coordinator

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/kv"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
)

// The coordinator's durable state, in its kv store:
//
//	c/q/<query id>  QueryStatus (protobuf), written at submit, when it starts
//	                to wait for an approval, and at the end
//	c/qwait/<id>    a query's wait record while it waits (waiting.go)
//	c/epoch         the current key epoch (public information only)
//	c/node/<id>     the node registry: admitted nodes and their addresses
var (
	prefixQuery = []byte("c/q/")
	keyEpoch    = []byte("c/epoch")
	prefixNode  = []byte("c/node/")
)

type nodeRecord struct {
	ID         string `json:"id"`
	Addr       string `json:"addr"`
	GossipAddr string `json:"gossip_addr,omitempty"`
	Admitted   int64  `json:"admitted_unix_ms"`
	LastSeen   int64  `json:"last_seen_unix_ms,omitempty"`
	// Excluded is the reason the node is left out of key epochs (empty
	// when it is not), since ExcludedAt, with the certificate digest it had.
	Excluded     string `json:"excluded,omitempty"`
	ExcludedAt   int64  `json:"excluded_unix_ms,omitempty"`
	ExcludedCert []byte `json:"excluded_cert_sha256,omitempty"`
}

// saveNode records a registry entry durably.
func (c *Coordinator) saveNode(r nodeRecord) error {
	if c.cfg.DB == nil {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return c.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Set(append(append([]byte{}, prefixNode...), r.ID...), b) })
}

// loadNodes restores the registry (nodes start as not alive until gossip or
// a call shows them).
func (c *Coordinator) loadNodes() ([]nodeRecord, error) {
	var out []nodeRecord
	if c.cfg.DB == nil {
		return nil, nil
	}
	err := c.cfg.DB.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefixNode, func(_, v []byte) error {
			var r nodeRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("coordinator: stored node: %w", err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

type epochRecord struct {
	ID        uint64      `json:"id"`
	Threshold int         `json:"threshold"`
	Params    string      `json:"params"`
	PublicKey []byte      `json:"public_key"`
	Members   []memberRec `json:"members"`
	Created   int64       `json:"created_unix_ms"`
	// Link is the linkage public key and the committee's verification
	// keys (absent for an epoch without one, and in records of versions
	// before the proofs of decryption shares).
	Link *linkKeyRec `json:"link,omitempty"`
	// CRS and CKGShares: the key ceremony's public inputs (absent in
	// records of versions before the proofs of key-switch shares).
	CRS       []byte            `json:"crs,omitempty"`
	CKGShares map[string][]byte `json:"ckg_shares,omitempty"`
	// ThresholdImages: the committee's threshold images (absent before
	// checked dealing, and in epochs with threshold = committee).
	ThresholdImages map[string][]byte `json:"threshold_images,omitempty"`
}

type linkKeyRec struct {
	X      []byte            `json:"x"`
	Verify map[uint64][]byte `json:"verify"`
}

type memberRec struct {
	ID    string `json:"id"`
	Cert  []byte `json:"cert"`
	Point uint64 `json:"point"`
}

// saveEpoch records e durably.
func (c *Coordinator) saveEpoch(e *epoch) error {
	if c.cfg.DB == nil {
		return nil
	}
	pk, err := e.PublicKey.MarshalBinary()
	if err != nil {
		return err
	}
	rec := epochRecord{ID: e.ID, Threshold: e.Threshold, Params: c.params.Name(), PublicKey: pk, Created: e.Created.UnixMilli(), CRS: e.CRS, CKGShares: e.CKGShares, ThresholdImages: e.ThresholdImages}
	for _, m := range e.Members {
		rec.Members = append(rec.Members, memberRec{ID: m.ID, Cert: m.Cert.Raw, Point: m.Point})
	}
	if e.Link != nil {
		rec.Link = &linkKeyRec{X: e.Link.X[:], Verify: map[uint64][]byte{}}
		for pt, y := range e.Link.Verify {
			rec.Link.Verify[pt] = y[:]
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return c.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Set(keyEpoch, b) })
}

// loadState restores the key epoch and the query history at start. Queries
// that were running when the coordinator stopped are marked failed: their
// partials were in memory only, and nothing of them was released.
func (c *Coordinator) loadState() error {
	if c.cfg.DB == nil {
		return nil
	}
	b, err := c.cfg.DB.Get(keyEpoch)
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return err
	default:
		var rec epochRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("coordinator: stored epoch: %w", err)
		}
		if rec.Params != c.params.Name() {
			return fmt.Errorf("coordinator: stored key epoch %d uses parameter set %s, configured is %s", rec.ID, rec.Params, c.params.Name())
		}
		pk, err := homomorphic.UnmarshalPublicKey(c.params, rec.PublicKey)
		if err != nil {
			return fmt.Errorf("coordinator: stored epoch public key: %w", err)
		}
		e := &epoch{ID: rec.ID, Threshold: rec.Threshold, PublicKey: pk, CRS: rec.CRS, CKGShares: rec.CKGShares, ThresholdImages: rec.ThresholdImages}
		for _, m := range rec.Members {
			cert, err := x509.ParseCertificate(m.Cert)
			if err != nil {
				return fmt.Errorf("coordinator: stored epoch member %s: %w", m.ID, err)
			}
			e.Members = append(e.Members, epochMember{ID: m.ID, Cert: cert, Point: m.Point})
		}
		if rec.Link != nil {
			if e.Link, err = parseLinkKey(rec.Link); err != nil {
				return fmt.Errorf("coordinator: stored epoch %d: linkage key: %w", rec.ID, err)
			}
		}
		c.epoch = e
	}
	nodes, err := c.loadNodes()
	if err != nil {
		return err
	}
	for _, r := range nodes {
		if err := c.setNode(r.ID, r.Addr, false); err != nil {
			return err
		}
		n := c.reg[r.ID]
		n.GossipAddr = r.GossipAddr
		if r.LastSeen > 0 {
			n.LastSeen = time.UnixMilli(r.LastSeen)
		}
		if r.Admitted > 0 {
			n.Admitted = time.UnixMilli(r.Admitted)
		}
		if r.Excluded != "" {
			n.Excluded = &exclusion{Reason: r.Excluded, At: time.UnixMilli(r.ExcludedAt), CertSHA256: r.ExcludedCert}
		}
	}
	var interrupted []*coordinatorv1.QueryStatus
	err = c.cfg.DB.View(func(tx *kv.Txn) error {
		return tx.Iterate(prefixQuery, func(_, v []byte) error {
			st := &coordinatorv1.QueryStatus{}
			if err := proto.Unmarshal(v, st); err != nil {
				return fmt.Errorf("coordinator: stored query: %w", err)
			}
			if !terminal(st.State) {
				var rec waitRecord
				b, err := tx.Get(waitKey(st.QueryId))
				switch {
				case err == nil && json.Unmarshal(b, &rec) == nil:
					// It was waiting for an approval: Run resumes it.
					c.toResume = append(c.toResume, storedWait{st: st, rec: rec})
				case err != nil && !errors.Is(err, kv.ErrNotFound):
					return err
				default:
					st.State = coordinatorv1.State_STATE_FAILED
					st.Error = interruptedText(st)
					st.AwaitingApproval = nil
					st.FinishedUnixMs = c.cfg.Now().UnixMilli()
					interrupted = append(interrupted, st)
				}
			}
			q := &query{id: st.QueryId, st: st, changed: make(chan struct{}), cancel: func() {}}
			c.queries[st.QueryId] = q
			c.order = append(c.order, st.QueryId)
			return nil
		})
	})
	if err != nil {
		return err
	}
	sort.Slice(c.order, func(i, j int) bool {
		a, b := c.queries[c.order[i]].st, c.queries[c.order[j]].st
		if a.SubmittedUnixMs != b.SubmittedUnixMs {
			return a.SubmittedUnixMs < b.SubmittedUnixMs
		}
		return a.QueryId < b.QueryId
	})
	for _, st := range interrupted {
		if err := c.saveQuery(st); err != nil {
			return err
		}
		c.log.Warn("query interrupted by a restart marked failed", "query_id", st.QueryId)
	}
	return nil
}

// saveQuery records the status of a query durably.
func (c *Coordinator) saveQuery(st *coordinatorv1.QueryStatus) error {
	if c.cfg.DB == nil {
		return nil
	}
	b, err := proto.Marshal(st)
	if err != nil {
		return err
	}
	return c.cfg.DB.Update(func(tx *kv.Txn) error { return tx.Set(append(append([]byte{}, prefixQuery...), st.QueryId...), b) })
}

// parseLinkKey decodes a stored linkage public key, checking every point.
func parseLinkKey(r *linkKeyRec) (*linkage.PublicKey, error) {
	x, err := linkage.ParsePoint(r.X)
	if err != nil {
		return nil, fmt.Errorf("X: %w", err)
	}
	k := &linkage.PublicKey{X: x, Verify: make(map[uint64]linkage.Point, len(r.Verify))}
	for pt, b := range r.Verify {
		if k.Verify[pt], err = linkage.ParsePoint(b); err != nil {
			return nil, fmt.Errorf("verification key of point %d: %w", pt, err)
		}
	}
	return k, nil
}
