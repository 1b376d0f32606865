package coordinator

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/protobuf/proto"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/protocol"
	coordinatorv1 "github.com/fedstat/fedstat/proto/fedstat/coordinator/v1"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// KeyCeremony runs the key ceremony of a new key epoch among the admitted,
// alive nodes that are not excluded: it collects their certificates, gives
// each a Shamir point, has each make its secret share and a signed share of
// the collective public key (and, when T < N, Shamir shares of its secret
// sealed to each other member), aggregates the public key, and has every node
// verify and install it. Secret material never passes through the
// coordinator in the clear.
//
// A ceremony that fails or is interrupted at any step leaves the nodes'
// active epoch in service (a node keeps a new epoch pending until it
// installs it) and can simply be run again: each run uses an epoch id newer
// than any a node has made keys for.
func (c *Coordinator) KeyCeremony(ctx context.Context) (uint64, error) {
	c.ceremonyMu.Lock()
	defer c.ceremonyMu.Unlock()
	return c.keyCeremonyLocked(ctx)
}

// keyCeremonyLocked is KeyCeremony; callers hold ceremonyMu.
func (c *Coordinator) keyCeremonyLocked(ctx context.Context) (uint64, error) {
	start := time.Now()
	c.mu.Lock()
	c.gen++ // readiness reports taken during a ceremony are not trusted
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.gen++
		c.mu.Unlock()
	}()
	var ids []string
	clients := map[string]nodev1.NodeServiceClient{}
	for _, n := range c.registry() {
		if c.takesPart(&n) {
			ids = append(ids, n.ID)
			clients[n.ID] = n.client
		}
	}
	c.mu.RLock()
	prev := c.epoch
	c.mu.RUnlock()
	points := committeePoints(ids, c.cfg.Committee, c.cfg.CommitteeMembers, prev)
	k := 0
	for _, p := range points {
		if p != 0 {
			k++
		}
	}
	threshold := c.cfg.Threshold
	if threshold == 0 {
		threshold = k
	}
	if k < max(threshold, 1) {
		return 0, fmt.Errorf("%w: %d reachable nodes for the committee, the threshold is %d", ErrTooFewNodes, k, threshold)
	}
	members := make([]*nodev1.Member, len(ids))
	certs := make([]*x509.Certificate, len(ids))
	// Epoch ids must be newer than any a node has made keys for, installed
	// or pending (a ceremony interrupted after KeyGen, a coordinator that
	// lost its state or did not store the epoch it made).
	id := uint64(1)
	if prev != nil {
		id = prev.ID + 1
	}
	for i, nid := range ids {
		info, err := clients[nid].Info(ctx, &nodev1.InfoRequest{})
		if err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: node %s: %w", nid, callError(err))
		}
		cert, err := x509.ParseCertificate(info.GetCertificateDer())
		if err != nil || info.GetNodeId() != nid {
			return 0, fmt.Errorf("coordinator: key ceremony: node %s sent a bad certificate or id %q", nid, info.GetNodeId())
		}
		if err := pki.Verify(c.cfg.Identity.CA, cert); err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: node %s: %w", nid, err)
		}
		certs[i] = cert
		members[i] = &nodev1.Member{NodeId: nid, CertificateDer: cert.Raw, ShamirPoint: points[i]}
		id = max(id, info.GetEpoch()+1, info.GetEpochStatus().GetLatestEpoch()+1)
	}
	crs, err := collective.NewCRS()
	if err != nil {
		return 0, err
	}

	req := &nodev1.KeyGenRequest{Epoch: id, Params: c.params.Name(), Crs: crs, Members: members, Threshold: int32(threshold)}
	resps := make([]*nodev1.KeyGenResponse, len(ids))
	if err := c.fanout(ctx, ids, func(ctx context.Context, i int, nid string) error {
		r, err := clients[nid].KeyGen(ctx, req)
		resps[i] = r
		return err
	}); err != nil {
		return 0, fmt.Errorf("coordinator: key ceremony epoch %d: %w", id, err)
	}
	c.step(StepSharesCollected)
	var shares [][]byte
	var signed []*nodev1.NodeSigned
	dealt := map[string][]*nodev1.DealtShare{}
	var linkCommits []*nodev1.NodeSigned
	var images []*nodev1.NodeSigned  // the dealers' signed Shamir images
	imageOf := map[string][]byte{}   // opened, by dealer
	var linkOpened [][]linkage.Point // in committee order, as the nodes aggregate them
	var linkPoints []uint64
	var dealingKeys []*nodev1.NodeSigned         // the committee's signed dealing keys
	dealingKeyOf := map[string]*ecdh.PublicKey{} // opened, by member
	linkOf := map[string][]linkage.Point{}       // linkage commitments, by dealer
	for i, nid := range ids {
		if points[i] == 0 {
			// Off the committee: it makes no key material.
			if r := resps[i]; r.GetCkgShare() != nil || len(r.GetDealt()) > 0 || r.GetLinkCommitments() != nil || r.GetShamirImages() != nil || r.GetDealingKey() != nil {
				return 0, fmt.Errorf("coordinator: key ceremony: %s is not on the committee and sent key material", nid)
			}
			continue
		}
		s := resps[i].GetCkgShare()
		if len(s.GetPayload()) > 0 {
			return 0, fmt.Errorf("coordinator: key ceremony: %s sent its CKG share before the committee's shares were fixed (a member sends its signed header first)", nid)
		}
		if err := protocol.OpenCKGCommitment(certs[i].PublicKey, s, id, nid, c.window()); err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: CKG share of %s: %w", nid, err)
		}
		signed = append(signed, &nodev1.NodeSigned{NodeId: nid, Signed: s})
		if lc := resps[i].GetLinkCommitments(); lc != nil {
			opened, err := protocol.OpenLinkCommitments(certs[i].PublicKey, lc, id, nid, threshold, c.window())
			if err != nil {
				return 0, fmt.Errorf("coordinator: key ceremony: linkage commitments of %s: %w", nid, err)
			}
			linkCommits = append(linkCommits, &nodev1.NodeSigned{NodeId: nid, Signed: lc})
			linkOpened, linkPoints = append(linkOpened, opened), append(linkPoints, points[i])
			linkOf[nid] = opened
		}
		if threshold < k && threshold >= 2 {
			// Checked dealing: every dealer's images, which its
			// recipients check their shares against (none with T = 1).
			si := resps[i].GetShamirImages()
			if si == nil {
				return 0, fmt.Errorf("coordinator: key ceremony: %s dealt its threshold shares without their Shamir images (a member of a version before checked dealing?)", nid)
			}
			b, err := protocol.OpenShamirImages(certs[i].PublicKey, si, id, nid, c.window())
			if err != nil {
				return 0, fmt.Errorf("coordinator: key ceremony: Shamir images of %s: %w", nid, err)
			}
			if err := collective.CheckImagesShape(c.params, b, threshold); err != nil {
				return 0, fmt.Errorf("coordinator: key ceremony: Shamir images of %s (a member of a version before two sets of images?): %w", nid, err)
			}
			images = append(images, &nodev1.NodeSigned{NodeId: nid, Signed: si})
			imageOf[nid] = b
		}
		// Its dealing key, which the dealers seal its shares to in
		// RevealKeyGen and the coordinator checks a complaint's evidence
		// against.
		dk := resps[i].GetDealingKey()
		if dk == nil {
			return 0, fmt.Errorf("coordinator: key ceremony: %s sent no dealing key for its shares (a member of a version before dealing keys?)", nid)
		}
		pub, err := protocol.OpenDealingKey(certs[i].PublicKey, dk, id, nid, c.window())
		if err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: dealing key of %s: %w", nid, err)
		}
		dealingKeys = append(dealingKeys, &nodev1.NodeSigned{NodeId: nid, Signed: dk})
		dealingKeyOf[nid] = pub
		if len(resps[i].GetDealt()) > 0 {
			return 0, fmt.Errorf("coordinator: key ceremony: %s dealt shares before the dealing keys were fixed", nid)
		}
	}
	var linkKey *linkage.PublicKey
	if len(linkCommits) != k {
		// A member of a version before record linkage: the epoch is made
		// without a linkage key (linked queries are refused in it).
		linkCommits = nil
	} else {
		// The public key and every member's verification key, as each node
		// computes them when it installs the epoch.
		if linkKey, err = linkage.AggregatePublicKey(linkOpened, linkPoints); err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony epoch %d: linkage key: %w", id, err)
		}
	}
	// Every committee member's share is now fixed by its signed header:
	// each reveals its share within that set, and states so.
	revealed := make([]*nodev1.RevealKeyGenResponse, len(signed))
	sharers := make([]string, len(signed))
	for i, s := range signed {
		sharers[i] = s.GetNodeId()
	}
	if err := c.fanout(ctx, sharers, func(ctx context.Context, i int, nid string) error {
		r, err := clients[nid].RevealKeyGen(ctx, &nodev1.RevealKeyGenRequest{Epoch: id, CkgCommitments: signed, DealingKeys: dealingKeys})
		revealed[i] = r
		return err
	}); err != nil {
		return 0, fmt.Errorf("coordinator: key ceremony epoch %d: reveal: %w", id, err)
	}
	var reveals []*nodev1.NodeSigned
	proofs := map[string][]byte{}
	var unproven []string
	for i, r := range revealed {
		nid := sharers[i]
		cert := certs[slices.Index(ids, nid)]
		s := r.GetCkgShare()
		if !bytes.Equal(s.GetHeader(), signed[i].GetSigned().GetHeader()) || !bytes.Equal(s.GetSignature(), signed[i].GetSigned().GetSignature()) {
			return 0, fmt.Errorf("coordinator: key ceremony: %s revealed a CKG share other than the one it committed to", nid)
		}
		share, err := protocol.OpenCKGShare(cert.PublicKey, s, id, nid, c.window())
		if err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: CKG share of %s: %w", nid, err)
		}
		// The proof that the share is well formed and that nid knows its
		// secret (docs/crypto.md, "Proofs of well-formed key-generation
		// shares"); every member checks it again before it installs.
		if err := collective.VerifyCKGShare(c.params, crs, share, r.GetCkgProof(), protocol.CKGProofContext(id, nid)); err != nil {
			unproven = append(unproven, nid)
			problem := fmt.Sprintf("its CKG share of epoch %d failed its proof of well-formedness: %v", id, err)
			d := sha256.Sum256(cert.Raw)
			if err := c.exclude(ctx, lostMember{ID: nid, Problem: problem, CertSHA256: d[:]}); err != nil {
				c.log.Error("could not store the exclusion of a member whose CKG share failed its proof", "node", nid, "err", err)
			}
			c.record(ctx, c.cfg.Identity.Name(), "epoch.ckg_proof_failed", "", map[string]any{"epoch": id, "node": nid, "reason": err.Error()})
			continue
		}
		if err := checkDealt(dealt, nid, r.GetDealt(), threshold < k, len(linkCommits) == k, k); err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony: %w", err)
		}
		proofs[nid] = r.GetCkgProof()
		shares = append(shares, share)
		signed[i] = &nodev1.NodeSigned{NodeId: nid, Signed: s}
		reveals = append(reveals, &nodev1.NodeSigned{NodeId: nid, Signed: r.GetReveal()})
	}
	if len(unproven) > 0 {
		return 0, fmt.Errorf("coordinator: key ceremony epoch %d: %w: the CKG share of %s failed its proof of well-formedness; excluded from key epochs until it presents a new certificate",
			id, ErrKeyCheck, strings.Join(unproven, ", "))
	}
	pk, err := collective.CKGAggregate(c.params, crs, shares)
	if err != nil {
		return 0, err
	}
	certOf := func(nid string) *x509.Certificate { return certs[slices.Index(ids, nid)] }
	checkBytes, err := c.checkKeys(ctx, id, crs, sharers, shares, certOf, clients, len(ids), threshold)
	if err != nil {
		return 0, fmt.Errorf("coordinator: key ceremony epoch %d: %w", id, err)
	}
	pkb, err := pk.MarshalBinary()
	if err != nil {
		return 0, err
	}
	received := make([]int, len(ids))
	// The committee installs first; the members off it install only with
	// the committee's statements that it did (a member off the committee
	// requires threshold of them: node.checkInstalled).
	installed := make([]*nodev1.NodeSigned, len(ids))
	keyDigest := protocol.KeyDigest(pkb) // what each committee member's statement must name
	// At most installBudget bytes of requests in flight: each carries every
	// dealer's Shamir images, K*(2T-1) polynomials (38 MB at K = 52,
	// T = 3), and a request is held whole while it is sent.
	inflight := semaphore.NewWeighted(installBudget)
	install := func(committee bool, stmts []*nodev1.NodeSigned) []error {
		return c.fanoutEach(ctx, ids, func(ctx context.Context, i int, nid string) error {
			if (points[i] != 0) != committee {
				return nil
			}
			req := &nodev1.InstallKeyRequest{Epoch: id, CkgShares: signed, PublicKey: pkb, Dealt: dealt[nid], LinkCommitments: linkCommits, CkgReveals: reveals, CkgProofs: proofs, Installed: stmts}
			if committee {
				// Only the committee checks dealt shares against them.
				req.ShamirImages = images
			}
			size := proto.Size(req)
			received[i] = size
			w := min(int64(size), installBudget)
			if err := inflight.Acquire(ctx, w); err != nil {
				return err
			}
			defer inflight.Release(w)
			resp, err := clients[nid].InstallKey(ctx, req)
			if err != nil {
				return err
			}
			if committee {
				named, err := protocol.OpenKeyInstalled(certs[i].PublicKey, resp.GetInstalled(), id, nid, c.window())
				if err != nil {
					return fmt.Errorf("its statement that it installed the epoch: %w", err)
				}
				if !bytes.Equal(named, keyDigest) {
					return errors.New("its statement that it installed the epoch names another public key")
				}
				installed[i] = &nodev1.NodeSigned{NodeId: nid, Signed: resp.GetInstalled()}
			}
			return nil
		})
	}
	installErrs := install(true, nil)
	if err := c.judgeInstall(ctx, dealing{epoch: id, crs: crs, ids: ids, certs: certs, points: points, sharers: sharers, ckg: shares, images: imageOf, dealt: dealt, dealingKeys: dealingKeyOf, link: linkOf}, installErrs); err != nil {
		return 0, err
	}
	if len(sharers) < len(ids) {
		var stmts []*nodev1.NodeSigned
		for _, s := range installed {
			if s != nil {
				stmts = append(stmts, s)
			}
		}
		if err := c.judgeInstall(ctx, dealing{epoch: id, ids: ids}, install(false, stmts)); err != nil {
			return 0, err
		}
	}
	c.step(StepBeforeStore)
	e := &epoch{ID: id, Threshold: threshold, PublicKey: pk, Link: linkKey, Created: c.cfg.Now(), CRS: crs, CKGShares: map[string][]byte{}}
	for i, nid := range sharers {
		e.CKGShares[nid] = shares[i]
	}
	if threshold < k && threshold >= 2 {
		// Every member's threshold image, from the CKG shares and images
		// in the order the members compute theirs (any order gives the
		// same sum).
		imgs := make([][]byte, len(sharers))
		for i, nid := range sharers {
			imgs[i] = imageOf[nid]
		}
		var members []string
		var memberPoints []uint64
		for i, nid := range ids {
			if points[i] != 0 {
				members, memberPoints = append(members, nid), append(memberPoints, points[i])
			}
		}
		// A committee too large for every member's proofs keeps the images
		// of the points that fit (the smaller ones): the others' shares
		// are unproven in this epoch.
		timgs, err := collective.ThresholdImagesWithin(c.params, shares, imgs, memberPoints)
		if err != nil {
			return 0, fmt.Errorf("coordinator: key ceremony epoch %d: threshold images: %w", id, err)
		}
		var unprovable []string
		for i, nid := range members {
			if timgs[i] == nil {
				unprovable = append(unprovable, nid)
				continue
			}
			if e.ThresholdImages == nil {
				e.ThresholdImages = map[string][]byte{}
			}
			e.ThresholdImages[nid] = timgs[i]
		}
		if len(unprovable) > 0 {
			c.log.Warn("the committee is too large for proofs of every member's threshold key-switch shares; these members' are unproven in this epoch", "epoch", id, "members", unprovable)
		}
	}
	for i, nid := range ids {
		e.Members = append(e.Members, epochMember{ID: nid, Cert: certs[i], Point: points[i]})
	}
	if err := c.saveEpoch(e); err != nil {
		return 0, err
	}
	cost := CeremonyCost{Epoch: id, Duration: time.Since(start), Members: len(ids), Committee: k, Threshold: threshold}
	for i := range ids {
		sent, got := int64(proto.Size(resps[i])), int64(proto.Size(req)+received[i])
		if j := slices.Index(sharers, ids[i]); j >= 0 {
			sent += int64(proto.Size(revealed[j])) + checkBytes[j][0]
			got += checkBytes[j][1]
		}
		if points[i] != 0 {
			cost.CommitteeSent, cost.CommitteeReceived = max(cost.CommitteeSent, sent), max(cost.CommitteeReceived, got)
		} else {
			cost.MemberSent, cost.MemberReceived = max(cost.MemberSent, sent), max(cost.MemberReceived, got)
		}
	}
	c.mu.Lock()
	c.epoch = e
	c.gen++
	c.lastCeremony = cost
	c.mu.Unlock()
	c.metrics.epoch.Set(float64(id))
	var onCommittee []string
	for _, m := range e.committee() {
		onCommittee = append(onCommittee, m.ID)
	}
	c.record(ctx, c.cfg.Identity.Name(), "epoch.created", "", map[string]any{"epoch": id, "members": ids, "committee": onCommittee, "threshold": threshold})
	c.log.Info("key epoch active", "epoch", id, "members", len(ids), "committee", len(onCommittee), "threshold", threshold)
	return id, nil
}

