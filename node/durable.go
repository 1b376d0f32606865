package node

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/kv"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/internal/rpc"
	"github.com/fedstat/fedstat/node/internal/evidence"
	"github.com/fedstat/fedstat/node/internal/keystore"
	nodev1 "github.com/fedstat/fedstat/proto/fedstat/node/v1"
)

// Durability and readiness.
//
// The budget ledger must never go backwards: a node that forgets what it
// spent hands the difference out again. Besides its store (where every
// debit is a watermarked update, see ledger), the node keeps evidence of
// its spend outside the store: after every debit it writes the ledger's
// figures, the audit log's head and its key epoch to the high-water mark
// file (Config.MarkFile, signed with its certificate key), and inside the
// debit's transaction it records the audit log's head in the store, so
// that a log cut at an entry boundary shows at the next start. The checks
// that compare all of this at start are in node/check; New itself refuses
// to start on a ledger below a valid mark.
//
// While running, a node that can no longer write safely (its store is
// damaged, its file system is full, its audit log was replaced or edited,
// its mark file cannot be written) stays up, answers Info and Budget, and
// refuses every call that would write (Evaluate, Commit, KeySwitch, KeyGen,
// InstallKey) with ErrNotReady naming itself and the cause; Ready says the
// same to /readyz. A node whose decryption share of the current epoch is
// missing or damaged still answers queries but refuses to decrypt in that
// epoch (ReadyForEpoch), naming the file, until a new key epoch.

// ErrNotReady: the node cannot take part now; the error names the node and
// the cause.
var ErrNotReady = errors.New("node: not ready")

// errMark: the high-water mark file could not be written.
var errMark = errors.New("node: high-water mark not written")

// health is what keeps a node from being ready.
type health struct {
	mu sync.Mutex
	// fault stays until a restart: a damaged store, a tampered audit log,
	// a watermark file that could not be written.
	fault error
	// markErr is the last failure to write the mark file; Ready retries.
	markErr error
	// share is the problem with the decryption share of epoch shareEpoch.
	share      error
	shareEpoch uint64
}

// noteFault records err when it means the node can no longer write
// safely. It is called with the errors of the node's calls and of its
// audit appends.
func (n *Node) noteFault(err error) {
	if err == nil {
		return
	}
	var fe *keystore.FileError
	switch {
	case errors.Is(err, kv.ErrDamaged), errors.Is(err, audit.ErrTampered), errors.Is(err, kv.ErrWatermark):
		n.health.mu.Lock()
		first := n.health.fault == nil
		if first {
			n.health.fault = err
		}
		n.health.mu.Unlock()
		if first {
			n.log.Error("node can no longer write safely: refusing queries and releases until restarted", "err", err)
		}
	case errors.As(err, &fe):
		if e, cerr := n.current(); cerr == nil {
			n.health.mu.Lock()
			n.health.share, n.health.shareEpoch = fe, e.Epoch
			n.health.mu.Unlock()
		}
	}
}

// writable returns why the node cannot write now, or nil.
func (n *Node) writable() error {
	n.health.mu.Lock()
	fault, markErr := n.health.fault, n.health.markErr
	n.health.mu.Unlock()
	if fault != nil {
		return fault
	}
	if err := n.cfg.DB.Health(); err != nil {
		if !errors.Is(err, kv.ErrNoSpace) {
			n.noteFault(err)
		}
		return err
	}
	if n.cfg.Audit != nil {
		if err := n.cfg.Audit.Check(); err != nil {
			n.noteFault(err)
			return err
		}
	}
	if markErr != nil {
		if err := n.writeMark(); err != nil {
			return err
		}
	}
	return nil
}

// ReadyForEpoch returns nil when the node can decrypt in key epoch epoch
// (its share of it is present and intact as far as the node has seen), or
// an error naming the share's file. The coordinator should pick other
// decryptors for that epoch; a new key epoch clears it.
func (n *Node) ReadyForEpoch(epoch uint64) error {
	if err := n.shareFault(epoch); err != nil {
		return err
	}
	// The files as they are now (a share deleted or damaged after start).
	if err := n.EpochReady(epoch); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotReady, n.id, err)
	}
	return nil
}

// shareFault is the fault noted for the share this node decrypts with in
// key epoch epoch (at start, or by a release that failed on it), or nil.
func (n *Node) shareFault(epoch uint64) error {
	n.health.mu.Lock()
	defer n.health.mu.Unlock()
	if n.health.share != nil && n.health.shareEpoch == epoch {
		return fmt.Errorf("%w: %s cannot decrypt in key epoch %d: %w", ErrNotReady, n.id, epoch, n.health.share)
	}
	return nil
}

// Ready returns nil when the node can take part in queries and releases of
// its current epoch, or an error wrapping ErrNotReady that names the node
// and the cause (for /readyz and the admin socket).
func (n *Node) Ready() error {
	if err := n.writable(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotReady, n.id, err)
	}
	if e, err := n.current(); err == nil {
		return n.ReadyForEpoch(e.Epoch)
	}
	return nil
}

