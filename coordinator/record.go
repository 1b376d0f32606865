package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/releasecheck"
	"github.com/fedstat/fedstat/internal/rpc"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
	typesv1 "github.com/fedstat/fedstat/proto/fedstat/types/v1"
)

// The release record of a query (coordinator/v1 ReleaseRecord): the
// evidence `fedstat verify` checks (internal/releasecheck), kept for
// Config.ReleaseRecordRetention under c/release-record/<query id>, or in
// memory when the coordinator has no store.

var prefixReleaseRecord = []byte("c/release-record/")

// records holds the release records of a coordinator without a store.
type records struct {
	mu sync.Mutex
	m  map[string]*coordinatorv1.ReleaseRecord
}

// keepReleaseRecord builds and keeps the release record of q, released as
// res from the request req (partials' headers, commitments, sum, target
// key), the decryptors' signed shares, the senders' range proofs (parts)
// and the result key rk. The key goes
// into the record only when every decrypted total is determined by res
// (releasecheck.Disclosable); it decrypts this query's switched sum only.
// A record that cannot be kept is logged: the release stands without it.
func (c *Coordinator) keepReleaseRecord(q *query, e *epoch, req *nodev1.KeySwitchRequest, parts []partial, shares []*nodev1.NodeSigned, rk *homomorphic.ResultKey, res *typesv1.Result) {
	rec := &coordinatorv1.ReleaseRecord{
		QueryId: q.id, Epoch: e.ID, Spec: req.GetSpec(), Params: c.params.Name(), Sum: req.GetSum(),
		TargetPublicKey: req.GetTargetPublicKey(), Result: res, ReleasedUnixMs: c.cfg.Now().UnixMilli(),
	}
	seen := map[string]bool{}
	cert := func(id string) {
		if m := e.member(id); m.Cert != nil && !seen[id] {
			seen[id] = true
			rec.Certificates = append(rec.Certificates, m.Cert.Raw)
		}
	}
	commits := map[string]*typesv1.Signed{}
	for _, cm := range req.GetCommits() {
		commits[cm.GetNodeId()] = cm.GetSigned()
	}
	proofs := map[string][]byte{}
	for _, pt := range parts {
		proofs[pt.node] = pt.ranges.Proof
	}
	for _, p := range req.GetPartials() {
		rec.Senders = append(rec.Senders, &coordinatorv1.ReleaseSender{NodeId: p.GetNodeId(), Partial: p.GetSigned(), Commitment: commits[p.GetNodeId()],
			RangeProof: proofs[p.GetNodeId()]})
		cert(p.GetNodeId())
	}
	for _, s := range shares {
		rec.Decryptors = append(rec.Decryptors, &coordinatorv1.ReleaseDecryptor{NodeId: s.GetNodeId(), Share: s.GetSigned()})
		cert(s.GetNodeId())
	}
	if why := releasecheck.Disclosable(q.plan, res); why != nil {
		rec.ResultKeyWithheld = why.Error()
	} else if b, err := rk.MarshalBinary(); err == nil {
		rec.ResultKey = b
	}
	if err := c.saveReleaseRecord(rec); err != nil {
		c.log.Error("could not keep the release record", "query_id", q.id, "err", err)
	}
}

// keepLinkRecord builds and keeps the release record of a query across
// linked agencies, released as res: the participants' signed partial
// headers (without their payloads) and their commitments to the set, and
// every stage's signed statement of the released totals. There is no sum,
// key switch or result key: the statements carry the totals, and the
// verifier checks that T stages signed them for this set.
func (c *Coordinator) keepLinkRecord(q *query, e *epoch, partials, commits []*nodev1.NodeSigned, statements []*coordinatorv1.ReleaseLinkStatement, res *typesv1.Result) {
	rec := &coordinatorv1.ReleaseRecord{
		QueryId: q.id, Epoch: e.ID, Spec: q.st.Spec, Params: c.params.Name(), Result: res, ReleasedUnixMs: c.cfg.Now().UnixMilli(),
		LinkStatements: statements,
	}
	seen := map[string]bool{}
	cert := func(id string) {
		if m := e.member(id); m.Cert != nil && !seen[id] {
			seen[id] = true
			rec.Certificates = append(rec.Certificates, m.Cert.Raw)
		}
	}
	byNode := map[string]*typesv1.Signed{}
	for _, cm := range commits {
		byNode[cm.GetNodeId()] = cm.GetSigned()
	}
	for _, p := range partials {
		header := &typesv1.Signed{Header: p.GetSigned().GetHeader(), Signature: p.GetSigned().GetSignature()}
		rec.Senders = append(rec.Senders, &coordinatorv1.ReleaseSender{NodeId: p.GetNodeId(), Partial: header, Commitment: byNode[p.GetNodeId()]})
		cert(p.GetNodeId())
	}
	for _, st := range statements {
		cert(st.GetNodeId())
	}
	rec.ResultKeyWithheld = "a query across linked agencies has no result key: its stages' signed statements carry the totals"
	if err := c.saveReleaseRecord(rec); err != nil {
		c.log.Error("could not keep the release record", "query_id", q.id, "err", err)
	}
}