// committeePoints gives each of ids (the members of a new epoch) its Shamir
// point: 1..K for the K members of the decryption committee, 0 for the
// others. size 0, or at least len(ids), puts everyone on it (points 1..N in
// the order of ids, as before committees). Otherwise the seats go, in this
// order, to the nodes the operator names (prefer, most wanted first), to
// the members of the previous epoch's committee that are still members (a
// committee changes only when it must), and then to the other members by
// the public rule: ascending SHA-256 of "fedstat committee " + node id,
// which anyone can recompute and no node chooses.
func committeePoints(ids []string, size int, prefer []string, prev *epoch) []uint64 {
	points := make([]uint64, len(ids))
	if size <= 0 || size >= len(ids) {
		for i := range ids {
			points[i] = uint64(i + 1)
		}
		return points
	}
	index := map[string]int{}
	for i, id := range ids {
		index[id] = i
	}
	var order []string
	seen := map[string]bool{}
	add := func(id string) {
		if _, ok := index[id]; ok && !seen[id] {
			seen[id] = true
			order = append(order, id)
		}
	}
	for _, id := range prefer {
		add(id)
	}
	if prev != nil {
		for _, m := range prev.committee() {
			add(m.ID)
		}
	}
	rest := slices.Clone(ids)
	slices.SortFunc(rest, func(a, b string) int { return bytes.Compare(committeeRank(a), committeeRank(b)) })
	for _, id := range rest {
		add(id)
	}
	chosen := order[:size]
	// Points 1..K in the order of ids.
	next := uint64(1)
	for i, id := range ids {
		if slices.Contains(chosen, id) {
			points[i] = next
			next++
		}
	}
	return points
}

