package node

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"google.golang.org/protobuf/protoadapt"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/homomorphic"
	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node/internal/keystore"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// Keys of the node's records in its kv store: the active epoch, and an
// epoch whose keys are made but not installed yet. The two are kept apart so
// that a key ceremony that fails half-way (a member refused, the coordinator
// died) leaves the active epoch in service: the node keeps answering its
// queries while the coordinator retries the ceremony.
var (
	keyEpoch        = []byte("n/epoch")
	keyPendingEpoch = []byte("n/epoch-pending")
)

// epochRecord is the durable form of an epochState (the secret lives in the
// keystore, not here).
type epochRecord struct {
	Epoch     uint64   `json:"epoch"`
	Params    string   `json:"params"`
	Threshold int      `json:"threshold"`
	Members   []memRec `json:"members"`
	CRS       []byte   `json:"crs"`
	CKGShare  []byte   `json:"ckg_share,omitempty"`
	PublicKey []byte   `json:"public_key,omitempty"`
	// ThresholdImage: the member's threshold image (epochState).
	ThresholdImage []byte `json:"threshold_image,omitempty"`
	// Link is the epoch's linkage public key (crypto/linkage): the key X
	// and every member's verification key, by Shamir point.
	Link *linkRecord `json:"link,omitempty"`
}

type linkRecord struct {
	X      []byte            `json:"x"`
	Verify map[uint64][]byte `json:"verify"`
}

type memRec struct {
	ID    string `json:"id"`
	Cert  []byte `json:"cert"`
	Point uint64 `json:"point"`
}

func secretName(epoch uint64) string { return "epoch-" + strconv.FormatUint(epoch, 10) }
func thresholdName(epoch uint64) string {
	return "epoch-" + strconv.FormatUint(epoch, 10) + "-threshold"
}

// dealingKeyName is the keystore name of this member's dealing key of an
// epoch: the P-256 key its threshold shares are sealed to, made in KeyGen
// and deleted once they are installed or complained about (docs/crypto.md,
// "Checked dealing", Complaints).
func dealingKeyName(epoch uint64) string { return "dealing-" + strconv.FormatUint(epoch, 10) }

// loadEpoch restores the active key epoch and a pending one at start. A
// pending epoch that cannot be restored is dropped (it was never used: the
// coordinator runs a new ceremony); an active one that cannot is an error.
func (n *Node) loadEpoch() error {
	e, err := n.loadEpochRecord(keyEpoch)
	if err != nil {
		return err
	}
	// A record without a public key is an epoch stored between KeyGen and
	// InstallKey by an older version, in the active slot: it is pending.
	if e != nil && e.PublicKey == nil {
		n.pending = e
		e = nil
	}
	n.epoch = e
	p, err := n.loadEpochRecord(keyPendingEpoch)
	if err != nil {
		n.log.Warn("dropping the pending key epoch; the coordinator will run a new ceremony", "err", err)
		return nil
	}
	if p != nil && (n.pending == nil || p.Epoch > n.pending.Epoch) {
		n.pending = p
	}
	return nil
}

func (n *Node) loadEpochRecord(key []byte) (*epochState, error) {
	b, err := n.cfg.DB.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec epochRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("node: epoch record: %w", err)
	}
	return n.epochFromRecord(&rec)
}

func (n *Node) epochFromRecord(rec *epochRecord) (*epochState, error) {
	p, err := homomorphic.NewParams(rec.Params)
	if err != nil {
		return nil, err
	}
	e := &epochState{Epoch: rec.Epoch, Params: p, Threshold: rec.Threshold, CRS: rec.CRS, CKGShare: rec.CKGShare, ThresholdImage: rec.ThresholdImage}
	for _, m := range rec.Members {
		c, err := x509.ParseCertificate(m.Cert)
		if err != nil {
			return nil, fmt.Errorf("node: epoch %d member %s: %w", rec.Epoch, m.ID, err)
		}
		e.Members = append(e.Members, member{ID: m.ID, Cert: c, Point: m.Point})
	}
	// A missing or damaged share does not stop the node: it answers
	// queries and takes part in the next key ceremony, and refuses to
	// decrypt in this epoch (durable.go, checkShares).
	if !e.onCommittee(n.id) {
		// This node encrypts only in this epoch: it has no secret.
		e.secretErr = fmt.Errorf("%w: %s holds no share of epoch %d's key", ErrNotOnCommittee, n.id, e.Epoch)
		return e.withPublic(p, rec)
	}
	sb, err := n.keys.Get(secretName(rec.Epoch))
	if err == nil {
		if e.secret, err = homomorphic.UnmarshalSecretKeyShare(p, sb); err != nil {
			err = &keystore.FileError{Name: secretName(rec.Epoch), Path: filepath.Join(n.cfg.StateDir, "keys", secretName(rec.Epoch)+".secret"),
				Kind: keystore.ErrDamaged, Problem: "the share does not decode: " + err.Error()}
		}
	}
	var fe *keystore.FileError
	if errors.As(err, &fe) {
		e.secretErr = err
	} else if err != nil {
		return nil, err
	}
	return e.withPublic(p, rec)
}

