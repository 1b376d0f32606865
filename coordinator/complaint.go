package coordinator

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/fedstat/fedstat/crypto/collective"
	"github.com/fedstat/fedstat/crypto/linkage"
	"github.com/fedstat/fedstat/internal/protocol"
	"github.com/fedstat/fedstat/internal/rpc"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// Complaints about a dealing (docs/crypto.md, "Checked dealing",
// Complaints). A member whose dealt threshold share does not open, or
// opens and does not match its dealer's CKG share and Shamir images,
// refuses to install and sends, with its error, the point that opens that
// one sealed share under its dealing key, with a proof
// (nodev1.DealingComplaint, protocol.DealingEvidence). The coordinator,
// which relayed the dealer's signed message and the member's signed
// dealing key, checks the proof, opens the share and checks it itself: the
// dealer is excluded when the share does not open or fails, the
// complaining member when its proof fails or the share passes. Either way
// the ceremony fails (a member did not install), and the next one runs
// without the excluded node.

// dealing is what the coordinator judges a complaint with: the ceremony's
// members (ids, certs, points in the same order), the dealers (sharers)
// with their CKG shares, the dealers' opened Shamir images, and the dealt
// shares it relayed, by recipient.
type dealing struct {
	epoch   uint64
	crs     []byte
	ids     []string
	certs   []*x509.Certificate
	points  []uint64
	sharers []string
	ckg     [][]byte
	images  map[string][]byte
	dealt   map[string][]*nodev1.DealtShare
	// dealingKeys are the committee members' dealing keys, by member: what
	// a complaint's evidence is checked against.
	dealingKeys map[string]*ecdh.PublicKey
	// link are the dealers' opened linkage-key commitments (Feldman), which
	// a linkage-key share complained about is checked against.
	link map[string][]linkage.Point
}

// verdict is the outcome of one complaint.
type verdict struct {
	recipient, dealer string
	share             string // what was dealt: "threshold share" or "linkage-key share"
	guilty            string // the node the evidence convicts ("" when it cannot be judged)
	reason            string
}

// judgeInstall turns the members' InstallKey errors into the ceremony's
// error: nil when every member installed; otherwise the verdicts on their
// complaints (each convicted node excluded, and audited) before the first
// member's error.
func (c *Coordinator) judgeInstall(ctx context.Context, d dealing, errs []error) error {
	var first error
	var verdicts []verdict
	for i, err := range errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = fmt.Errorf("node %s: %w", d.ids[i], rpc.FromStatus(err))
		}
		s, ok := status.FromError(err)
		if !ok {
			continue
		}
		for _, det := range s.Details() {
			// A member's complaint about its own dealing convicts no one
			// else (and the member's own refusal fails the ceremony).
			if dc, ok := det.(*nodev1.DealingComplaint); ok && dc.GetDealer() != d.ids[i] {
				verdicts = append(verdicts, c.judgeComplaint(d, d.ids[i], dc))
			}
		}
	}
	if first == nil {
		return nil
	}
	var found []string
	for _, v := range verdicts {
		switch v.guilty {
		case "":
			c.record(ctx, c.cfg.Identity.Name(), "epoch.complaint_unjudged", "", map[string]any{"epoch": d.epoch, "node": v.recipient, "dealer": v.dealer, "reason": v.reason})
			found = append(found, fmt.Sprintf("%s's complaint about %s could not be judged: %s", v.recipient, v.dealer, v.reason))
			continue
		case v.dealer:
			c.record(ctx, c.cfg.Identity.Name(), "epoch.dealing_refused", "", map[string]any{"epoch": d.epoch, "node": v.dealer, "recipient": v.recipient, "share": v.share, "reason": v.reason})
			found = append(found, fmt.Sprintf("%s dealt %s a %s that %s (opened and checked by the coordinator from %s's evidence)", v.dealer, v.recipient, v.share, v.reason, v.recipient))
		default:
			c.record(ctx, c.cfg.Identity.Name(), "epoch.complaint_unfounded", "", map[string]any{"epoch": d.epoch, "node": v.recipient, "dealer": v.dealer, "reason": v.reason})
			found = append(found, fmt.Sprintf("%s's complaint about %s's dealing does not hold: %s", v.recipient, v.dealer, v.reason))
		}
		problem := fmt.Sprintf("key epoch %d: %s", d.epoch, found[len(found)-1])
		cert := d.certs[slices.Index(d.ids, v.guilty)]
		sum := sha256.Sum256(cert.Raw)
		if err := c.exclude(ctx, lostMember{ID: v.guilty, Problem: problem, CertSHA256: sum[:]}); err != nil {
			c.log.Error("could not store the exclusion of a member convicted by a dealing complaint", "node", v.guilty, "err", err)
		}
	}
	if len(found) == 0 {
		return fmt.Errorf("coordinator: key ceremony epoch %d: install: %w", d.epoch, first)
	}
	slices.Sort(found)
	found = slices.Compact(found)
	return fmt.Errorf("coordinator: key ceremony epoch %d: %w: %s; convicted nodes are excluded from key epochs until they present a new certificate; install: %w",
		d.epoch, ErrKeyCheck, strings.Join(found, "; "), first)
}