// committeeRank is a node's place in the public committee rule.
func committeeRank(id string) []byte {
	h := sha256.Sum256([]byte("fedstat committee " + id))
	return h[:]
}

// CeremonyCost is what a key ceremony cost: its wall time and the most
// bytes one member sent and received in its KeyGen and InstallKey calls,
// for committee members and for the others.
type CeremonyCost struct {
	Epoch                            uint64
	Duration                         time.Duration
	Members, Committee, Threshold    int
	CommitteeSent, CommitteeReceived int64
	// MemberSent and MemberReceived are 0 when every member is on the
	// committee.
	MemberSent, MemberReceived int64
}

// LastCeremony is the cost of the last key ceremony this coordinator ran
// (zero before the first).
func (c *Coordinator) LastCeremony() CeremonyCost {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.lastCeremony
}

// fanout calls fn for every node concurrently and returns the first error,
// naming the node.
func (c *Coordinator) fanout(ctx context.Context, ids []string, fn func(ctx context.Context, i int, id string) error) error {
	for i, err := range c.fanoutEach(ctx, ids, fn) {
		if err != nil {
			return fmt.Errorf("node %s: %w", ids[i], err)
		}
	}
	return nil
}

// installBudget is the most bytes of InstallKey requests a key ceremony
// has in flight at once.
const installBudget = 512 << 20