// saveReleaseRecord stores rec and deletes the records older than the
// retention.
func (c *Coordinator) saveReleaseRecord(rec *coordinatorv1.ReleaseRecord) error {
	cutoff := c.cfg.Now().Add(-c.cfg.ReleaseRecordRetention).UnixMilli()
	if c.cfg.DB == nil {
		c.records.mu.Lock()
		defer c.records.mu.Unlock()
		if c.records.m == nil {
			c.records.m = map[string]*coordinatorv1.ReleaseRecord{}
		}
		for id, r := range c.records.m {
			if r.GetReleasedUnixMs() < cutoff {
				delete(c.records.m, id)
			}
		}
		c.records.m[rec.GetQueryId()] = rec
		return nil
	}
	b, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	// Pruning reads the time index (prefixReleaseRecordAt: the release time
	// in 20 digits, then the query id; keys only, in time order) up to the
	// cutoff, so that keeping a record costs the records it deletes, not
	// all those kept.
	return c.cfg.DB.Update(func(tx *kv.Txn) error {
		var old [][]byte
		errDone := errors.New("done")
		err := tx.IterateKeys(prefixReleaseRecordAt, func(k []byte) error {
			at, id, ok := parseRecordAt(k)
			switch {
			case !ok:
				return nil // not an index key of this version: left alone
			case at >= cutoff:
				return errDone
			}
			old = append(old, append([]byte{}, k...), recordKey(id))
			return nil
		})
		if err != nil && !errors.Is(err, errDone) {
			return err
		}
		for _, k := range old {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		if err := tx.Set(recordAtKey(rec.GetReleasedUnixMs(), rec.GetQueryId()), nil); err != nil {
			return err
		}
		return tx.Set(recordKey(rec.GetQueryId()), b)
	})
}

// prefixReleaseRecordAt indexes the release records by release time.
var prefixReleaseRecordAt = []byte("c/release-record-at/")

func recordKey(id string) []byte { return append(append([]byte{}, prefixReleaseRecord...), id...) }

func recordAtKey(atMs int64, id string) []byte {
	return fmt.Appendf(append([]byte{}, prefixReleaseRecordAt...), "%020d/%s", max(atMs, 0), id)
}

// parseRecordAt reads a key of the time index.
func parseRecordAt(k []byte) (atMs int64, id string, ok bool) {
	rest, found := bytes.CutPrefix(k, prefixReleaseRecordAt)
	if !found || len(rest) < 21 || rest[20] != '/' {
		return 0, "", false
	}
	at, err := strconv.ParseInt(string(rest[:20]), 10, 64)
	if err != nil {
		return 0, "", false
	}
	return at, string(rest[21:]), true
}

// ReleaseRecord returns the release record of query id, whole: callers are
// served under mayRead (the rule of the query's status).
func (c *Coordinator) ReleaseRecord(id string) (*coordinatorv1.ReleaseRecord, error) {
	cutoff := c.cfg.Now().Add(-c.cfg.ReleaseRecordRetention).UnixMilli()
	var rec *coordinatorv1.ReleaseRecord
	if c.cfg.DB == nil {
		c.records.mu.Lock()
		rec = c.records.m[id]
		c.records.mu.Unlock()
	} else {
		err := c.cfg.DB.View(func(tx *kv.Txn) error {
			v, err := tx.Get(recordKey(id))
			if errors.Is(err, kv.ErrNotFound) || v == nil {
				return nil
			} else if err != nil {
				return err
			}
			rec = &coordinatorv1.ReleaseRecord{}
			return proto.Unmarshal(v, rec)
		})
		if err != nil {
			return nil, err
		}
	}
	if rec == nil || rec.GetReleasedUnixMs() < cutoff {
		return nil, fmt.Errorf("%w: no release record of %s (a query released more than %s ago, not released, or answered from an earlier release)", ErrNotFound, id, c.cfg.ReleaseRecordRetention)
	}
	return rec, nil
}

// releaseRecordFor is ReleaseRecord for caller p, under the rule of the
// query's status (mayRead): its analyst and operators.
func (c *Coordinator) releaseRecordFor(p rpc.Peer, id string) (*coordinatorv1.ReleaseRecord, error) {
	if _, err := c.readableBy(p, id); err != nil {
		return nil, err
	}
	return c.ReleaseRecord(id)
}