// judgeComplaint opens the share dc is about with the secret it reveals
// and checks it against the dealer's CKG share and images.
func (c *Coordinator) judgeComplaint(d dealing, recipient string, dc *nodev1.DealingComplaint) verdict {
	v := verdict{recipient: recipient, dealer: dc.GetDealer(), share: "threshold share"}
	if dc.GetLinkage() {
		v.share = "linkage-key share"
	}
	di := slices.Index(d.sharers, v.dealer)
	ri := slices.Index(d.ids, recipient)
	switch {
	case ri < 0 || d.points[ri] == 0:
		v.guilty, v.reason = recipient, "it is not on the committee, and was dealt no share"
		return v
	case di < 0:
		v.guilty, v.reason = recipient, fmt.Sprintf("%q deals no shares in this ceremony", v.dealer)
		return v
	}
	i := slices.IndexFunc(d.dealt[recipient], func(s *nodev1.DealtShare) bool { return s.GetFromNodeId() == v.dealer })
	if i < 0 {
		v.guilty, v.reason = recipient, "no share of that dealer was relayed to it"
		return v
	}
	dealerCert := d.certs[slices.Index(d.ids, v.dealer)]
	key := d.dealingKeys[recipient]
	if key == nil {
		v.reason = "no dealing key of the recipient to check its evidence against"
		return v
	}
	// The dealer's signed message, then the share in it, opened with the
	// recipient's evidence: the same for both kinds of share.
	dealt := d.dealt[recipient][i]
	var sealed, info []byte
	var err error
	if dc.GetLinkage() {
		sealed, err = protocol.OpenLinkShare(dealerCert.PublicKey, dealt.GetLinkSealed(), d.epoch, v.dealer, recipient, c.window())
		info = protocol.LinkShareInfo(d.epoch, v.dealer, recipient)
	} else {
		sealed, err = protocol.OpenThresholdShare(dealerCert.PublicKey, dealt.GetSealed(), d.epoch, v.dealer, recipient, c.window())
		info = protocol.ThresholdShareInfo(d.epoch, v.dealer, recipient)
	}
	if err != nil {
		v.reason = fmt.Sprintf("the dealer's signed %s does not open: %v", v.share, err)
		return v
	}
	pt, err := protocol.OpenWithEvidence(key, dc.GetPoint(), dc.GetProof(), info, sealed)
	switch {
	case errors.Is(err, protocol.ErrShareUnopenable):
		v.guilty, v.reason = v.dealer, "does not open for its recipient"
		return v
	case err != nil:
		v.guilty, v.reason = recipient, "its evidence does not verify for its dealing key"
		return v
	}
	defer clear(pt)
	if dc.GetLinkage() {
		return judgeLinkShare(d, v, ri, pt)
	}
	err = collective.CheckDealtShare(c.params, d.crs, d.ckg[di], d.images[v.dealer], d.points[ri], pt)
	switch {
	case err == nil:
		v.guilty, v.reason = recipient, "the share it revealed matches the dealer's CKG share and Shamir images"
	case errors.Is(err, collective.ErrDealing):
		v.guilty, v.reason = v.dealer, "does not match its CKG share and Shamir images"
	default:
		v.reason = err.Error()
	}
	return v
}

// judgeLinkShare judges an opened linkage-key share pt, the dealer's share
// for the recipient at d.points[ri], against the dealer's Feldman
// commitments.
func judgeLinkShare(d dealing, v verdict, ri int, pt []byte) verdict {
	var share linkage.Scalar
	if len(pt) != len(share) {
		v.guilty, v.reason = v.dealer, fmt.Sprintf("is %d bytes, not a scalar", len(pt))
		return v
	}
	copy(share[:], pt)
	defer clear(share[:])
	if err := linkage.VerifyShare(d.link[v.dealer], d.points[ri], share); err != nil {
		v.guilty, v.reason = v.dealer, "does not match its Feldman commitments"
		return v
	}
	v.guilty, v.reason = v.recipient, "the linkage-key share it revealed matches the dealer's commitments"
	return v
}