// fanoutEach calls fn for every node concurrently and returns each node's
// error (nil for success), in the order of ids.
func (c *Coordinator) fanoutEach(ctx context.Context, ids []string, fn func(ctx context.Context, i int, id string) error) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx, i, id)
		}()
	}
	wg.Wait()
	return errs
}

// Step names a point of admission or of the key ceremony (Config.AtStep).
type Step string

// The steps at which Config.AtStep is called.
const (
	// StepAdmitted: a node was admitted to the registry (and stored).
	StepAdmitted Step = "after-admission"
	// StepSharesCollected: every member made its keys and returned its CKG
	// share (the members hold a pending epoch).
	StepSharesCollected Step = "after-ckg-shares"
	// StepBeforeStore: every member installed the new epoch; the
	// coordinator has not stored it yet.
	StepBeforeStore Step = "before-epoch-stored"
)

func (c *Coordinator) step(s Step) {
	if c.cfg.AtStep != nil {
		c.cfg.AtStep(s)
	}
}

// LostMemberPolicy is what a new key epoch does about a member that reports
// it lost its keys or its state (Config.LostMember).
type LostMemberPolicy string

const (
	// LostMemberRejoin re-keys with the member: it makes fresh keys in the
	// new epoch as soon as it is reachable. Until then the network serves
	// the current epoch with the other members, as long as T of them can
	// decrypt.
	LostMemberRejoin LostMemberPolicy = "rejoin"
	// LostMemberExclude re-keys without the member and leaves it out of
	// every key epoch until it presents a new certificate (the operator
	// re-issues it after looking at the node: a node that lost its state
	// also lost its privacy ledger).
	LostMemberExclude LostMemberPolicy = "exclude"
)