// guard is the node's innermost unary interceptor: it refuses the calls
// that write while the node is not ready, and notes the faults the calls
// run into. Callers without the coordinator or operator role go straight
// to the handler (which refuses them) and learn nothing of the node's
// state.
func (n *Node) guard(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	switch info.FullMethod {
	case nodev1.NodeService_Evaluate_FullMethodName, nodev1.NodeService_Reveal_FullMethodName, nodev1.NodeService_Commit_FullMethodName,
		nodev1.NodeService_KeySwitch_FullMethodName, nodev1.NodeService_KeyGen_FullMethodName,
		nodev1.NodeService_RevealKeyGen_FullMethodName, nodev1.NodeService_InstallKey_FullMethodName:
		if _, err := rpc.Require(ctx, pki.RoleCoordinator, pki.RoleOperator); err == nil {
			if err := n.writable(); err != nil {
				err = fmt.Errorf("%w: %s refuses %s: %w", ErrNotReady, n.id, methodName(info.FullMethod), err)
				n.record(ctx, "coordinator", "call.refused", "", map[string]any{"method": info.FullMethod, "reason": err.Error()})
				return nil, err
			}
			if ks, ok := req.(*nodev1.KeySwitchRequest); ok {
				if err := n.shareFault(ks.GetEpoch()); err != nil {
					return nil, err
				}
			}
		}
	}
	resp, err := h(ctx, req)
	n.noteFault(err)
	return resp, err
}

func methodName(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// checkShares looks at the key files of the stored epoch at start: the
// file the node decrypts with (the threshold share when T < N and the
// epoch is installed, else its CKG secret) makes it not ready for that
// epoch when it is missing or damaged; problems with other files of the
// epoch are logged.
func (n *Node) checkShares() {
	e := n.epoch
	if e == nil || !e.onCommittee(n.id) {
		// A member off the committee has no key files in this epoch.
		return
	}
	need := secretName(e.Epoch)
	var required []string
	if e.PublicKey != nil && e.thresholdShared() {
		need = thresholdName(e.Epoch)
		required = append(required, need)
	}
	for _, fe := range n.keys.CheckEpoch(e.Epoch, required...) {
		if fe.Name == need {
			n.health.share, n.health.shareEpoch = fe, e.Epoch
			n.log.Error("cannot decrypt in the current key epoch: the share is missing or damaged; answering queries, refusing to decrypt until a new key epoch",
				"epoch", e.Epoch, "file", fe.Path, "problem", fe.Problem)
			continue
		}
		n.log.Warn("a key file of the current epoch is missing or damaged (not needed to decrypt)", "epoch", e.Epoch, "file", fe.Path, "problem", fe.Problem)
	}
}

// anchorAudit records the audit log's head in the store inside a debit's
// transaction (ledger.Hooks.InDebit).
func (n *Node) anchorAudit(tx *kv.Txn) error {
	if n.cfg.Audit == nil {
		return nil
	}
	seq, head := n.cfg.Audit.Head()
	if seq == 0 {
		return nil
	}
	return evidence.SetAnchor(tx, evidence.Anchor{Seq: seq, Hash: head})
}

// writeMark writes the high-water mark file from the ledger's figures as
// they are now (ledger.Hooks.AfterDebit; also at start and when Ready
// retries). Figures are read under markMu, so marks never go backwards.
func (n *Node) writeMark() error {
	if n.cfg.MarkFile == "" {
		return nil
	}
	n.markMu.Lock()
	defer n.markMu.Unlock()
	err := n.writeMarkLocked()
	n.health.mu.Lock()
	n.health.markErr = err
	n.health.mu.Unlock()
	return err
}

func (n *Node) writeMarkLocked() error {
	f, err := n.ledger.Figures()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", errMark, n.cfg.MarkFile, err)
	}
	m := evidence.Mark{Node: n.id, Time: n.cfg.Now().UTC(), Spend: f, Cert: n.cfg.Identity.Cert.Raw}
	n.mu.RLock()
	if n.epoch != nil {
		m.Epoch = n.epoch.Epoch
	}
	n.mu.RUnlock()
	if n.cfg.Audit != nil {
		m.AuditSeq, m.AuditHead = n.cfg.Audit.Head()
	}
	if err := evidence.WriteMark(n.cfg.MarkFile, m, n.cfg.Identity.Key); err != nil {
		return fmt.Errorf("%w: %s: %w", errMark, n.cfg.MarkFile, err)
	}
	return nil
}

// startDurable is the start-up part of the above, run by New after the
// epoch is loaded: it checks the shares of the stored epoch, refuses a
// ledger below a valid high-water mark, records the audit head in the
// store and writes the mark afresh.
func (n *Node) startDurable() error {
	n.checkShares()
	if n.cfg.MarkFile != "" {
		old, err := evidence.ReadMark(n.cfg.MarkFile)
		if err == nil {
			err = old.Verify(n.cfg.MarkFile, n.cfg.Identity.CA, n.id)
		}
		if err == nil {
			f, ferr := n.ledger.Figures()
			if ferr != nil {
				return ferr
			}
			if gaps := f.Below(old.Spend); gaps != nil {
				return fmt.Errorf("node: the budget ledger (%v) is below the high-water mark %s of %s (%v): the store lost debits; "+
					"refusing to start (run `fedstat node check`)", f, n.cfg.MarkFile, old.Time.Format("2006-01-02T15:04:05Z07:00"), old.Spend)
			}
		}
	}
	if n.cfg.Audit != nil {
		if seq, head := n.cfg.Audit.Head(); seq > 0 {
			if err := evidence.WriteAnchor(n.cfg.DB, evidence.Anchor{Seq: seq, Hash: head}); err != nil {
				return fmt.Errorf("node: record the audit log's head in the store: %w", err)
			}
		}
	}
	return n.writeMark()
}