// withPublic sets e's public keys from its record.
func (e *epochState) withPublic(p homomorphic.Params, rec *epochRecord) (*epochState, error) {
	var err error
	if len(rec.PublicKey) > 0 {
		if e.PublicKey, err = homomorphic.UnmarshalPublicKey(p, rec.PublicKey); err != nil {
			return nil, err
		}
	}
	if rec.Link != nil {
		lk := &linkage.PublicKey{Verify: map[uint64]linkage.Point{}}
		if len(rec.Link.X) != len(lk.X) {
			return nil, fmt.Errorf("node: epoch %d: linkage key of %d bytes", rec.Epoch, len(rec.Link.X))
		}
		copy(lk.X[:], rec.Link.X)
		for pt, b := range rec.Link.Verify {
			var v linkage.Point
			copy(v[:], b)
			lk.Verify[pt] = v
		}
		e.Link = lk
	}
	return e, nil
}

// saveEpoch stores e as the pending epoch (no public key yet) or as the
// active one (which ends any pending epoch).
func (n *Node) saveEpoch(e *epochState) error {
	rec := epochRecord{Epoch: e.Epoch, Params: e.Params.Name(), Threshold: e.Threshold, CRS: e.CRS, CKGShare: e.CKGShare, ThresholdImage: e.ThresholdImage}
	for _, m := range e.Members {
		rec.Members = append(rec.Members, memRec{ID: m.ID, Cert: m.Cert.Raw, Point: m.Point})
	}
	if e.PublicKey != nil {
		pk, err := e.PublicKey.MarshalBinary()
		if err != nil {
			return err
		}
		rec.PublicKey = pk
	}
	if e.Link != nil {
		rec.Link = &linkRecord{X: e.Link.X[:], Verify: map[uint64][]byte{}}
		for pt, v := range e.Link.Verify {
			rec.Link.Verify[pt] = v[:]
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if e.PublicKey == nil {
		_, err := n.cfg.DB.UpdateWatermarked(func(tx *kv.Txn) error { return tx.Set(keyPendingEpoch, b) })
		return err
	}
	_, err = n.cfg.DB.UpdateWatermarked(func(tx *kv.Txn) error {
		if err := tx.Set(keyEpoch, b); err != nil {
			return err
		}
		return tx.Delete(keyPendingEpoch)
	})
	return err
}

// latestEpoch is the newest epoch this node has made keys for, active or
// pending (0 if none). Callers hold n.mu.
func (n *Node) latestEpoch() uint64 {
	var id uint64
	if n.epoch != nil {
		id = n.epoch.Epoch
	}
	if n.pending != nil {
		id = max(id, n.pending.Epoch)
	}
	return id
}

// keyGen starts epoch req.Epoch at this node.
func (n *Node) keyGen(ctx context.Context, req *nodev1.KeyGenRequest) (*nodev1.KeyGenResponse, error) {
	if _, err := rpc.Require(ctx, pki.RoleCoordinator); err != nil {
		return nil, err
	}
	p, err := homomorphic.NewParams(req.GetParams())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	members, self, err := n.checkMembers(req.GetMembers())
	if err != nil {
		return nil, err
	}
	committee := committeeOf(members)
	t := int(req.GetThreshold())
	if t < 1 || t > len(committee) {
		return nil, fmt.Errorf("%w: threshold %d with a committee of %d", ErrBadRequest, t, len(committee))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if latest := n.latestEpoch(); req.GetEpoch() <= latest {
		return nil, fmt.Errorf("%w: epoch %d is not newer than this node's epoch %d", ErrBadRequest, req.GetEpoch(), latest)
	}
	if self.Point == 0 {
		// Not on the committee: this node makes no key material. It
		// encrypts under the committee's public key, which InstallKey
		// checks against the committee's signed shares.
		e := &epochState{Epoch: req.GetEpoch(), Params: p, Threshold: t, Members: members, CRS: req.GetCrs()}
		if err := n.saveEpoch(e); err != nil {
			return nil, err
		}
		n.pending = e
		n.record(ctx, "coordinator", "epoch.keygen", "", map[string]any{"epoch": e.Epoch, "members": len(members), "committee": len(committee), "threshold": t, "on_committee": false})
		n.log.Info("key epoch started; this node encrypts only", "epoch", e.Epoch, "members", len(members), "committee", len(committee), "threshold", t)
		return &nodev1.KeyGenResponse{}, nil
	}
	sk, err := homomorphic.GenSecretKeyShare(p)
	if err != nil {
		return nil, err
	}
	share, ckgProof, err := collective.CKGShareProven(p, sk, req.GetCrs(), protocol.CKGProofContext(req.GetEpoch(), n.id))
	if err != nil {
		return nil, err
	}
	signed, err := protocol.SealCKGShare(n.cfg.Identity.Key, req.GetEpoch(), n.id, share, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	// The share itself goes out only once every committee member's share
	// is fixed (RevealKeyGen): a commitment now.
	resp := &nodev1.KeyGenResponse{CkgShare: protocol.Commitment(signed)}
	linkDealing, err := n.dealLinkKey(req.GetEpoch(), t, committee, resp)
	if err != nil {
		return nil, err
	}
	// The shares are sealed in RevealKeyGen, to the dealing keys every
	// committee member signs now: this member's is made for this ceremony
	// (docs/crypto.md, "Checked dealing", Complaints).
	dk, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := n.keys.Put(dealingKeyName(req.GetEpoch()), dk.Bytes()); err != nil {
		return nil, err
	}
	if resp.DealingKey, err = protocol.SealDealingKey(n.cfg.Identity.Key, req.GetEpoch(), n.id, dk.PublicKey().Bytes(), n.cfg.Now()); err != nil {
		return nil, err
	}
	var dealing map[uint64][]byte
	if t < len(committee) {
		points := make([]uint64, len(committee))
		for i, m := range committee {
			points[i] = m.Point
		}
		// Checked dealing (docs/crypto.md, "Checked dealing"): the
		// images of the polynomial go out signed with the shares. With
		// T = 1 the polynomial is its constant, which the CKG share
		// fixes: nothing to check it against but that, and no images.
		var dealt map[uint64][]byte
		if t >= 2 {
			var images []byte
			if dealt, images, err = collective.ThresholdDealChecked(p, sk, t, points, req.GetCrs(), share); err != nil {
				return nil, err
			}
			if resp.ShamirImages, err = protocol.SealShamirImages(n.cfg.Identity.Key, req.GetEpoch(), n.id, images, n.cfg.Now()); err != nil {
				return nil, err
			}
		} else if dealt, err = collective.ThresholdDeal(p, sk, t, points); err != nil {
			return nil, err
		}
		dealing = dealt
	}
	skb, err := sk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	// The new epoch is pending (no public key) until InstallKey; the active
	// epoch keeps answering its queries until then, so a ceremony that
	// fails half-way does not stop the network. Its record is stored before
	// its key file: key files of an epoch the store has no record of mean a
	// lost store, and a node refuses to start on them (node/check), so a
	// crash in between must leave a record without a key (the node then
	// starts, unable to decrypt in that epoch).
	e := &epochState{Epoch: req.GetEpoch(), Params: p, Threshold: t, Members: members, CRS: req.GetCrs(), secret: sk, ckgShare: signed, ckgProof: ckgProof, dealing: dealing, linkDealing: linkDealing}
	if err := n.saveEpoch(e); err != nil {
		return nil, err
	}
	if err := n.keys.Put(secretName(req.GetEpoch()), skb); err != nil {
		return nil, err
	}
	if old := n.pending; old != nil && old.Epoch != e.Epoch {
		// The ceremony this one replaces never installed here: its
		// dealing key opens nothing anyone will send again.
		if err := n.keys.Delete(dealingKeyName(old.Epoch)); err != nil {
			n.log.Warn("could not delete the dealing key of an abandoned ceremony", "epoch", old.Epoch, "err", err)
		}
	}
	n.pending = e
	n.record(ctx, "coordinator", "epoch.keygen", "", map[string]any{"epoch": e.Epoch, "members": len(members), "committee": len(committee), "threshold": t, "on_committee": true})
	n.log.Info("key epoch started", "epoch", e.Epoch, "members", len(members), "committee", len(committee), "threshold", t, "self_point", self.Point)
	return resp, nil
}

// committeeOf is the members with a Shamir point: the decryption
// committee.
func committeeOf(ms []member) []member {
	var out []member
	for _, m := range ms {
		if m.Point != 0 {
			out = append(out, m)
		}
	}
	return out
}

// checkMembers validates the member list: certificates of the network CA
// with the node role and the stated ids, distinct points (nonzero for the
// decryption committee, 0 for members that only encrypt), at least one
// committee member, and this node among them.
func (n *Node) checkMembers(ms []*nodev1.Member) ([]member, member, error) {
	var out []member
	var self member
	seenID := map[string]bool{}
	seenPoint := map[uint64]bool{}
	for _, m := range ms {
		c, err := x509.ParseCertificate(m.GetCertificateDer())
		if err != nil {
			return nil, self, fmt.Errorf("%w: member %s: certificate: %v", ErrBadRequest, m.GetNodeId(), err)
		}
		if err := pki.Verify(n.cfg.Identity.CA, c); err != nil {
			return nil, self, fmt.Errorf("%w: member %s: %v", ErrBadRequest, m.GetNodeId(), err)
		}
		if r, _ := pki.RoleOf(c); r != pki.RoleNode || c.Subject.CommonName != m.GetNodeId() {
			return nil, self, fmt.Errorf("%w: member %s: certificate is for %s with role %s", ErrBadRequest, m.GetNodeId(), c.Subject.CommonName, r)
		}
		if seenID[m.GetNodeId()] || (m.GetShamirPoint() != 0 && seenPoint[m.GetShamirPoint()]) {
			return nil, self, fmt.Errorf("%w: member %s: duplicate id or point %d", ErrBadRequest, m.GetNodeId(), m.GetShamirPoint())
		}
		seenID[m.GetNodeId()] = true
		if m.GetShamirPoint() != 0 {
			seenPoint[m.GetShamirPoint()] = true
		}
		mm := member{ID: m.GetNodeId(), Cert: c, Point: m.GetShamirPoint()}
		if mm.ID == n.id {
			self = mm
		}
		out = append(out, mm)
	}
	if self.ID == "" {
		return nil, self, fmt.Errorf("%w: %s is not among the %d members", ErrNotMember, n.id, len(out))
	}
	if len(seenPoint) == 0 {
		return nil, self, fmt.Errorf("%w: no member has a Shamir point: the epoch has no decryption committee", ErrBadRequest)
	}
	return out, self, nil
}

// installKey verifies every member's CKG share, recomputes the collective
// public key, and activates the epoch. The shares are opened without the
// replay cache: they are bound to this epoch and its members, so presenting
// them again can only install the same key, and a request refused for a
// later reason (a missing share, a wrong key) can be corrected and retried.
func (n *Node) installKey(ctx context.Context, req *nodev1.InstallKeyRequest) (*nodev1.InstallKeyResponse, error) {
	if _, err := rpc.Require(ctx, pki.RoleCoordinator); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// The pending epoch, or the active one again (an InstallKey repeated by
	// a coordinator that retries: it is checked again, and changes nothing
	// unless it is the same key).
	e := n.pending
	if e == nil || e.Epoch != req.GetEpoch() {
		if n.epoch == nil || n.epoch.Epoch != req.GetEpoch() {
			return nil, fmt.Errorf("%w: install for epoch %d, pending epoch is %v", ErrWrongEpoch, req.GetEpoch(), epochOf(e))
		}
		e = n.epoch
	}
	committee := e.committee()
	shares := make([][]byte, len(committee))
	got := 0
	for _, s := range req.GetCkgShares() {
		i := slices.IndexFunc(committee, func(m member) bool { return m.ID == s.GetNodeId() })
		if i < 0 || shares[i] != nil {
			return nil, fmt.Errorf("%w: CKG share from %q: not a member of the committee, or a duplicate", ErrBadRequest, s.GetNodeId())
		}
		share, err := protocol.OpenCKGShare(committee[i].Cert.PublicKey, s.GetSigned(), e.Epoch, s.GetNodeId(), n.window(nil))
		if err != nil {
			return nil, fmt.Errorf("%w: CKG share from %s: %v", ErrBadRequest, s.GetNodeId(), err)
		}
		// Every share must come with the proof that it is well formed and
		// that its member knows its secret (docs/crypto.md, "Proofs of
		// well-formed key-generation shares").
		proof := req.GetCkgProofs()[s.GetNodeId()]
		if err := collective.VerifyCKGShare(e.Params, e.CRS, share, proof, protocol.CKGProofContext(e.Epoch, s.GetNodeId())); err != nil {
			n.record(ctx, "coordinator", "epoch.ckg_proof_refused", "", map[string]any{"epoch": e.Epoch, "node": s.GetNodeId(), "reason": err.Error()})
			return nil, fmt.Errorf("%w: CKG share from %s: %v", ErrBadRequest, s.GetNodeId(), err)
		}
		shares[i] = share
		got++
	}
	if got != len(committee) {
		return nil, fmt.Errorf("%w: %d CKG shares for a committee of %d", ErrBadRequest, got, len(committee))
	}
	if err := checkCKGReveals(e, req.GetCkgShares(), req.GetCkgReveals(), n.window(nil)); err != nil {
		return nil, err
	}
	pk, err := collective.CKGAggregate(e.Params, e.CRS, shares)
	if err != nil {
		return nil, err
	}
	// The coordinator's claimed key must be the one the shares make.
	mine, err := pk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(req.GetPublicKey()) > 0 && string(mine) != string(req.GetPublicKey()) {
		return nil, fmt.Errorf("%w: the public key sent differs from the aggregate of the signed shares", ErrBadRequest)
	}
	keyDigest := protocol.KeyDigest(mine)
	if !e.onCommittee(n.id) {
		if err := checkInstalled(e, req.GetInstalled(), keyDigest, n.window(nil)); err != nil {
			return nil, err
		}
	}
	// refused audits a refusal of a dealt share that carries evidence.
	refused := func(err error, share string) error {
		var dc *dealingComplaint
		if errors.As(err, &dc) {
			n.record(ctx, "coordinator", "epoch.dealing_refused", "", map[string]any{"epoch": e.Epoch, "dealer": dc.c.GetDealer(), "share": share, "reason": err.Error()})
		}
		return err
	}
	// An epoch installed already (a repeated InstallKey) keeps the shares
	// it stored; its dealing key is gone. Otherwise a committee member
	// opens the shares dealt to it with its dealing key, read once.
	var dk *ecdh.PrivateKey
	if e.onCommittee(n.id) && e != n.epoch && (e.thresholdShared() || len(req.GetLinkCommitments()) > 0) {
		if dk, err = n.dealingKey(e.Epoch); err != nil {
			return nil, err
		}
	}
	if e.onCommittee(n.id) && e.thresholdShared() && e != n.epoch {
		image, err := n.installThreshold(e, dk, req.GetDealt(), shares, req.GetShamirImages())
		if err != nil {
			return nil, refused(err, "threshold")
		}
		e.ThresholdImage = image
	}
	if e.PublicKey != nil && !e.PublicKey.Equal(pk) {
		return nil, fmt.Errorf("%w: epoch %d is installed with another public key", ErrBadRequest, e.Epoch)
	}
	var link *linkage.PublicKey
	if e != n.epoch { // an epoch installed already keeps its linkage key
		if link, err = n.installLinkKey(e, dk, req); err != nil {
			return nil, refused(err, "linkage")
		}
	}
	installed := *e
	installed.PublicKey = pk
	installed.dealing = nil // its own Shamir shares went out in RevealKeyGen
	if i := slices.IndexFunc(committee, func(m member) bool { return m.ID == n.id }); i >= 0 {
		installed.CKGShare = shares[i]
	}
	if link != nil {
		installed.Link = link
	}
	if err := n.saveEpoch(&installed); err != nil {
		return nil, err
	}
	if e.onCommittee(n.id) {
		// The epoch is installed with its shares: the dealing key opens
		// nothing more (until now a retried InstallKey needed it).
		if err := n.keys.Delete(dealingKeyName(e.Epoch)); err != nil {
			n.log.Warn("could not delete the dealing key of an installed epoch", "epoch", e.Epoch, "err", err)
		}
	}
	if n.epoch != nil && n.epoch.Epoch < installed.Epoch {
		n.previous, n.previousUntil = n.epoch, n.cfg.Now().Add(PreviousEpochGrace)
	}
	n.epoch = &installed
	if n.pending != nil && n.pending.Epoch <= installed.Epoch {
		n.pending = nil
	}
	n.record(ctx, "coordinator", "epoch.installed", "", map[string]any{"epoch": e.Epoch})
	n.log.Info("key epoch active", "epoch", e.Epoch)
	go n.advertise()
	if !e.onCommittee(n.id) {
		return &nodev1.InstallKeyResponse{}, nil
	}
	stmt, err := protocol.SealKeyInstalled(n.cfg.Identity.Key, e.Epoch, n.id, keyDigest, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	return &nodev1.InstallKeyResponse{Installed: stmt}, nil
}

// checkInstalled checks that at least e's threshold of its committee
// members signed that they installed e with the public key of digest:
// what a member off the committee requires before it installs e and
// encrypts under its key. A committee member that complained about a
// dealing never installs, and a complaint opens one share of its
// ceremony; with threshold statements, one honest committee member at
// least holds its share, so one honest polynomial stays hidden
// (docs/crypto.md, "Checked dealing", Complaints).
func checkInstalled(e *epochState, stmts []*nodev1.NodeSigned, digest []byte, w protocol.Window) error {
	got := map[string]bool{}
	for _, s := range stmts {
		m, ok := e.member(s.GetNodeId())
		if !ok || m.Point == 0 || got[m.ID] {
			continue
		}
		named, err := protocol.OpenKeyInstalled(m.Cert.PublicKey, s.GetSigned(), e.Epoch, m.ID, w)
		if err != nil || !bytes.Equal(named, digest) {
			continue
		}
		got[m.ID] = true
	}
	if len(got) < e.Threshold {
		return fmt.Errorf("%w: epoch %d: %d committee members state they installed it with this key, %d (its threshold) are needed before a member off the committee encrypts under it", ErrBadRequest, e.Epoch, len(got), e.Threshold)
	}
	return nil
}

// revealKeyGen sends this committee member's CKG share of the pending
// epoch, once the set of the committee's share commitments is fixed: the
// set must hold every committee member once, each header bound to that
// member's CKG share of the epoch, and this node's own header and signature
// exactly. The node reveals within one set per epoch and signs a statement
// naming it (protocol.SealCKGReveal), which every member checks before it
// installs the key (checkCKGReveals). So no share of the collective public
// key can be chosen after another was seen: a member working with the
// coordinator cannot make the key one whose secret it knows (a rogue key,
// threat-model.md "Members are semi-honest").
func (n *Node) revealKeyGen(ctx context.Context, req *nodev1.RevealKeyGenRequest) (*nodev1.RevealKeyGenResponse, error) {
	if _, err := rpc.Require(ctx, pki.RoleCoordinator); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e, err := n.pendingLocked("reveal", req.GetEpoch())
	if err != nil {
		return nil, err
	}
	if e.ckgShare == nil {
		return nil, fmt.Errorf("%w: this node holds no CKG share of epoch %d to reveal (it is not on the committee, or restarted since KeyGen; "+
			"a new ceremony makes a new epoch)", ErrBadRequest, e.Epoch)
	}
	onCommittee := func(id string) bool { m, ok := e.member(id); return ok && m.Point != 0 }
	bound := func(header []byte, id string) error { return protocol.CheckCKGBinding(header, e.Epoch, id) }
	if err := checkHeaderSet("CKG share", req.GetCkgCommitments(), onCommittee, bound, n.id, e.ckgShare); err != nil {
		return nil, fmt.Errorf("%w: epoch %d: %w", ErrBadRequest, e.Epoch, err)
	}
	if k := len(e.committee()); len(req.GetCkgCommitments()) != k {
		return nil, fmt.Errorf("%w: epoch %d: %d commitments for a committee of %d; every member's is needed", ErrBadRequest, e.Epoch, len(req.GetCkgCommitments()), k)
	}
	digest := protocol.CKGSetDigest(e.Epoch, req.GetCkgCommitments())
	if e.ckgSet != nil && !bytes.Equal(e.ckgSet, digest) {
		n.record(ctx, "coordinator", "epoch.reveal_refused", "", map[string]any{"epoch": e.Epoch, "reason": "revealed in another set of CKG commitments"})
		return nil, fmt.Errorf("%w: epoch %d: this node already revealed its CKG share in another set of commitments", ErrAlreadyReleased, e.Epoch)
	}
	stmt, err := protocol.SealCKGReveal(n.cfg.Identity.Key, e.Epoch, n.id, digest, n.cfg.Now())
	if err != nil {
		return nil, err
	}
	dealt, err := n.sealDealing(e, req.GetDealingKeys())
	if err != nil {
		return nil, err
	}
	if e.ckgSet == nil {
		e.ckgSet = digest
		n.record(ctx, "coordinator", "epoch.revealed", "", map[string]any{"epoch": e.Epoch, "set": fmt.Sprintf("%x", digest)})
	}
	return &nodev1.RevealKeyGenResponse{CkgShare: e.ckgShare, Reveal: stmt, CkgProof: e.ckgProof, Dealt: dealt}, nil
}

// sealDealing seals this dealer's shares for every committee member of e
// (its Shamir share when e's threshold is below its committee, its
// linkage-key share) to the member's dealing key (keys: every member's
// signed key) and signs each.
func (n *Node) sealDealing(e *epochState, keys []*nodev1.NodeSigned) ([]*nodev1.DealtShare, error) {
	if e.dealing == nil && e.linkDealing == nil {
		return nil, nil
	}
	byMember := map[string]*ecdh.PublicKey{}
	for _, k := range keys {
		m, ok := e.member(k.GetNodeId())
		if !ok || m.Point == 0 || byMember[m.ID] != nil {
			return nil, fmt.Errorf("%w: epoch %d: a dealing key from %q: not on the committee, or repeated", ErrBadRequest, e.Epoch, k.GetNodeId())
		}
		pub, err := protocol.OpenDealingKey(m.Cert.PublicKey, k.GetSigned(), e.Epoch, m.ID, n.window(nil))
		if err != nil {
			return nil, fmt.Errorf("%w: epoch %d: the dealing key of %s: %v", ErrBadRequest, e.Epoch, m.ID, err)
		}
		byMember[m.ID] = pub
	}
	var out []*nodev1.DealtShare
	for _, m := range e.committee() {
		pub := byMember[m.ID]
		if pub == nil {
			return nil, fmt.Errorf("%w: epoch %d: no dealing key of %s to seal its shares to (every committee member's is needed)", ErrBadRequest, e.Epoch, m.ID)
		}
		d := &nodev1.DealtShare{FromNodeId: n.id, ToNodeId: m.ID}
		if e.dealing != nil {
			sealed, err := protocol.SealShare(pub, protocol.ThresholdShareInfo(e.Epoch, n.id, m.ID), e.dealing[m.Point])
			if err != nil {
				return nil, err
			}
			if d.Sealed, err = protocol.SealThresholdShare(n.cfg.Identity.Key, e.Epoch, n.id, m.ID, sealed, n.cfg.Now()); err != nil {
				return nil, err
			}
		}
		if e.linkDealing != nil {
			sealed, err := protocol.SealShare(pub, protocol.LinkShareInfo(e.Epoch, n.id, m.ID), e.linkDealing[m.Point])
			if err != nil {
				return nil, err
			}
			if d.LinkSealed, err = protocol.SealLinkShare(n.cfg.Identity.Key, e.Epoch, n.id, m.ID, sealed, n.cfg.Now()); err != nil {
				return nil, err
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// checkCKGReveals checks that every committee member of e signed a reveal
// statement naming the set of shares (protocol.CKGSetDigest of shares):
// each share was committed to before any share was revealed.
func checkCKGReveals(e *epochState, shares, reveals []*nodev1.NodeSigned, w protocol.Window) error {
	digest := protocol.CKGSetDigest(e.Epoch, shares)
	got := map[string]bool{}
	for _, r := range reveals {
		id := r.GetNodeId()
		m, ok := e.member(id)
		if !ok || m.Point == 0 || got[id] {
			return fmt.Errorf("%w: CKG reveal statement from %q: not on the committee, or repeated", ErrBadRequest, id)
		}
		named, err := protocol.OpenCKGReveal(m.Cert.PublicKey, r.GetSigned(), e.Epoch, id, w)
		if err != nil {
			return fmt.Errorf("%w: CKG reveal statement from %s: %v", ErrBadRequest, id, err)
		}
		if !bytes.Equal(named, digest) {
			return fmt.Errorf("%w: %s revealed its CKG share in another set of commitments than the shares sent (a share was chosen after others were seen)", ErrBadRequest, id)
		}
		got[id] = true
	}
	var missing []string
	for _, m := range e.committee() {
		if !got[m.ID] {
			missing = append(missing, m.ID)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: no CKG reveal statement from %v (every committee member states the set its share was revealed in)", ErrBadRequest, missing)
	}
	return nil
}

// pendingLocked returns the pending epoch, which the call (named in the
// error) must be for. Callers hold n.mu.
func (n *Node) pendingLocked(call string, epoch uint64) (*epochState, error) {
	if e := n.pending; e != nil && e.Epoch == epoch {
		return e, nil
	}
	return nil, fmt.Errorf("%w: %s for epoch %d, pending epoch is %v", ErrWrongEpoch, call, epoch, epochOf(n.pending))
}

func epochOf(e *epochState) any {
	if e == nil {
		return "none"
	}
	return e.Epoch
}

// installThreshold opens the threshold shares dealt to this node with its
// dealing key dk, checks each against its dealer's CKG share (ckg, in
// committee order) and signed images, stores their aggregate sealed and returns this member's threshold
// image (nil when the committee is too large for proofs of its key-switch
// shares).
func (n *Node) installThreshold(e *epochState, dk *ecdh.PrivateKey, dealt []*nodev1.DealtShare, ckg [][]byte, signedImages []*nodev1.NodeSigned) ([]byte, error) {
	self, _ := e.member(n.id)
	committee := e.committee()
	images := make([][]byte, len(committee))
	for _, s := range signedImages {
		i := slices.IndexFunc(committee, func(m member) bool { return m.ID == s.GetNodeId() })
		if i < 0 || images[i] != nil {
			return nil, fmt.Errorf("%w: Shamir images from %q: not a member of the committee, or a duplicate", ErrBadRequest, s.GetNodeId())
		}
		b, err := protocol.OpenShamirImages(committee[i].Cert.PublicKey, s.GetSigned(), e.Epoch, s.GetNodeId(), n.window(nil))
		if err != nil {
			return nil, fmt.Errorf("%w: Shamir images from %s: %v", ErrBadRequest, s.GetNodeId(), err)
		}
		images[i] = b
	}
	checked := e.Threshold >= 2 // with T = 1 there are no images (keyGen)
	for i, m := range committee {
		if checked && images[i] == nil {
			return nil, fmt.Errorf("%w: no Shamir images from %s: every dealer's are needed to check its share (a member of a version before checked dealing?)", ErrBadRequest, m.ID)
		}
	}
	received := make([][]byte, 0, len(committee))
	seen := map[string]bool{}
	for _, d := range dealt {
		from, ok := e.member(d.GetFromNodeId())
		if !ok || from.Point == 0 || d.GetToNodeId() != n.id || seen[from.ID] {
			return nil, fmt.Errorf("%w: threshold share from %q to %q", ErrBadRequest, d.GetFromNodeId(), d.GetToNodeId())
		}
		sealed, err := protocol.OpenThresholdShare(from.Cert.PublicKey, d.GetSealed(), e.Epoch, from.ID, n.id, n.window(nil))
		if err != nil {
			return nil, fmt.Errorf("%w: threshold share from %s: %v", ErrBadRequest, from.ID, err)
		}
		info := protocol.ThresholdShareInfo(e.Epoch, from.ID, n.id)
		pt, err := protocol.OpenShare(dk, info, sealed)
		if err != nil {
			err = fmt.Errorf("%w: the threshold share %s dealt to %s does not open: %v", ErrBadRequest, from.ID, n.id, err)
			if from.ID == n.id {
				return nil, err
			}
			return nil, n.complain(e.Epoch, dk, from.ID, sealed, info, false, err)
		}
		di := slices.IndexFunc(committee, func(m member) bool { return m.ID == from.ID })
		if checked {
			err = collective.CheckDealtShare(e.Params, e.CRS, ckg[di], images[di], self.Point, pt)
		}
		if errors.Is(err, collective.ErrDealingUncheckable) {
			if len(received) == 0 {
				n.log.Warn("the committee's points and threshold are too large to check dealt shares against their images; the shares dealt to this member are unchecked in this epoch", "epoch", e.Epoch, "err", err)
			}
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("%w: the threshold share %s dealt to %s does not match %s's CKG share and Shamir images: %w", ErrBadRequest, from.ID, n.id, from.ID, err)
			if from.ID == n.id {
				return nil, err // its own dealing: nothing to complain to anyone about
			}
			return nil, n.complain(e.Epoch, dk, from.ID, sealed, info, false, err)
		}
		seen[from.ID] = true
		received = append(received, pt)
	}
	if len(received) != len(committee) {
		return nil, fmt.Errorf("%w: %d threshold shares for a committee of %d", ErrBadRequest, len(received), len(committee))
	}
	ts, err := collective.ThresholdAggregate(e.Params, self.Point, received)
	if err != nil {
		return nil, err
	}
	if !checked {
		b, err := ts.MarshalBinary()
		if err != nil {
			return nil, err
		}
		return nil, n.keys.Put(thresholdName(e.Epoch), b)
	}
	image, err := collective.ThresholdImage(e.Params, ckg, images, self.Point)
	if errors.Is(err, collective.ErrThresholdProof) {
		n.log.Warn("the committee is too large for proofs of threshold key-switch shares; this member's will be unproven", "epoch", e.Epoch, "err", err)
		image, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	b, err := ts.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return image, n.keys.Put(thresholdName(e.Epoch), b)
}

// releaseSecret returns the secret this node uses for a release by the
// decryptors at points (checked by checkDecryptors): its own share when
// every member decrypts, otherwise the additive share for that set from its
// threshold share, which it also returns (nil in the first case).
func (n *Node) releaseSecret(e *epochState, points []uint64) (*homomorphic.SecretKeyShare, *collective.ThresholdShare, error) {
	if !e.onCommittee(n.id) {
		return nil, nil, fmt.Errorf("%w: %s holds no share of epoch %d's key", ErrNotOnCommittee, n.id, e.Epoch)
	}
	if !e.thresholdShared() {
		if e.secret == nil {
			return nil, nil, e.secretErr
		}
		return e.secret, nil, nil
	}
	ts, err := n.loadThresholdShare(e)
	if err != nil {
		return nil, nil, err
	}
	sk, err := ts.Additive(e.Params, points)
	return sk, ts, err
}

// complain returns err carrying this member's evidence against dealer
// (a DealingComplaint: the point that opens sealed, the share dealer
// sealed to its dealing key dk of epoch, which did not open or failed its
// check, with a proof: protocol.DealingEvidence), or err alone when the
// evidence cannot be had. The dealing key is deleted first, durably: a
// member reveals at most one point per ceremony, and never installs a
// ceremony it complained about (docs/crypto.md, "Checked dealing",
// Complaints).
func (n *Node) complain(epoch uint64, dk *ecdh.PrivateKey, dealer string, sealed, info []byte, link bool, err error) error {
	point, proof, derr := protocol.DealingEvidence(dk, sealed, info)
	if derr != nil {
		return err
	}
	if derr := n.keys.Delete(dealingKeyName(epoch)); derr != nil {
		return fmt.Errorf("%w (its evidence withheld: the dealing key could not be deleted first: %v)", err, derr)
	}
	return &dealingComplaint{c: &nodev1.DealingComplaint{Dealer: dealer, Point: point, Proof: proof, Linkage: link}, err: err}
}

// dealingKey returns this member's dealing key of epoch (dealingKeyName).
func (n *Node) dealingKey(epoch uint64) (*ecdh.PrivateKey, error) {
	b, err := n.keys.Get(dealingKeyName(epoch))
	if err != nil {
		return nil, fmt.Errorf("%w: epoch %d: this member has no dealing key to open its shares with (it complained about a dealing of this epoch, installed it already, or lost the key): %v", ErrBadRequest, epoch, err)
	}
	dk, err := ecdh.P256().NewPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("node: dealing key of epoch %d: %w", epoch, err)
	}
	return dk, nil
}

// dealingComplaint is a refusal of a dealt share with its evidence, which
// rpc.ToStatus sends as a status detail (never in the message or a log).
type dealingComplaint struct {
	c   *nodev1.DealingComplaint
	err error
}

func (d *dealingComplaint) Error() string { return d.err.Error() }
func (d *dealingComplaint) Unwrap() error { return d.err }
func (d *dealingComplaint) StatusDetails() []protoadapt.MessageV1 {
	return []protoadapt.MessageV1{d.c}
}

// dealLinkKey deals this node's part of the epoch's linkage key (a Feldman
// sharing of a fresh secret, threshold t): its signed commitments in resp,
// and each member's share, by point, which RevealKeyGen seals to the
// member's dealing key (sealDealing). The secret is not kept: the node's
// own share comes back to it like the others'.
func (n *Node) dealLinkKey(epoch uint64, t int, members []member, resp *nodev1.KeyGenResponse) (map[uint64][]byte, error) {
	points := make([]uint64, len(members))
	for i, m := range members {
		points[i] = m.Point
	}
	d, err := linkage.Deal(t, points)
	if err != nil {
		return nil, err
	}
	if resp.LinkCommitments, err = protocol.SealLinkCommitments(n.cfg.Identity.Key, epoch, n.id, d.Commitments, n.cfg.Now()); err != nil {
		return nil, err
	}
	shares := make(map[uint64][]byte, len(members))
	for _, m := range members {
		share := d.Shares[m.Point]
		shares[m.Point] = share[:]
	}
	return shares, nil
}

// installLinkKey checks every member's linkage-key commitments and the
// share each dealt to this node against them, stores this node's share
// (the sum of the shares) in the keystore and returns the epoch's linkage
// public key. A request without commitments (a coordinator of a version
// before record linkage) installs the epoch without a linkage key (nil).
func (n *Node) installLinkKey(e *epochState, dk *ecdh.PrivateKey, req *nodev1.InstallKeyRequest) (*linkage.PublicKey, error) {
	if len(req.GetLinkCommitments()) == 0 {
		return nil, nil
	}
	self, _ := e.member(n.id)
	committee := e.committee()
	commits := make([][]linkage.Point, len(committee))
	for _, s := range req.GetLinkCommitments() {
		i := slices.IndexFunc(committee, func(m member) bool { return m.ID == s.GetNodeId() })
		if i < 0 || commits[i] != nil {
			return nil, fmt.Errorf("%w: linkage commitments from %q: not a member of the committee, or a duplicate", ErrBadRequest, s.GetNodeId())
		}
		c, err := protocol.OpenLinkCommitments(committee[i].Cert.PublicKey, s.GetSigned(), e.Epoch, s.GetNodeId(), e.Threshold, n.window(nil))
		if err != nil {
			return nil, fmt.Errorf("%w: linkage commitments from %s: %v", ErrBadRequest, s.GetNodeId(), err)
		}
		commits[i] = c
	}
	points := make([]uint64, len(committee))
	for i, m := range committee {
		if commits[i] == nil {
			return nil, fmt.Errorf("%w: no linkage commitments from committee member %s", ErrBadRequest, m.ID)
		}
		points[i] = m.Point
	}
	if self.Point == 0 {
		// Not on the committee: only the public key.
		return linkage.AggregatePublicKey(commits, points)
	}
	shares := make([]linkage.Scalar, len(committee))
	got := make([]bool, len(committee))
	for _, d := range req.GetDealt() {
		i := slices.IndexFunc(committee, func(m member) bool { return m.ID == d.GetFromNodeId() })
		if i < 0 || d.GetToNodeId() != n.id || got[i] || d.GetLinkSealed() == nil {
			continue
		}
		from := committee[i]
		sealed, err := protocol.OpenLinkShare(from.Cert.PublicKey, d.GetLinkSealed(), e.Epoch, from.ID, n.id, n.window(nil))
		if err != nil {
			return nil, fmt.Errorf("%w: linkage share from %s: %v", ErrBadRequest, from.ID, err)
		}
		info := protocol.LinkShareInfo(e.Epoch, from.ID, n.id)
		pt, err := protocol.OpenShare(dk, info, sealed)
		if err == nil && len(pt) != len(shares[i]) {
			err = fmt.Errorf("%d bytes, not a scalar", len(pt))
		}
		if err == nil {
			copy(shares[i][:], pt)
			err = linkage.VerifyShare(commits[i], self.Point, shares[i])
		}
		if err != nil {
			err = fmt.Errorf("%w: the linkage share %s dealt to %s does not open, or does not match %s's commitments: %v", ErrBadRequest, from.ID, n.id, from.ID, err)
			if from.ID == n.id {
				return nil, err
			}
			return nil, n.complain(e.Epoch, dk, from.ID, sealed, info, true, err)
		}
		got[i] = true
	}
	for i, ok := range got {
		if !ok {
			return nil, fmt.Errorf("%w: no linkage share from committee member %s", ErrBadRequest, committee[i].ID)
		}
	}
	pub, err := linkage.AggregatePublicKey(commits, points)
	if err != nil {
		return nil, err
	}
	s := linkage.CombineShares(shares)
	if err := n.keys.Put(linkShareName(e.Epoch), s[:]); err != nil {
		return nil, err
	}
	return pub, nil
}