// Backoff is a capped exponential backoff with jitter: the n-th retry
// (n >= 1) waits a uniformly random time between half and all of
// min(Max, Initial * 2^(n-1)).
type Backoff struct {
	// Initial is the ceiling of the first wait. Required (> 0).
	Initial time.Duration
	// Max caps the ceiling. Required (>= Initial).
	Max time.Duration
}

// Delay is the wait before retry n, for a uniform random number u in [0, 1).
func (b Backoff) Delay(n int, u float64) time.Duration {
	d := b.Initial
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d/2 + time.Duration(u*float64(d-d/2))
}

// ceremonyStatus is what the operator sees of the key ceremonies. Guarded
// by Coordinator.mu.
type ceremonyStatus struct {
	State       string // idle, waiting, scheduled, running, retrying
	Reason      string
	Failures    int
	LastError   string
	LastAttempt time.Time
	NextAttempt time.Time
}

// describe says in one line what the ceremonies are doing, for /readyz.
func (s ceremonyStatus) describe(now time.Time) string {
	in := func(t time.Time) string { return max(t.Sub(now), 0).Round(100 * time.Millisecond).String() }
	switch s.State {
	case "waiting":
		return s.Reason
	case "scheduled":
		return fmt.Sprintf("key ceremony in %s (%s)", in(s.NextAttempt), s.Reason)
	case "running":
		if s.Failures > 0 {
			return fmt.Sprintf("key ceremony running, attempt %d (%s); the last one failed: %s", s.Failures+1, s.Reason, s.LastError)
		}
		return fmt.Sprintf("key ceremony running (%s)", s.Reason)
	case "retrying":
		return fmt.Sprintf("key ceremony failed %d times (%s), last at %s: %s; next attempt in %s",
			s.Failures, s.Reason, s.LastAttempt.UTC().Format(time.RFC3339), s.LastError, in(s.NextAttempt))
	}
	return "no key ceremony is planned"
}

