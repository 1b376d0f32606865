package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fedstat/fedstat/internal/audit"
	"github.com/fedstat/fedstat/internal/pki"
	"github.com/fedstat/fedstat/node/internal/evidence"
	"github.com/fedstat/fedstat/node/internal/ledger"
)

// ResetAuditOptions say which node's audit log to start anew.
type ResetAuditOptions struct {
	// DataDir is the node's data directory. Required.
	DataDir string
	// AuditLog defaults to DataDir/audit.log.
	AuditLog string
	// KeyFile is the operator key file, when the store is encrypted.
	KeyFile string
	// Identity, when set, is the node's certificate and key: a new
	// high-water mark is written. Otherwise the mark is moved aside (its
	// figures are carried into the store and the new log) and the node
	// writes it anew at start.
	Identity *pki.Identity
	// Reason is the operator's note, recorded in the new log's first entry.
	Reason string
	// Now defaults to time.Now.
	Now func() time.Time
}

// ResetAuditSummary says what ResetAudit did.
type ResetAuditSummary struct {
	// Spend is the ledger's spend, carried into the new log.
	Spend ledger.Figures `json:"spend"`
	// LostSeq and LostHead are the last head of the old log the node had
	// recorded (0 and "" if none).
	LostSeq  uint64 `json:"lost_seq"`
	LostHead string `json:"lost_head"`
	// Aside is where what was left of the old log went ("" if nothing
	// was left).
	Aside string `json:"aside,omitempty"`
}

// ResetAudit starts a new audit log for a node whose log is lost for good
// (no backup holds it) or no longer holds the head the node recorded: what
// is left of the old log is moved aside (never deleted), and the new log's
// first entry, budget.carried_forward, records the ledger's spend (raised
// first to the high-water mark, when that is higher), the head the node
// last recorded and the reason. The store must open (otherwise restore it
// first); the daemon must be stopped. The spend is never lowered, and the
// loss stays visible in the new log.
func ResetAudit(ctx context.Context, o ResetAuditOptions) (*ResetAuditSummary, error) {
	if o.DataDir == "" {
		return nil, ErrNoDataDir
	}
	if o.AuditLog == "" {
		o.AuditLog = filepath.Join(o.DataDir, "audit.log")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := CheckDataDir(o.DataDir, NeedStore); err != nil {
		return nil, fmt.Errorf("admin: reset-audit: the store must open (restore it first if it does not): %w", err)
	}
	now := o.Now().UTC()
	stamp := now.Format("20060102T150405Z")
	db, err := openForAdmin(o.DataDir, o.KeyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("admin: reset-audit: the store must open (restore it first if it does not): %w", err)
	}
	defer db.Close()
	sum := &ResetAuditSummary{}
	floors := []ledger.Figures{}
	f, err := ledger.ReadFigures(db)
	if err != nil {
		return nil, err
	}
	floors = append(floors, f)
	markPath := filepath.Join(o.DataDir, evidence.MarkFile)
	mk, merr := evidence.ReadMark(markPath)
	if merr == nil && o.Identity != nil {
		merr = mk.Verify(markPath, o.Identity.CA, o.Identity.Name())
	}
	if merr == nil {
		floors = append(floors, mk.Spend)
		sum.LostSeq, sum.LostHead = mk.AuditSeq, mk.AuditHead
	}
	if a, ok, err := evidence.ReadAnchor(db); err != nil {
		return nil, err
	} else if ok && a.Seq >= sum.LostSeq {
		sum.LostSeq, sum.LostHead = a.Seq, a.Hash
	}
	// What is left of the old log counts too, when it still verifies.
	if a, err := evidence.ReadAudit(o.AuditLog); err == nil {
		floors = append(floors, a.Spend)
	}
	reason := "the audit log was lost and started anew"
	if o.Reason != "" {
		reason += ": " + o.Reason
	}
	if sum.Spend, err = ledger.CarryForward(db, ledger.MaxFigures(floors...), reason, now); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.AuditLog); err == nil {
		sum.Aside = o.AuditLog + ".lost-" + stamp
		if err := os.Rename(o.AuditLog, sum.Aside); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	alog, err := audit.Open(o.AuditLog)
	if err != nil {
		return nil, err
	}
	defer alog.Close()
	actor := "node-admin"
	if o.Identity != nil {
		actor = o.Identity.Name()
	} else if merr == nil {
		actor = mk.Node
	}
	details := evidence.CarriedDetails(sum.Spend, reason, map[string]any{"lost_seq": sum.LostSeq, "lost_head": sum.LostHead, "old_log": sum.Aside})
	if _, err := alog.AppendEntry(ctx, audit.Entry{Actor: actor, Action: evidence.ActionCarriedForward, Details: details}); err != nil {
		return nil, err
	}
	seq, head := alog.Head()
	if err := evidence.WriteAnchor(db, evidence.Anchor{Seq: seq, Hash: head}); err != nil {
		return nil, err
	}
	if o.Identity != nil {
		m := evidence.Mark{Node: o.Identity.Name(), Time: now, Spend: sum.Spend, AuditSeq: seq, AuditHead: head, Cert: o.Identity.Cert.Raw}
		if e, ok, _ := evidence.StoredEpoch(db); ok {
			m.Epoch = e.Epoch
		}
		return sum, evidence.WriteMark(markPath, m, o.Identity.Key)
	}
	if _, err := os.Stat(markPath); err == nil {
		if err := os.Rename(markPath, markPath+".replaced-"+stamp); err != nil {
			return nil, err
		}
	}
	return sum, nil
}