func (c *Coordinator) setCeremony(f func(s *ceremonyStatus)) {
	c.mu.Lock()
	f(&c.ceremony)
	s := c.ceremony
	c.mu.Unlock()
	c.metrics.ceremonyFailures.Set(float64(s.Failures))
	if s.State == "retrying" || s.State == "scheduled" {
		c.metrics.ceremonyNext.Set(float64(s.NextAttempt.UnixMilli()) / 1000)
	} else {
		c.metrics.ceremonyNext.Set(0)
	}
}

// CeremonyStatus returns the state of the key ceremonies and the members
// that cannot do their part, for the operator's view.
func (c *Coordinator) CeremonyStatus() *coordinatorv1.KeyCeremonyStatus {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := c.ceremony
	out := &coordinatorv1.KeyCeremonyStatus{State: s.State, Reason: s.Reason, Failures: int32(s.Failures), LastError: s.LastError}
	if out.State == "" {
		out.State = "idle"
	}
	if !s.LastAttempt.IsZero() {
		out.LastAttemptUnixMs = s.LastAttempt.UnixMilli()
	}
	if (s.State == "retrying" || s.State == "scheduled") && !s.NextAttempt.IsZero() {
		out.NextAttemptUnixMs = s.NextAttempt.UnixMilli()
	}
	for _, id := range c.sortedIDsLocked() {
		n := c.reg[id]
		if n.Excluded != nil {
			out.Members = append(out.Members, &coordinatorv1.MemberProblem{NodeId: id, Problem: n.Excluded.Reason, Excluded: true, SinceUnixMs: n.Excluded.At.UnixMilli()})
			continue
		}
		if c.epoch == nil || !c.epoch.has(id) {
			continue
		}
		if since, problem := c.memberProblemLocked(c.epoch, id); problem != "" {
			out.Members = append(out.Members, &coordinatorv1.MemberProblem{NodeId: id, Problem: problem, SinceUnixMs: since.UnixMilli()})
		}
	}
	return out
}

// keeper keeps a usable key epoch: after a change (kick) has been quiet for
// the debounce time, it asks assess whether a new epoch is needed and runs
// attempt; a failed attempt is retried with the backoff until one succeeds or
// nothing is needed any more. Changes during a backoff do not shorten it.
type keeper struct {
	debounce time.Duration
	retry    Backoff
	jitter   func() float64 // uniform in [0, 1)
	now      func() time.Time
	kick     <-chan struct{}
	assess   func() assessment
	attempt  func(ctx context.Context, a assessment) error
	status   func(func(*ceremonyStatus))
	log      *slog.Logger
}

func (c *Coordinator) keeper() *keeper {
	return &keeper{
		debounce: c.cfg.EpochDebounce, retry: c.cfg.CeremonyRetry, jitter: rand.Float64, now: c.cfg.Now,
		kick: c.kick, assess: c.assess, attempt: c.rekey, status: c.setCeremony, log: c.log,
	}
}

// run loops until ctx ends. It looks once at the start (after the debounce
// time), then at every kick and retry.
func (k *keeper) run(ctx context.Context) {
	timer := time.NewTimer(k.debounce)
	defer timer.Stop()
	k.status(func(s *ceremonyStatus) {
		s.State, s.Reason, s.NextAttempt = "scheduled", "looking at the network after the start", k.now().Add(k.debounce)
	})
	backingOff := false
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
			if backingOff {
				continue
			}
			timer.Reset(k.debounce)
			a := k.assess()
			if a.need {
				k.status(func(s *ceremonyStatus) {
					s.State, s.Reason, s.NextAttempt = "scheduled", a.reason, k.now().Add(k.debounce)
				})
			}
		case <-timer.C:
			backingOff = false
			a := k.assess()
			if !a.need || a.waiting != "" {
				failures = 0
				k.status(func(s *ceremonyStatus) {
					*s = ceremonyStatus{State: "idle", LastAttempt: s.LastAttempt, LastError: s.LastError}
					if a.waiting != "" {
						s.State, s.Reason = "waiting", a.waiting
					}
				})
				continue
			}
			k.status(func(s *ceremonyStatus) {
				s.State, s.Reason, s.LastAttempt, s.NextAttempt = "running", a.reason, k.now(), time.Time{}
			})
			err := k.attempt(ctx, a)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				failures = 0
				k.status(func(s *ceremonyStatus) { *s = ceremonyStatus{State: "idle", LastAttempt: s.LastAttempt} })
				continue
			}
			failures++
			d := k.retry.Delay(failures, k.jitter())
			timer.Reset(d)
			backingOff = true
			k.status(func(s *ceremonyStatus) {
				s.State, s.Failures, s.LastError, s.NextAttempt = "retrying", failures, err.Error(), k.now().Add(d)
			})
			k.log.Warn("key ceremony failed; retrying", "attempt", failures, "reason", a.reason, "err", err, "retry_in", d)
		}
	}
}

// ceremonyTimeout bounds one automatic key ceremony (a node that hangs must
// not stop the retries).
const ceremonyTimeout = 5 * time.Minute

// rekey is one automatic key ceremony: it looks again whether the epoch is
// still needed (another caller may have made one), applies the lost-member
// policy, runs the ceremony, and counts and records the outcome. It does
// not wait for running queries: the nodes serve the epoch a new one
// replaced to the queries that started in it for node.PreviousEpochGrace.
func (c *Coordinator) rekey(ctx context.Context, a assessment) error {
	c.ceremonyMu.Lock()
	defer c.ceremonyMu.Unlock()
	if a = c.assess(); !a.need || a.waiting != "" {
		return nil
	}
	if c.cfg.LostMember == LostMemberExclude {
		for _, l := range a.lost {
			if err := c.exclude(ctx, l); err != nil {
				return err
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, ceremonyTimeout)
	defer cancel()
	id, err := c.keyCeremonyLocked(cctx)
	if err != nil {
		c.metrics.ceremonies.WithLabelValues("failed").Inc()
		c.record(ctx, c.cfg.Identity.Name(), "epoch.ceremony_failed", "", map[string]any{"reason": a.reason, "error": err.Error()})
		return err
	}
	c.metrics.ceremonies.WithLabelValues("ok").Inc()
	c.log.Info("new key epoch", "epoch", id, "reason", a.reason)
	return nil
}

// checkDealt adds dealer's shares, sealed in RevealKeyGen, to dealt (by
// recipient): one entry for each of the k committee members, with a
// threshold share when threshold (the threshold is below the committee)
// and a linkage-key share when link (every member sent linkage
// commitments), and nothing else; none at all when neither.
func checkDealt(dealt map[string][]*nodev1.DealtShare, dealer string, shares []*nodev1.DealtShare, threshold, link bool, k int) error {
	switch {
	case !threshold && !link && len(shares) > 0:
		return fmt.Errorf("%s dealt shares in an epoch without threshold sharing or a linkage key", dealer)
	case (threshold || link) && len(shares) != k:
		return fmt.Errorf("%s dealt %d shares for a committee of %d", dealer, len(shares), k)
	}
	for _, d := range shares {
		to := d.GetToNodeId()
		switch {
		case d.GetFromNodeId() != dealer:
			return fmt.Errorf("%s sent a share labelled from %q", dealer, d.GetFromNodeId())
		case (d.GetSealed() != nil) != threshold:
			return fmt.Errorf("%s dealt %s a threshold share where the epoch has none, or none where it has", dealer, to)
		case (d.GetLinkSealed() != nil) != link:
			return fmt.Errorf("%s dealt %s a linkage-key share where the epoch has none, or none where it has", dealer, to)
		case slices.ContainsFunc(dealt[to], func(x *nodev1.DealtShare) bool { return x.GetFromNodeId() == dealer }):
			return fmt.Errorf("%s dealt %s twice", dealer, to)
		}
		dealt[to] = append(dealt[to], d)
	}
	return nil
}
